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
    public var since: Date
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

/// The inventory state the loop keeps across runs.
struct LoopState: Sendable {
    /// Consecutive failed checks by nodeId.
    var failedChecks: [String: Int] = [:]
    /// Resolvers added by RPC, with their sources, by nodeId.
    var manualSources: [String: Set<String>] = [:]
    var pending: [PendingAdd] = []
    var exclusions: [String: Exclusion] = [:]

    /// Expires exclusions and pending adds, forgets nodes that left the tailnet, and turns
    /// pending adds whose node is now healthy into resolvers — unless an operator excluded
    /// that node after the add was made. Returns whether any pending add was promoted.
    mutating func housekeeping(_ snapshot: TailnetSnapshot, isHealthy: (Device) -> Bool) -> [String] {
        let at = snapshot.readAt
        let present = Set(snapshot.devices.map(\.nodeId))
        exclusions = exclusions.filter { $0.value.until > at && present.contains($0.key) }
        manualSources = manualSources.filter { present.contains($0.key) }
        var promoted: [String] = []
        var kept: [PendingAdd] = []
        for add in pending {
            if case .found(let device) = NodeQuery.resolve(add.query, in: snapshot.devices, isHealthy: isHealthy), isHealthy(device) {
                if let exclusion = exclusions[device.nodeId], exclusion.since >= add.since { continue }
                manualSources[device.nodeId, default: []].insert(add.source)
                exclusions[device.nodeId] = nil
                promoted.append(add.query)
            } else if add.expires > at {
                kept.append(add)
            }
        }
        pending = kept
        return promoted
    }

    /// Failed checks after one more check of `devices`: +1 for each unhealthy device, and a
    /// healthy one starts again from zero.
    func counting(_ devices: [Device], isHealthy: (Device) -> Bool) -> [String: Int] {
        var counts: [String: Int] = [:]
        for device in devices where !isHealthy(device) {
            counts[device.nodeId] = (failedChecks[device.nodeId] ?? 0) + 1
        }
        return counts
    }
}

