import CoreMetrics
import Foundation
import Logging
import Synchronization
import TSDNSConfig
import TSDNSCore
import TSDNSHTTP
import TSDNSKubernetes

/// The series `watch` exports (CONTRACT §5), at 0 from the start.
public struct WatchMetrics: Sendable {
    private let factory: any MetricsFactory
    private let cluster: String

    public init(factory: any MetricsFactory, cluster: String) {
        self.factory = factory
        self.cluster = cluster
        Gauge(label: "tsdns_watch_services", dimensions: [("cluster", cluster)], factory: factory).record(0)
        for type in WatchEvent.types {
            Counter(label: "tsdns_watch_events_total", dimensions: [("type", type)], factory: factory).increment(by: 0)
        }
        Counter(label: "tsdns_watch_relists_total", factory: factory).increment(by: 0)
        for result in ["ok", "error"] {
            Counter(label: "tsdns_watch_sends_total", dimensions: [("result", result)], factory: factory).increment(by: 0)
        }
        Gauge(label: "tsdns_last_success_timestamp_seconds", factory: factory).record(0)
    }

    func services(_ count: Int) {
        Gauge(label: "tsdns_watch_services", dimensions: [("cluster", cluster)], factory: factory).record(count)
    }
    func event(_ type: String) { Counter(label: "tsdns_watch_events_total", dimensions: [("type", type)], factory: factory).increment() }
    func relist() { Counter(label: "tsdns_watch_relists_total", factory: factory).increment() }
    func send(ok: Bool, at date: Date) {
        Counter(label: "tsdns_watch_sends_total", dimensions: [("result", ok ? "ok" : "error")], factory: factory).increment()
        if ok { Gauge(label: "tsdns_last_success_timestamp_seconds", factory: factory).record(date.timeIntervalSince1970) }
    }
}

/// Sends a cluster's whole set to the reconciler (`PUT /v1/sources/kubernetes:<cluster>`):
/// at most one send in flight, and only the newest set is ever sent; a failed send is
/// retried with jittered backoff up to 30 s. Offering never waits for a send.
public final class SourceSender: Sendable {
    struct State {
        var latest: [SourceSet.Member]?
        /// Bumped by every offer that must be sent.
        var version = 0
        var sentVersion = 0
        var lastSent: [SourceSet.Member]?
        var everSent = false
        var lastError: String?
    }

    public let name: String
    private let server: String
    private let tokenFile: String?
    private let proxy: String?
    private let timeout: Duration
    private let logger: Logger
    private let metrics: WatchMetrics
    private let state = Mutex(State())
    private let wake = WakeSignal()
    private let clients = Mutex<(token: String?, client: RPCClient)?>(nil)
    static let backoff = Backoff(base: .milliseconds(500), max: .seconds(30))

    public init(name: String, server: String, tokenFile: String?, proxy: String?, timeout: Duration = .seconds(30), logger: Logger, metrics: WatchMetrics) {
        self.name = name
        self.server = server
        self.tokenFile = tokenFile
        self.proxy = proxy
        self.timeout = timeout
        self.logger = logger
        self.metrics = metrics
    }

    public var hasSent: Bool { state.withLock { $0.everSent } }
    public var lastError: String? { state.withLock { $0.lastError } }

    /// Hands over the cluster's current set. `force` sends it even when it equals the last
    /// one (after a relist, a reconnect, a resync: the reconciler may have lost it).
    public func offer(_ members: [SourceSet.Member], force: Bool) {
        let changed = state.withLock { state -> Bool in
            guard force || members != state.latest else { return false }
            state.latest = members
            state.version += 1
            return true
        }
        if changed { wake.signal() }
    }

    /// Sends the latest set again (the resync timer).
    public func resend() {
        let any = state.withLock { state -> Bool in
            guard state.latest != nil else { return false }
            state.version += 1
            return true
        }
        if any { wake.signal() }
    }

    public func run() async {
        var failures = 0
        while !Task.isCancelled {
            let next = state.withLock { state -> (Int, [SourceSet.Member], [SourceSet.Member]?)? in
                guard state.version > state.sentVersion, let latest = state.latest else { return nil }
                return (state.version, latest, state.lastSent)
            }
            guard let (version, members, previous) = next else {
                await wake.wait()
                continue
            }
            do {
                try await send(members)
                failures = 0
                state.withLock { state in
                    state.sentVersion = max(state.sentVersion, version)
                    state.lastSent = members
                    state.everSent = true
                    state.lastError = nil
                }
                metrics.send(ok: true, at: Date())
                logSent(members, previous: previous)
            } catch is CancellationError {
                return
            } catch {
                failures += 1
                let wait = Self.backoff.delay(after: failures)
                state.withLock { $0.lastError = "\(error)" }
                metrics.send(ok: false, at: Date())
                if case CtlError.unauthorized = error {
                    logger.error("the reconciler rejects the watcher's token (watch.tokenFile); retrying", metadata: [
                        "server": "\(server)", "error": "\(error)", "retryIn": "\(DurationText.format(wait))",
                    ])
                } else {
                    logger.warning("sending the cluster's resolvers failed; retrying", metadata: [
                        "server": "\(server)", "error": "\(error)", "attempt": .stringConvertible(failures), "retryIn": "\(DurationText.format(wait))",
                    ])
                }
                try? await Task.sleep(for: wait)
            }
        }
    }

