import Foundation
import Logging
import TSDNSCore
import TSDNSTailscale

/// An RPC add for a node that is not in the tailnet, or not healthy, yet.
public struct PendingAdd: Sendable, Equatable {
    public var query: String
    public var source: String
    public var since: Date
    public var expires: Date
}

/// An RPC remove: the node stays out until added again, gone, or `until` passes.
public struct Exclusion: Sendable, Equatable {
    public var nodeId: String
    public var hostname: String
    public var until: Date
}

public enum ControllerError: Error, Sendable, CustomStringConvertible {
    case shuttingDown

    public var description: String { "shutting down" }
}

public enum AddOutcome: Sendable {
    case added(Plan)
    case pending
    case ambiguous([Device])
}

public enum RemoveOutcome: Sendable {
    case removed(Plan)
    case notFound
    case ambiguous([Device])
}

/// What `/readyz` reports.
public struct Readiness: Sendable {
    public var ready: Bool
    public var lastError: String?
}

/// The long-running reconciler's state and its one-apply-at-a-time scheduler.
///
/// Every trigger (timer, RPC) waits for a run that starts after it arrived. Triggers that
/// arrive while a run is in flight join one follow-up run; event-triggered runs start at
/// least `minimumGap` apart, so a storm costs at most one run per gap and never starves.
public actor Controller {
    public nonisolated let config: Config
    public nonisolated let reconciler: Reconciler
    public nonisolated let metrics: ReconcileMetrics
    private let logger: Logger
    private let now: @Sendable () -> Date
    private let minimumGap: Duration
    /// Called after every completed run, with its plan (the demo narrates from it).
    private let onRun: (@Sendable (Plan) -> Void)?

    // Inventory state, kept across runs.
    private var failedChecks: [String: Int] = [:]
    private var manualSources: [String: Set<String>] = [:]
    private var pending: [PendingAdd] = []
    private var exclusions: [String: Exclusion] = [:]
    private var last: RunResult?
    private var lastSync: Date?
    private var lastHealthcheck: Date?
    private var everRead = false
    private var lastError: TailscaleAPIError?
    private var lastErrorText: String?

    // Scheduling.
    private struct Batch {
        var mode: RunMode
        var event: Bool
        var waiters: [CheckedContinuation<Plan, Error>] = []
    }
    private var queued: Batch?
    private var worker: Task<Void, Never>?
    private var applying = false
    private var lastEventRun: ContinuousClock.Instant?
    private var stopping = false

    public init(
        reconciler: Reconciler, metrics: ReconcileMetrics, logger: Logger,
        minimumGap: Duration = .milliseconds(200), now: @escaping @Sendable () -> Date = Date.init,
        onRun: (@Sendable (Plan) -> Void)? = nil
    ) {
        self.config = reconciler.config
        self.reconciler = reconciler
        self.metrics = metrics
        self.logger = logger
        self.minimumGap = minimumGap
        self.now = now
        self.onRun = onRun
    }

    // MARK: Triggers

    /// Runs (or joins) a reconcile and returns its plan once it has been applied.
    /// `event` marks RPC triggers, which respect the minimum gap; timers do not.
    public func trigger(_ mode: RunMode, event: Bool) async throws -> Plan {
        guard !stopping else { throw ControllerError.shuttingDown }
        return try await withCheckedThrowingContinuation { continuation in
            var batch = queued ?? Batch(mode: mode, event: event)
            if mode == .sync { batch.mode = .sync }
            batch.event = batch.event && event
            batch.waiters.append(continuation)
            queued = batch
            startWorkerIfIdle()
        }
    }

    /// A dry run: reads and plans with the current state, writes nothing, changes nothing.
    public func preview(_ mode: RunMode) async throws -> Plan {
        guard !stopping else { throw ControllerError.shuttingDown }
        let snapshot = try await reconciler.read()
        var request = runRequest(mode, failedChecks: countFailures(snapshot.devices))
        request.dryRun = true
        return reconciler.plan(snapshot, reconciler.inventory(snapshot, request), request)
    }

    private func startWorkerIfIdle() {
        guard worker == nil, queued != nil else { return }
        worker = Task { await self.work() }
    }

    private func work() async {
        while let next = queued {
            if next.event, let previous = lastEventRun {
                let ready = previous + minimumGap
                if ready > .now { try? await Task.sleep(until: ready) }
            }
            if Task.isCancelled { break }
            // Take the batch only now, so triggers that came during the gap join it.
            guard let batch = queued else { break }
            queued = nil
            if batch.event { lastEventRun = .now }
            let result: Result<Plan, Error>
            do {
                result = .success(try await execute(batch.mode))
            } catch {
                result = .failure(error)
            }
            for waiter in batch.waiters { waiter.resume(with: result) }
        }
        worker = nil
        if stopping { failQueued() } else { startWorkerIfIdle() }
    }

    // MARK: One run

    private func execute(_ mode: RunMode) async throws -> Plan {
        let clock = ContinuousClock()
        let start = clock.now
        let snapshot: TailnetSnapshot
        do {
            snapshot = try await reconciler.read()
        } catch {
            record(error, mode: mode)
            throw error
        }
        let promoted = housekeeping(snapshot)
        let request = runRequest(mode, failedChecks: countFailures(snapshot.devices))
        failedChecks = request.failedChecks
        applying = true
        defer { applying = false }
        let result: RunResult
        do {
            result = try await reconciler.run(request, snapshot: snapshot)
        } catch {
            record(error, mode: mode)
            throw error
        }
        everRead = true
        lastError = nil
        lastErrorText = nil
        last = result
        let finished = now()
        if mode == .sync { lastSync = finished }
        lastHealthcheck = finished
        metrics.recordRun(mode: mode, plan: result.plan, duration: clock.now - start)
        metrics.recordInventory(result, pending: pending.count, excluded: exclusions.count)
        metrics.recordSuccess(at: finished)
        logPlan(result.plan)
        onRun?(result.plan)
        // A healthcheck never adds; a pending node that became healthy waits for no timer.
        if promoted && mode == .healthcheck {
            Task { _ = try? await self.trigger(.sync, event: true) }
        }
        return result.plan
    }

    private func runRequest(_ mode: RunMode, failedChecks: [String: Int]) -> RunRequest {
        RunRequest(
            mode: mode, dryRun: false, extraSources: manualSources,
            excluded: Set(exclusions.keys), failedChecks: failedChecks,
            failureThreshold: config.healthcheck.failureThreshold
        )
    }

    /// Consecutive failed checks, this one included, for the devices of this read.
    private func countFailures(_ devices: [Device]) -> [String: Int] {
        var counts: [String: Int] = [:]
        let at = now()
        for device in devices where !device.health(now: at, staleAfter: config.healthcheck.staleAfter).isHealthy {
            counts[device.nodeId] = (failedChecks[device.nodeId] ?? 0) + 1
        }
        return counts
    }

    /// Expires exclusions and pending adds, forgets nodes that left the tailnet, and turns
    /// pending adds whose node is now healthy into resolvers. Returns whether any did.
    private func housekeeping(_ snapshot: TailnetSnapshot) -> Bool {
        let at = snapshot.readAt
        let present = Set(snapshot.devices.map(\.nodeId))
        exclusions = exclusions.filter { $0.value.until > at && present.contains($0.key) }
        manualSources = manualSources.filter { present.contains($0.key) }
        var promoted = false
        pending = pending.filter { add in
            let healthy = { (device: Device) in device.health(now: at, staleAfter: self.config.healthcheck.staleAfter).isHealthy }
            if case .found(let device) = NodeQuery.resolve(add.query, in: snapshot.devices, isHealthy: healthy), healthy(device) {
                manualSources[device.nodeId, default: []].insert(add.source)
                exclusions[device.nodeId] = nil
                logger.info("pending resolver is healthy", metadata: ["node": "\(add.query)", "nodeId": "\(device.nodeId)"])
                promoted = true
                return false
            }
            if add.expires <= at {
                logger.warning("pending resolver never became healthy; giving up", metadata: ["node": "\(add.query)"])
                return false
            }
            return true
        }
        return promoted
    }

    private func record(_ error: Error, mode: RunMode) {
        metrics.recordFailure(mode: mode)
        lastErrorText = "\(error)"
        if let apiError = error as? TailscaleAPIError {
            lastError = apiError
            if apiError.isCredentialRejected {
                logger.error("the Tailscale API rejects the credential; fix it — nothing is written meanwhile", metadata: ["error": "\(apiError)"])
                return
            }
        }
        logger.warning("run failed; nothing was written", metadata: ["mode": "\(mode.rawValue)", "error": "\(error)"])
    }

    private func logPlan(_ plan: Plan) {
        for target in plan.targets where target.changed || !target.entries(.blocked).isEmpty {
            logger.notice("\(plan.dryRun ? "planned" : "applied")", metadata: [
                "target": "\(target.target)",
                "added": "\(target.entries(.add).map(\.address))",
                "removed": "\(target.entries(.remove).map(\.address))",
                "blocked": "\(target.entries(.blocked).map { "\($0.address) (\($0.ruleDescription ?? ""))" })",
            ])
        }
    }

    // MARK: RPC operations

    /// `POST /v1/resolvers`: reads the devices afresh; a healthy node is added at once (the
    /// returned plan has been applied), any other is pending until `sync.pendingTTL`.
    public func addResolver(_ query: String, source: String) async throws -> AddOutcome {
        guard !stopping else { throw ControllerError.shuttingDown }
        let devices = try await reconciler.client.listDevices()
        let at = now()
        let healthy = { (device: Device) in device.health(now: at, staleAfter: self.config.healthcheck.staleAfter).isHealthy }
        switch NodeQuery.resolve(query, in: devices, isHealthy: healthy) {
        case .ambiguous(let candidates):
            return .ambiguous(candidates)
        case .found(let device) where healthy(device):
            exclusions[device.nodeId] = nil
            pending.removeAll { $0.query == query }
            manualSources[device.nodeId, default: []].insert(source)
            return .added(try await trigger(.sync, event: true))
        case .found(let device):
            exclusions[device.nodeId] = nil
            fallthrough
        case .notFound:
            pending.removeAll { $0.query == query }
            pending.append(PendingAdd(query: query, source: source, since: at, expires: at.addingTimeInterval(config.sync.pendingTTL.seconds)))
            metrics.recordPendingAndExcluded(pending: pending.count, excluded: exclusions.count, targets: config.resolvers.targets)
            logger.info("resolver pending", metadata: ["node": "\(query)", "source": "\(source)"])
            return .pending
        }
    }

    /// `DELETE /v1/resolvers/{node}`: excludes the node and applies the removal.
    public func removeResolver(_ query: String) async throws -> RemoveOutcome {
        guard !stopping else { throw ControllerError.shuttingDown }
        let devices = try await reconciler.client.listDevices()
        let at = now()
        let healthy = { (device: Device) in device.health(now: at, staleAfter: self.config.healthcheck.staleAfter).isHealthy }
        let hadPending = pending.contains { $0.query == query }
        pending.removeAll { $0.query == query }
        switch NodeQuery.resolve(query, in: devices, isHealthy: healthy) {
        case .ambiguous(let candidates):
            return .ambiguous(candidates)
        case .found(let device):
            exclusions[device.nodeId] = Exclusion(
                nodeId: device.nodeId, hostname: device.hostname, until: at.addingTimeInterval(config.sync.exclusionTTL.seconds)
            )
            manualSources[device.nodeId] = nil
            logger.info("resolver excluded", metadata: ["node": "\(query)", "nodeId": "\(device.nodeId)"])
            return .removed(try await trigger(.sync, event: true))
        case .notFound:
            guard hadPending else { return .notFound }
            return .removed(try await trigger(.sync, event: true))
        }
    }

    // MARK: Views

    public var readiness: Readiness {
        // Ready after the first successful read; a rejected credential makes it not ready.
        let rejected = lastError?.isCredentialRejected ?? false
        return Readiness(ready: everRead && !rejected, lastError: lastErrorText)
    }

    public func inventory() -> InventoryView {
        InventoryView(
            result: last, pending: pending, exclusions: Array(exclusions.values),
            lastSync: lastSync, lastHealthcheck: lastHealthcheck, lastError: lastErrorText,
            addressFamily: config.resolvers.addressFamily
        )
    }

    // MARK: Shutdown

    /// Stops taking triggers; a run that is writing finishes, one that is still reading is
    /// abandoned (nothing was written), queued triggers fail with `shuttingDown`.
    public func shutdown() async {
        stopping = true
        if let worker {
            if !applying { worker.cancel() }
            await worker.value
        }
        failQueued()
    }

    private func failQueued() {
        guard let batch = queued else { return }
        queued = nil
        for waiter in batch.waiters { waiter.resume(throwing: ControllerError.shuttingDown) }
    }
}
