import Foundation
import TSDNSConfig
import TSDNSHTTP

/// One event of a Services watch (`shared/reference/kubernetes/watch-stream.jsonl`).
public enum WatchEvent: Sendable, Equatable {
    case added(KubeService)
    case modified(KubeService)
    case deleted(KubeService)
    /// Only a resourceVersion to remember; nothing changed.
    case bookmark(resourceVersion: String)
    /// A `Status` in the stream; code 410 means the resourceVersion is too old.
    case error(code: Int, reason: String, message: String)

    public var type: String {
        switch self {
        case .added: return "ADDED"
        case .modified: return "MODIFIED"
        case .deleted: return "DELETED"
        case .bookmark: return "BOOKMARK"
        case .error: return "ERROR"
        }
    }

    public static let types = ["ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"]

    /// `{"type": ..., "object": ...}`, the object decoded as its type says, in one pass.
    private struct Wire: Decodable {
        enum Key: String, CodingKey { case type, object }
        struct UnknownType: Error { var type: String }
        struct Bookmark: Decodable {
            struct Metadata: Decodable { var resourceVersion: String }
            var metadata: Metadata
        }

        var event: WatchEvent

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: Key.self)
            let type = try container.decode(String.self, forKey: .type)
            switch type {
            case "ADDED": event = .added(try container.decode(KubeService.self, forKey: .object))
            case "MODIFIED": event = .modified(try container.decode(KubeService.self, forKey: .object))
            case "DELETED": event = .deleted(try container.decode(KubeService.self, forKey: .object))
            case "BOOKMARK": event = .bookmark(resourceVersion: try container.decode(Bookmark.self, forKey: .object).metadata.resourceVersion)
            case "ERROR":
                let status = try container.decode(StatusBody.self, forKey: .object)
                event = .error(code: status.code ?? 500, reason: status.reason ?? "", message: status.message ?? "")
            default:
                throw UnknownType(type: type)
            }
        }
    }

    /// One JSON object of the stream; anything else is `.malformed` naming what was wrong.
    public static func decode(_ data: Data) throws(KubernetesError) -> WatchEvent {
        do {
            return try JSONDecoder().decode(Wire.self, from: data).event
        } catch let unknown as Wire.UnknownType {
            throw .malformed("watch event of unknown type \(ConfigIssue.quote(unknown.type))")
        } catch {
            throw .malformed("watch event: \(KubernetesClient.describe(error))")
        }
    }
}

/// Splits a watch body into its JSON objects. It relies neither on newlines nor on chunk
/// boundaries (an event may span chunks, a chunk may hold several), as client-go's
/// streaming decoder does not; an object larger than `maxObjectSize` is an error.
public struct JSONObjectFramer: Sendable {
    public let maxObjectSize: Int
    private var current: [UInt8] = []
    private var depth = 0
    private var inString = false
    private var escaped = false

    public init(maxObjectSize: Int = 4 << 20) {
        self.maxObjectSize = maxObjectSize
    }

    /// The objects this chunk completes, in order.
    public mutating func append(_ chunk: some Sequence<UInt8>) throws(KubernetesError) -> [Data] {
        var objects: [Data] = []
        for byte in chunk {
            if depth == 0 {
                switch byte {
                case 0x20, 0x09, 0x0A, 0x0D: continue  // whitespace between objects
                case UInt8(ascii: "{"):
                    depth = 1
                    current = [byte]
                    continue
                default:
                    throw .malformed("watch stream: byte 0x\(String(byte, radix: 16)) between events where an object should start")
                }
            }
            current.append(byte)
            guard current.count <= maxObjectSize else {
                throw .malformed("watch stream: an event is larger than \(maxObjectSize >> 20) MiB")
            }
            if inString {
                if escaped { escaped = false }
                else if byte == UInt8(ascii: "\\") { escaped = true }
                else if byte == UInt8(ascii: "\"") { inString = false }
                continue
            }
            switch byte {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                depth -= 1
                if depth == 0 {
                    objects.append(Data(current))
                    current = []
                }
            default: break
            }
        }
        return objects
    }
}

/// client-go's reflector as a pure state machine: LIST, remember the resourceVersion, WATCH
/// from it with bookmarks and a random timeout of 300–600 s; re-watch after a normal end;
/// relist on 410 Gone (HTTP or in-stream) and after a malformed stream; back off 0.8 s
/// doubling to 30 s with jitter after errors (honouring Retry-After), reset after 2 minutes
/// of health. Its I/O shell performs each `Step` and reports back; time and randomness come
/// in as arguments, so its tests need no clock and no sleep.
public struct Reflector: Sendable, Equatable {
    public enum Step: Sendable, Equatable {
        case list
        case watch(resourceVersion: String, timeoutSeconds: Int)
        /// Wait, then call `resume()`.
        case wait(until: ContinuousClock.Instant)
    }

