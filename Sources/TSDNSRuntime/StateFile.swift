import Foundation
import Logging
import TSDNSConfig
import TSDNSCore

public enum StateFileError: Error, Sendable, CustomStringConvertible {
    /// Written by a newer release: refused rather than misread (the operator's exclusions
    /// could otherwise be dropped silently).
    case newerVersion(path: String, found: Int, supported: Int)
    case unwritable(path: String, reason: String)
    /// It exists but cannot be read (permissions, I/O): refused, not replaced, since the
    /// operator's exclusions may be in it.
    case unreadable(path: String, reason: String)

    public var description: String {
        switch self {
        case .newerVersion(let path, let found, let supported):
            return "\(path): state.file: format version \(found) is newer than this release understands (\(supported)); run a newer release or move the file away"
        case .unwritable(let path, let reason):
            return "\(path): state.file: cannot write: \(reason)"
        case .unreadable(let path, let reason):
            return "\(path): state.file: cannot read: \(reason)"
        }
    }
}

/// `state.file`: the loop's durable state as one JSON document, replaced atomically on
/// every change (temporary file, fsync, rename, fsync of the directory), so a crash at any
/// moment leaves either the old document or the new one.
public struct StateFile: Sendable {
    public static let formatVersion = 1
    /// A state file is small; anything larger is not ours.
    static let maxSize = 32 << 20

    public let path: String

    public init(path: String) {
        self.path = path
    }

    /// The stored state, with what has expired by `now` dropped; empty when there is no file.
    /// A corrupt file is kept aside as `<path>.corrupt-<time>` and reported in `warning`;
    /// only a newer format version is an error.
    func load(now: Date) throws(StateFileError) -> (state: LoopState, warning: String?) {
        let bytes: [UInt8]
        do {
            bytes = try BoundedFile.read(path, limit: Self.maxSize)
        } catch .missing {
            return (LoopState(), nil)
        } catch .tooLarge(let limit) {
            return (LoopState(), setAside("is larger than \(limit >> 20) MiB", now: now))
        } catch {
            throw .unreadable(path: path, reason: "\(error)")
        }
        let document: Document
        do {
            let version = try JSONDecoder().decode(VersionProbe.self, from: Data(bytes)).version
            if version > Self.formatVersion {
                throw StateFileError.newerVersion(path: path, found: version, supported: Self.formatVersion)
            }
            document = try Self.decoder.decode(Document.self, from: Data(bytes))
        } catch let error as StateFileError {
            throw error
        } catch {
            return (LoopState(), setAside("is not a valid state document (\(Self.describe(error)))", now: now))
        }
        var state = document.state
        state.expire(at: now)
        return (state, nil)
    }

    /// Replaces the file with `state`, atomically.
    func save(_ state: LoopState, now: Date) throws(StateFileError) {
        let data: Data
        do {
            data = try Self.encoder.encode(Document(state, written: now))
        } catch {
            throw .unwritable(path: path, reason: "\(error)")
        }
        let directory = (path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent
        let temporary = path + ".tmp"
        func fail(_ what: String) -> StateFileError {
            .unwritable(path: path, reason: "\(what): \(String(cString: strerror(errno)))")
        }
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw fail("open \(temporary)") }
        var written = 0
        let ok = data.withUnsafeBytes { raw -> Bool in
            while written < raw.count {
                let count = write(descriptor, raw.baseAddress! + written, raw.count - written)
                if count < 0 { if errno == EINTR { continue }; return false }
                written += count
            }
            return true
        }
        guard ok, fsync(descriptor) == 0 else {
            let error = fail("write \(temporary)")
            close(descriptor)
            unlink(temporary)
            throw error
        }
        close(descriptor)
        guard rename(temporary, path) == 0 else {
            let error = fail("rename to \(path)")
            unlink(temporary)
            throw error
        }
        // The rename itself is durable only once the directory is.
        let directoryDescriptor = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directoryDescriptor >= 0 {
            fsync(directoryDescriptor)
            close(directoryDescriptor)
        }
    }

    private func setAside(_ problem: String, now: Date) -> String {
        let stamp = Timestamp.format(now).replacingOccurrences(of: ":", with: "")
        let aside = "\(path).corrupt-\(stamp)"
        if rename(path, aside) == 0 {
            return "state file \(path) \(problem); kept it as \(aside) and started with an empty state"
        }
        return "state file \(path) \(problem), and could not be moved aside (\(String(cString: strerror(errno)))); started with an empty state"
    }

    private static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let context): return context.debugDescription
        case DecodingError.keyNotFound(let key, _): return "missing \"\(key.stringValue)\""
        case DecodingError.typeMismatch(_, let context): return "wrong type at \(context.codingPath.map(\.stringValue).joined(separator: "."))"
        default: return "\(error)"
        }
    }

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(Timestamp.format(date))
        }
        return encoder
    }()

    private static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            guard let date = Timestamp.parse(text) else {
                throw DecodingError.dataCorruptedError(in: container, debugDescription: "\"\(text)\" is not an RFC 3339 timestamp")
            }
            return date
        }
        return decoder
    }()

    private struct VersionProbe: Decodable { var version: Int }

    /// Version 1 of the format. Lists, not maps, so the file reads well and diffs well.
    private struct Document: Codable {
        struct Manual: Codable { var nodeId: String; var sources: [String] }
        struct Withdrawal: Codable { var nodeId: String; var by: String }

        var version: Int
        var written: Date
        var exclusions: [Exclusion]
        var manual: [Manual]
        var pending: [PendingAdd]
        var sourceSets: [SourceSet]
        var withdrawn: [Withdrawal]

        init(_ state: LoopState, written: Date) {
            version = StateFile.formatVersion
            self.written = written
            exclusions = state.exclusions.values.sorted { $0.nodeId < $1.nodeId }
            manual = state.manualSources.sorted { $0.key < $1.key }.map { Manual(nodeId: $0.key, sources: $0.value.sorted()) }
            pending = state.pending
            sourceSets = state.sourceSets.values.sorted { $0.name < $1.name }
            withdrawn = state.withdrawn.sorted { $0.key < $1.key }.map { Withdrawal(nodeId: $0.key, by: $0.value) }
        }

        var state: LoopState {
            var state = LoopState()
            for exclusion in exclusions { state.exclusions[exclusion.nodeId] = exclusion }
            for entry in manual where !entry.sources.isEmpty { state.manualSources[entry.nodeId] = Set(entry.sources) }
            state.pending = pending
            for set in sourceSets { state.sourceSets[set.name] = set }
            for entry in withdrawn { state.withdrawn[entry.nodeId] = entry.by }
            return state
        }
    }
}