/// The long-running reconciler's state and its one-apply-at-a-time scheduler.
///
/// Every trigger (timer, RPC) waits for a run that starts after it arrived. Triggers that
/// arrive while a run is in flight join one follow-up run per mode; event-triggered runs
/// start at least `minimumGap` apart, so a storm costs at most one run per gap and never
/// starves the timers. Reads outside the scheduler (dry runs, RPC adds and removes) are
/// shared by concurrent callers.
public actor Controller {
    public nonisolated let config: Config
    public nonisolated let reconciler: Reconciler
    public nonisolated let metrics: ReconcileMetrics
    private let logger: Logger
    private let now: @Sendable () -> Date
    private let minimumGap: Duration
    /// Called after every completed run, with its plan (the demo narrates from it).
    private let onRun: (@Sendable (Plan) -> Void)?

    private var state = LoopState()
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
        /// Whether this run counts as a health check for `failureThreshold`: timer runs and
        /// RPC sync/healthcheck do; the runs of RPC adds and removes do not.
        var countsAsCheck: Bool
        var waiters: [CheckedContinuation<Plan, Error>] = []
    }
    private var queue: [Batch] = []
    private var worker: Task<Void, Never>?
    private var workerIdle: [CheckedContinuation<Void, Never>] = []
    private var applying = false
    private var lastEventRun: ContinuousClock.Instant?
    private var stopping = false
    private var sharedSnapshot: Task<TailnetSnapshot, Error>?
    private var sharedDevices: Task<[Device], Error>?

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

    private func isHealthy(at date: Date) -> (Device) -> Bool {
        let staleAfter = config.healthcheck.staleAfter
        return { $0.health(now: date, staleAfter: staleAfter).isHealthy }
    }

    // MARK: Triggers

    /// Runs (or joins) a reconcile and returns its plan once it has been applied.
    /// `event` marks RPC triggers, which respect the minimum gap; timers do not.
    public func trigger(_ mode: RunMode, event: Bool, countsAsCheck: Bool = true) async throws -> Plan {
        guard !stopping else { throw ControllerError.shuttingDown }
        return try await withCheckedThrowingContinuation { continuation in
            if let index = queue.firstIndex(where: { $0.mode == mode }) {
                queue[index].event = queue[index].event && event
                queue[index].countsAsCheck = queue[index].countsAsCheck || countsAsCheck
                queue[index].waiters.append(continuation)
            } else {
                queue.append(Batch(mode: mode, event: event, countsAsCheck: countsAsCheck, waiters: [continuation]))
            }
            startWorkerIfIdle()
        }
    }

    /// A dry run: reads and plans as a run would now, writes nothing, changes nothing.
    public func preview(_ mode: RunMode) async throws -> Plan {
        guard !stopping else { throw ControllerError.shuttingDown }
        let snapshot = try await sharedRead()
        var next = state
        let healthy = isHealthy(at: snapshot.readAt)
        _ = next.housekeeping(snapshot, isHealthy: healthy)
        next.failedChecks = next.counting(snapshot.devices, isHealthy: healthy)
        var request = runRequest(mode, next)
        request.dryRun = true
        return reconciler.plan(snapshot, reconciler.inventory(snapshot, request), request)
    }

    private func startWorkerIfIdle() {
        guard worker == nil, !queue.isEmpty, !stopping else { return }
        worker = Task { await self.work() }
    }

    private func work() async {
        while !stopping, let next = queue.first {
            if next.event, let previous = lastEventRun, previous + minimumGap > .now {
                try? await Task.sleep(until: previous + minimumGap)
            }
            // Take the batch only now, so triggers that came during the gap join it.
            guard !stopping, !Task.isCancelled, !queue.isEmpty else { break }
            let batch = queue.removeFirst()
            if batch.event { lastEventRun = .now }
            let result: Result<Plan, Error>
            do {
                result = .success(try await execute(batch.mode, countsAsCheck: batch.countsAsCheck))
            } catch {
                result = .failure(error)
            }
            for waiter in batch.waiters { waiter.resume(with: result) }
        }
        worker = nil
        resumeIdleWaiters()
        if stopping { failQueued() } else { startWorkerIfIdle() }
    }

    // MARK: One run

    private func execute(_ mode: RunMode, countsAsCheck: Bool) async throws -> Plan {
        let clock = ContinuousClock()
        let start = clock.now
        let snapshot: TailnetSnapshot
        do {
            snapshot = try await reconciler.read()
        } catch {
            record(error, mode: mode)
            throw error
        }
        everRead = true
        let healthy = isHealthy(at: snapshot.readAt)
        let promoted = state.housekeeping(snapshot, isHealthy: healthy)
        for query in promoted { logger.info("pending resolver is healthy", metadata: ["node": "\(query)"]) }
        var next = state
        // A run that is not a check only forgets the nodes it saw healthy.
        next.failedChecks = countsAsCheck
            ? state.counting(snapshot.devices, isHealthy: healthy)
            : state.failedChecks.filter { id, _ in snapshot.devices.contains { $0.nodeId == id && !healthy($0) } }
        let request = runRequest(mode, next)
        applying = true
        defer { applying = false }
        let result: RunResult
        do {
            result = try await reconciler.run(request, snapshot: snapshot)
        } catch {
            record(error, mode: mode)
            throw error
        }
        state.failedChecks = next.failedChecks
        lastError = nil
        lastErrorText = nil
        last = result
        let finished = now()
        if mode == .sync { lastSync = finished }
        lastHealthcheck = finished
        metrics.recordRun(mode: mode, plan: result.plan, duration: clock.now - start)
        metrics.recordInventory(result, pending: state.pending.count, excluded: state.exclusions.count)
        metrics.recordSuccess(at: finished)
        logPlan(result.plan)
        onRun?(result.plan)
        // A healthcheck never adds; a pending node that became healthy waits for no timer.
        if !promoted.isEmpty && mode == .healthcheck {
            Task { _ = try? await self.trigger(.sync, event: true, countsAsCheck: false) }
        }
        return result.plan
    }

    private func runRequest(_ mode: RunMode, _ state: LoopState) -> RunRequest {
        RunRequest(
            mode: mode, dryRun: false, extraSources: state.manualSources,
            excluded: Set(state.exclusions.keys), failedChecks: state.failedChecks,
            failureThreshold: config.healthcheck.failureThreshold
        )
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

    /// Writes are logged where they happen (the applier); held-back removals here.
    private func logPlan(_ plan: Plan) {
        for target in plan.targets where !target.entries(.blocked).isEmpty {
            logger.notice("removals held back by a safety rule", metadata: [
                "target": "\(target.target)",
                "blocked": "\(target.entries(.blocked).map { "\($0.address) (\($0.ruleDescription ?? ""))" })",
            ])
        }
    }

    /// One snapshot read shared by every dry run that asks while it is in flight.
    private func sharedRead() async throws -> TailnetSnapshot {
        if let task = sharedSnapshot { return try await task.value }
        let task = Task { try await reconciler.read() }
        sharedSnapshot = task
        defer { sharedSnapshot = nil }
        return try await task.value
    }

    /// One devices read shared by every RPC add or remove that asks while it is in flight.
    private func sharedDeviceList() async throws -> [Device] {
        if let task = sharedDevices { return try await task.value }
        let task = Task { try await reconciler.client.listDevices() }
        sharedDevices = task
        defer { sharedDevices = nil }
        return try await task.value
    }

    // MARK: RPC operations

    /// `POST /v1/resolvers`: reads the devices afresh; a healthy node is added at once (the
    /// returned plan has been applied), any other is pending until `sync.pendingTTL`.
    public func addResolver(_ query: String, source: String) async throws -> AddOutcome {
        guard !stopping else { throw ControllerError.shuttingDown }
        let devices = try await sharedDeviceList()
        let at = now()
        let healthy = isHealthy(at: at)
        switch NodeQuery.resolve(query, in: devices, isHealthy: healthy) {
        case .ambiguous(let candidates):
            return .ambiguous(candidates)
        case .found(let device) where healthy(device):
            state.exclusions[device.nodeId] = nil
            state.pending.removeAll { $0.query == query }
            state.manualSources[device.nodeId, default: []].insert(source)
            return .added(try await trigger(.sync, event: true, countsAsCheck: false))
        case .found(let device):
            state.exclusions[device.nodeId] = nil
            fallthrough
        case .notFound:
            state.pending.removeAll { $0.query == query }
            state.pending.append(PendingAdd(query: query, source: source, since: at, expires: at.addingTimeInterval(config.sync.pendingTTL.seconds)))
            metrics.recordPendingAndExcluded(pending: state.pending.count, excluded: state.exclusions.count, targets: config.resolvers.targets)
            logger.info("resolver pending", metadata: ["node": "\(query)", "source": "\(source)"])
            return .pending
        }
    }

    /// `DELETE /v1/resolvers/{node}`: excludes the node and applies the removal.
    public func removeResolver(_ query: String) async throws -> RemoveOutcome {
        guard !stopping else { throw ControllerError.shuttingDown }
        let devices = try await sharedDeviceList()
        let at = now()
        let healthy = isHealthy(at: at)
        let hadPending = state.pending.contains { $0.query == query }
        state.pending.removeAll { $0.query == query }
        switch NodeQuery.resolve(query, in: devices, isHealthy: healthy) {
        case .ambiguous(let candidates):
            return .ambiguous(candidates)
        case .found(let device):
            state.exclusions[device.nodeId] = Exclusion(
                nodeId: device.nodeId, hostname: device.hostname, since: at,
                until: at.addingTimeInterval(config.sync.exclusionTTL.seconds)
            )
            state.manualSources[device.nodeId] = nil
            // A pending add of the same node under another name must not bring it back.
            state.pending.removeAll { add in
                if case .found(let other) = NodeQuery.resolve(add.query, in: devices, isHealthy: healthy) { return other.nodeId == device.nodeId }
                return false
            }
            logger.info("resolver excluded", metadata: ["node": "\(query)", "nodeId": "\(device.nodeId)"])
            return .removed(try await trigger(.sync, event: true, countsAsCheck: false))
        case .notFound:
            guard hadPending else { return .notFound }
            return .removed(try await trigger(.sync, event: true, countsAsCheck: false))
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
            result: last, pending: state.pending, exclusions: Array(state.exclusions.values),
            lastSync: lastSync, lastHealthcheck: lastHealthcheck, lastError: lastErrorText,
            addressFamily: config.resolvers.addressFamily
        )
    }

    // MARK: Shutdown

    /// Stops taking triggers. A run that is still reading is abandoned (nothing was
    /// written); one that is writing gets up to `writeGrace` for its answer; queued
    /// triggers fail with `shuttingDown`.
    public func shutdown(writeGrace: Duration = .milliseconds(3500)) async {
        stopping = true
        if let worker {
            if !applying { worker.cancel() }
            if !(await waitForWorker(upTo: writeGrace)) {
                logger.warning("a write did not finish in time; abandoning it")
                worker.cancel()
                await worker.value
            }
        }
        failQueued()
    }

    private func waitForWorker(upTo limit: Duration) async -> Bool {
        guard worker != nil else { return true }
        let timeout = Task {
            try? await Task.sleep(for: limit)
            self.resumeIdleWaiters()
        }
        await withCheckedContinuation { workerIdle.append($0) }
        timeout.cancel()
        return worker == nil
    }

    private func resumeIdleWaiters() {
        let waiters = workerIdle
        workerIdle = []
        for waiter in waiters { waiter.resume() }
    }

    private func failQueued() {
        let batches = queue
        queue = []
        for waiter in batches.flatMap(\.waiters) { waiter.resume(throwing: ControllerError.shuttingDown) }
    }
}