    public static let backoff = Backoff(base: .milliseconds(800), max: .seconds(30))
    public static let resetAfter: Duration = .seconds(120)
    public static let timeoutRange = 300...600

    /// Every Service the last LIST and the events since hold, by namespace/name.
    public private(set) var services: [String: KubeService] = [:]
    public private(set) var resourceVersion: String?
    /// Consecutive failures since the last reset.
    public private(set) var failures = 0
    /// LISTs after the first.
    public private(set) var relists = 0
    private var listedOnce = false
    private var healthySince: ContinuousClock.Instant?
    /// What follows a wait.
    private var afterWait: Next = .list

    private enum Next: Sendable, Equatable { case list, watch }

    public init() {}

    public func start() -> Step { .list }

    /// A LIST succeeded: its items replace the store (a Service deleted while disconnected
    /// is gone from it). Returns the watch to open and whether the store changed.
    public mutating func listed(_ items: [KubeService], resourceVersion: String, now: ContinuousClock.Instant, random: Double) -> (step: Step, changed: Bool) {
        var fresh: [String: KubeService] = [:]
        for item in items { fresh[item.key] = item }
        let changed = fresh != services || !listedOnce
        if listedOnce { relists += 1 }
        listedOnce = true
        services = fresh
        self.resourceVersion = resourceVersion
        healthy(now)
        return (watchStep(random), changed)
    }

    public mutating func listFailed(_ error: Error, now: ContinuousClock.Instant, random: Double) -> Step {
        fail(error, now: now, random: random, then: .list)
    }

    /// The watch request was answered 200: the connection is healthy.
    public mutating func watchOpened(now: ContinuousClock.Instant) {
        healthy(now)
    }

    /// What an event does: whether the store changed, and whether the watch must end for a relist.
    public mutating func apply(_ event: WatchEvent) -> (changed: Bool, relist: Bool) {
        switch event {
        case .added(let service), .modified(let service):
            let changed = services[service.key] != service
            services[service.key] = service
            remember(service.metadata.resourceVersion)
            return (changed, false)
        case .deleted(let service):
            let changed = services.removeValue(forKey: service.key) != nil
            remember(service.metadata.resourceVersion)
            return (changed, false)
        case .bookmark(let version):
            remember(version)
            return (false, false)
        case .error(let code, _, _):
            // 410: the resourceVersion is too old; only a relist can catch up.
            if code == 410 { resourceVersion = nil }
            return (false, code == 410)
        }
    }

    /// The watch ended. nil: a normal end (the server's timeout), re-watched at once from
    /// the last resourceVersion; an in-stream 410 has already asked for a relist.
    public mutating func watchEnded(_ error: Error?, now: ContinuousClock.Instant, random: Double) -> Step {
        guard let error else {
            return resourceVersion == nil ? .list : watchStep(random)
        }
        if let kube = error as? KubernetesError, kube.isGone {
            resourceVersion = nil
            return .list
        }
        // A stream that does not decode may have lost events: start over from a LIST.
        if let kube = error as? KubernetesError, case .malformed = kube {
            return fail(error, now: now, random: random, then: .list)
        }
        return fail(error, now: now, random: random, then: resourceVersion == nil ? .list : .watch)
    }

    /// After a `.wait`: the step it was waiting for.
    public mutating func resume(random: Double) -> Step {
        afterWait == .watch && resourceVersion != nil ? watchStep(random) : .list
    }

    private func watchStep(_ random: Double) -> Step {
        let span = Double(Self.timeoutRange.upperBound - Self.timeoutRange.lowerBound)
        let timeout = Self.timeoutRange.lowerBound + Int((span * min(max(random, 0), 1)).rounded())
        return .watch(resourceVersion: resourceVersion ?? "", timeoutSeconds: timeout)
    }

    private mutating func remember(_ version: String?) {
        if let version, !version.isEmpty { resourceVersion = version }
    }

    private mutating func healthy(_ now: ContinuousClock.Instant) {
        if healthySince == nil { healthySince = now }
    }

    private mutating func fail(_ error: Error, now: ContinuousClock.Instant, random: Double, then next: Next) -> Step {
        // Two minutes of health since the last trouble forgive the earlier failures.
        if let since = healthySince, now - since >= Self.resetAfter { failures = 0 }
        healthySince = nil
        failures += 1
        var wait = Self.backoff.delay(after: failures, random: random)
        if case .status(_, _, _, let retryAfter?)? = error as? KubernetesError { wait = max(wait, min(retryAfter, .seconds(60))) }
        afterWait = next
        return .wait(until: now + wait)
    }
}