    private func send(_ members: [SourceSet.Member]) async throws {
        var token: String?
        if let tokenFile {
            token = String(decoding: try BoundedFile.read(tokenFile, limit: 64 << 10), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        // One client while the token stays the same: its connection to the reconciler is kept.
        let client = clients.withLock { cached -> RPCClient in
            if let cached = cached, cached.token == token { return cached.client }
            let fresh = RPCClient(server: server, token: token, timeout: timeout, proxy: proxy)
            cached = (token, fresh)
            return fresh
        }
        let body = RPCWire.SourcesBody(resolvers: members.map { .init(node: $0.node, source: $0.source) })
        _ = try await client.call("PUT", "/v1/sources/\(name)", body: body)
    }

    private func logSent(_ members: [SourceSet.Member], previous: [SourceSet.Member]?) {
        let before = Set(previous ?? [])
        let after = Set(members)
        let added = after.subtracting(before).map(\.source).sorted()
        let removed = before.subtracting(after).map(\.source).sorted()
        logger.info("sent the cluster's resolvers", metadata: [
            "set": "\(name)", "resolvers": .stringConvertible(members.count),
            "added": .array(added.prefix(20).map { .string(TerminalText.escape($0)) }),
            "removed": .array(removed.prefix(20).map { .string(TerminalText.escape($0)) }),
        ])
    }
}

/// The watch of one cluster: the reflector's I/O shell. It keeps the annotated Services and
/// hands the sender the whole set after the first LIST, after every change, relist and
/// reconnect. The Service → device mapping is pull mode's (`ClusterServices.members`).
public final class ClusterWatcher: Sendable {
    public let source: ClusterSource
    private let sender: SourceSender
    private let metrics: WatchMetrics
    private let logger: Logger
    private let listed = Atomic<Bool>(false)

    public init(source: ClusterSource, sender: SourceSender, metrics: WatchMetrics, logger: Logger) {
        self.source = source
        self.sender = sender
        self.metrics = metrics
        self.logger = logger
    }

    /// Whether a LIST has succeeded.
    public var hasListed: Bool { listed.load(ordering: .relaxed) }

    public func run() async {
        let clock = ContinuousClock()
        var reflector = Reflector()
        var step = reflector.start()
        while !Task.isCancelled {
            switch step {
            case .list:
                do {
                    let (items, resourceVersion) = try await source.client.listServices(namespace: source.namespace)
                    let relisting = hasListed
                    (step, _) = reflector.listed(items, resourceVersion: resourceVersion, now: clock.now, random: .random(in: 0...1))
                    if relisting { metrics.relist() }
                    listed.store(true, ordering: .relaxed)
                    publish(reflector, force: true, reason: relisting ? "relist" : "list")
                } catch is CancellationError {
                    return
                } catch {
                    step = reflector.listFailed(error, now: clock.now, random: .random(in: 0...1))
                    logFailure("listing Services failed", error, step, clock)
                }
            case .watch(let resourceVersion, let timeoutSeconds):
                var ended: Error?
                do {
                    let events = try await source.client.watchServices(namespace: source.namespace, resourceVersion: resourceVersion, timeoutSeconds: timeoutSeconds)
                    reflector.watchOpened(now: clock.now)
                    // A reconnect: the reconciler may have restarted meanwhile.
                    publish(reflector, force: true, reason: "watch")
                    for try await event in events {
                        metrics.event(event.type)
                        let outcome = reflector.apply(event)
                        if case .error(let code, let reason, let message) = event {
                            logger.notice("the watch reported an error", metadata: ["code": .stringConvertible(code), "reason": "\(reason)", "message": "\(TerminalText.escape(message))"])
                        }
                        if outcome.changed { publish(reflector, force: false, reason: event.type) }
                        if outcome.relist { break }
                    }
                } catch is CancellationError {
                    return
                } catch {
                    ended = error
                }
                if Task.isCancelled { return }
                step = reflector.watchEnded(ended, now: clock.now, random: .random(in: 0...1))
                if let ended { logFailure("the watch failed", ended, step, clock) }
            case .wait(let until):
                do { try await clock.sleep(until: until) } catch { return }
                step = reflector.resume(random: .random(in: 0...1))
            }
        }
    }

    private func publish(_ reflector: Reflector, force: Bool, reason: String) {
        let annotated = reflector.services.values.filter { source.selector.matches($0) && !$0.isBeingDeleted }.sorted { $0.key < $1.key }
        let services = ClusterServices(cluster: source.name, services: annotated, resourceVersion: reflector.resourceVersion ?? "", listed: reflector.services.count)
        let members = services.members.map { SourceSet.Member(node: $0.node, source: $0.source) }
        metrics.services(members.count)
        logger.debug("cluster set", metadata: ["reason": "\(reason)", "resolvers": .stringConvertible(members.count)])
        sender.offer(members, force: force)
    }

    private func logFailure(_ what: String, _ error: Error, _ step: Reflector.Step, _ clock: ContinuousClock) {
        var metadata: Logger.Metadata = ["cluster": "\(source.name)", "error": "\(error)"]
        if case .wait(let until) = step { metadata["retryIn"] = "\(DurationText.format(until - clock.now))" }
        logger.warning("\(what)", metadata: metadata)
    }
}
