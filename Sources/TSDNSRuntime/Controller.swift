import Foundation
import Logging
import TSDNSConfig
import TSDNSCore
import TSDNSTailscale

public enum ControllerError: Error, Sendable, CustomStringConvertible {
    case shuttingDown
    /// More pending adds than the loop keeps (`POST /v1/resolvers` for nodes not there).
    case tooManyPending(limit: Int)
    /// More source sets than the loop keeps.
    case tooManySourceSets(limit: Int)

    public var description: String {
        switch self {
        case .shuttingDown: return "shutting down"
        case .tooManyPending(let limit): return "\(limit) pending adds are waiting already; no more are kept until some are added or expire"
        case .tooManySourceSets(let limit): return "\(limit) source sets exist already; no new name is taken"
        }
    }
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

/// The long-running reconciler: the loop's state and the I/O shell around its scheduler.
///
/// Runs are decided by `RunScheduler` and executed by `work()`, which runs inside the
/// loop service's `run()`. Reads outside the scheduler (dry runs, RPC adds and removes) are
/// shared by concurrent callers. Every change to the durable state is written to
/// `state.file` before the change is acted on.
public actor Controller {
    /// `POST /v1/resolvers` keeps at most this many pending adds (source sets do not count).
    public nonisolated let maxPending: Int
    /// At most this many source sets (each up to 10,000 members) are kept.
    public static let maxSourceSets = 256

    public nonisolated let config: Config
    public nonisolated let reconciler: Reconciler
    public nonisolated let metrics: ReconcileMetrics
    private let logger: Logger
    private let now: @Sendable () -> Date
    private let clock = ContinuousClock()
    private let stateFile: StateFile?
    /// Called after every completed run, with its plan (the demo narrates from it).
    private let onRun: (@Sendable (Plan) -> Void)?

    private var state = LoopState()
    /// What `state.file` holds; nil when unknown (a file set aside), so the next change is written.
    private var saved: LoopState? = LoopState()
    private var last: RunResult?
    private var lastSync: Date?
    private var lastHealthcheck: Date?
    private var everRead = false
    private var lastError: Error?
    /// The mode whose run failed last: a healthcheck that succeeds says nothing about a
    /// sync's failure (it reads no cluster), so it does not clear one.
    private var lastErrorMode: RunMode?

    private var scheduler: RunScheduler<CheckedContinuation<Plan, Error>, ContinuousClock.Instant>
    private let wake = WakeSignal()
    /// The run in flight, if any: whether it has sent a write.
    private var inFlight: WriteProgress?
    private var stopping = false
    private var sharedSnapshot: Task<TailnetSnapshot, Error>?
    private var sharedDevices: Task<[Device], Error>?

    /// Loads `state.file` when the config names one: a corrupt file is set aside and
    /// logged; a newer format version is refused.
    public init(
        reconciler: Reconciler, metrics: ReconcileMetrics, logger: Logger,
        minimumGap: Duration = .milliseconds(200), maxPending: Int = 10_000, now: @escaping @Sendable () -> Date = Date.init,
        onRun: (@Sendable (Plan) -> Void)? = nil
    ) throws(StateFileError) {
        self.maxPending = maxPending
        self.config = reconciler.config
        self.reconciler = reconciler
        self.metrics = metrics
        self.logger = logger
        self.now = now
        self.onRun = onRun
        self.scheduler = RunScheduler(minimumGap: minimumGap)
        self.stateFile = reconciler.config.state.file.map(StateFile.init)
        if let stateFile {
            let (loaded, warning) = try stateFile.load(now: now())
            if let warning { logger.error("\(warning)") }
            state = loaded
            // Written once at start: a path that cannot be written is found now, not at the
            // first change an operator makes.
            try stateFile.save(loaded.durable, now: now())
            saved = loaded.durable
            if !loaded.exclusions.isEmpty || !loaded.sourceSets.isEmpty || !loaded.pending.isEmpty || !loaded.manualSources.isEmpty {
                logger.info("state restored", metadata: [
                    "file": "\(stateFile.path)",
                    "exclusions": .stringConvertible(loaded.exclusions.count),
                    "sourceSets": .stringConvertible(loaded.sourceSets.count),
                    "pending": .stringConvertible(loaded.pending.count),
                    "added": .stringConvertible(loaded.manualSources.count),
                ])
            }
        }
    }

    private func isHealthy(at date: Date) -> (Device) -> Bool {
        let staleAfter = config.healthcheck.staleAfter
        return { $0.isHealthy(now: date, staleAfter: staleAfter) }
    }

    /// Writes the durable state when it changed. A failed write is logged, never fatal: the
    /// loop goes on with what it has in memory.
    private func persist() {
        guard let stateFile else { return }
        let durable = state.durable
        guard durable != saved else { return }
        do {
            try stateFile.save(durable, now: now())
            saved = durable
        } catch {
            logger.error("could not write the state file; the change holds until a restart", metadata: ["error": "\(error)"])
        }
    }

    // MARK: Triggers

    /// Asks for a run and returns its plan once it has been applied.
    public func trigger(_ trigger: Trigger) async throws -> Plan {
        guard !stopping else { throw ControllerError.shuttingDown }
        return try await withCheckedThrowingContinuation { continuation in
            scheduler.add(trigger, waiter: continuation)
            wake.signal()
        }
    }

    /// A dry run: reads and plans as a run would now, writes nothing, changes nothing.
    public func preview(_ mode: RunMode) async throws -> Plan {
        guard !stopping else { throw ControllerError.shuttingDown }
        let snapshot = try await sharedRead()
        var next = state
        _ = next.housekeeping(snapshot, isHealthy: isHealthy(at: snapshot.readAt))
        var (request, _) = await prepare(mode, countsAsCheck: true, next, snapshot, record: false)
        request.dryRun = true
        return reconciler.plan(snapshot, reconciler.inventory(snapshot, request), request)
    }

    /// The worker: runs what the scheduler decides, one run at a time, until stopped. It
    /// runs inside the loop service's `run()`; cancelling it abandons a run that is reading.
    public func work() async {
        while !stopping && !Task.isCancelled {
            switch scheduler.next(now: clock.now) {
            case .idle:
                await wake.wait()
            case .wait(let until):
                // Triggers that arrive meanwhile join the waiting batch.
                try? await clock.sleep(until: until)
            case .run(let batch):
                let result: Result<Plan, Error>
                do {
                    result = .success(try await execute(batch.mode, countsAsCheck: batch.countsAsCheck))
                } catch {
                    result = .failure(error)
                }
                scheduler.finished()
                for waiter in batch.waiters { waiter.resume(with: result) }
            }
        }
        for waiter in scheduler.drain() { waiter.resume(throwing: ControllerError.shuttingDown) }
    }

    // MARK: One run

    private func execute(_ mode: RunMode, countsAsCheck: Bool) async throws -> Plan {
        let start = clock.now
        let snapshot: TailnetSnapshot
        do {
            snapshot = try await reconciler.read(mode: mode)
        } catch {
            record(error, mode: mode)
            throw error
        }
        everRead = true
        let promoted = state.housekeeping(snapshot, isHealthy: isHealthy(at: snapshot.readAt))
        for query in promoted { logger.info("pending resolver is healthy", metadata: ["node": "\(query)"]) }
        persist()
        let (request, next) = await prepare(mode, countsAsCheck: countsAsCheck, state, snapshot, record: true)
        let withdrawnBefore = state.withdrawn
        let progress = WriteProgress()
        inFlight = progress
        defer {
            inFlight = nil
            progress.finished()
        }
        let result: RunResult
        do {
            result = try await reconciler.run(request, snapshot: snapshot, progress: progress)
        } catch {
            record(error, mode: mode)
            throw error
        }
        state.failedChecks = next.failedChecks
        state.recovering = next.recovering
        if mode == .sync {
            let listed = Set(result.plan.targets.flatMap(\.desired).compactMap { IPAddress($0).flatMap(result.inventory.owner(of:))?.nodeId })
            state.settleWithdrawals(before: withdrawnBefore, sources: result.inventory.sources, listed: listed)
            persist()
        }
        if mode == .sync || lastErrorMode != .sync {
            lastError = nil
            lastErrorMode = nil
        }
        last = result
        let finished = now()
        if mode == .sync { lastSync = finished }
        lastHealthcheck = finished
        metrics.recordRun(mode: mode, plan: result.plan, duration: clock.now - start)
        recordInventoryMetrics()
        metrics.recordSuccess(at: finished)
        logPlan(result.plan)
        onRun?(result.plan)
        // A healthcheck never adds; a pending node that became healthy waits for no timer.
        if !promoted.isEmpty && mode == .healthcheck {
            scheduler.add(.change, waiter: nil)
        }
        return result.plan
    }

    private func runRequest(_ mode: RunMode, _ state: LoopState, _ snapshot: TailnetSnapshot) -> RunRequest {
        var request = RunRequest(
            mode: mode, dryRun: false,
            extraSources: state.extraSources(snapshot.devices, isHealthy: isHealthy(at: snapshot.readAt)),
            excluded: Set(state.exclusions.keys), withdrawn: state.withdrawn, failedChecks: state.failedChecks,
            failureThreshold: config.healthcheck.failureThreshold
        )
        request.heldBack = Set(state.recovering.keys)
        return request
    }

    /// The request of a run and the check counts after it: probes the resolvers (with
    /// `probe: dns`), then counts failures and passes — a run that is not a check only
    /// forgets the nodes it saw pass.
    private func prepare(
        _ mode: RunMode, countsAsCheck: Bool, _ base: LoopState, _ snapshot: TailnetSnapshot, record: Bool
    ) async -> (RunRequest, LoopState) {
        var next = base
        var request = runRequest(mode, base, snapshot)
        let probes = await reconciler.probe(snapshot, request)
        if record { metrics.recordProbes(probes.values) }
        request.probes = probes
        let inventory = reconciler.inventory(snapshot, request)
        if countsAsCheck {
            next.failedChecks = base.counting(snapshot.devices, fails: inventory.failsCheck)
            // With probes, a pass is an answer: a node no list holds is not probed by a healthcheck.
            let probing = reconciler.prober != nil
            next.recovering = base.recovering(
                after: snapshot.devices, fails: inventory.failsCheck,
                passes: { device in !probing || device.ipAddresses.contains { probes[$0]?.passed == true } },
                threshold: config.healthcheck.successThreshold
            )
        } else {
            next.failedChecks = base.failedChecks.filter { id, _ in snapshot.devices.contains { $0.nodeId == id && inventory.failsCheck($0) } }
        }
        // Only the check counts changed: the sources (every set's members resolved) stand.
        request.failedChecks = next.failedChecks
        request.heldBack = Set(next.recovering.keys)
        return (request, next)
    }

    private func record(_ error: Error, mode: RunMode) {
        metrics.recordFailure(mode: mode)
        lastError = error
        lastErrorMode = mode
        if let apiError = error as? TailscaleAPIError, apiError.isCredentialRejected {
            logger.error("the Tailscale API rejects the credential; fix it — nothing is written meanwhile", metadata: ["error": "\(apiError)"])
            return
        }
        if let clusterError = error as? ClusterReadError, clusterError.isCredentialRejected {
            logger.error("a Kubernetes cluster rejects the credentials; fix them — nothing is written meanwhile", metadata: [
                "cluster": "\(clusterError.cluster)", "error": "\(clusterError.underlying)",
            ])
            return
        }
        if case ApplyError.outcomeUnknown = error {
            logger.warning("run failed after a write was sent", metadata: ["mode": "\(mode.rawValue)", "error": "\(error)"])
            return
        }
        logger.warning("run failed; nothing was written", metadata: ["mode": "\(mode.rawValue)", "error": "\(error)"])
    }

    /// Writes are logged where they happen (the applier); held-back removals here.
    private func logPlan(_ plan: Plan) {
        for target in plan.targets where !target.entries(.blocked).isEmpty {
            logger.notice("removals held back by a safety rule", metadata: [
                "target": "\(target.target)",
                "blocked": .array(target.entries(.blocked).map { .string("\($0.address) (\($0.ruleDescription ?? ""))") }),
            ])
        }
    }

    private func recordInventoryMetrics() {
        if let last {
            metrics.recordInventory(last, pending: state.pending.count, excluded: state.exclusions.count)
        } else {
            metrics.recordPendingAndExcluded(pending: state.pending.count, excluded: state.exclusions.count, targets: config.resolvers.targets)
        }
    }

    /// One snapshot read shared by every dry run that asks while it is in flight.
    private func sharedRead() async throws -> TailnetSnapshot {
        if let task = sharedSnapshot { return try await task.value }
        // A sync's read: it holds what a healthcheck's holds, and the clusters.
        let task = Task { try await reconciler.read(mode: .sync) }
        sharedSnapshot = task
        defer { sharedSnapshot = nil }
        return try await task.value
    }

    /// One devices read shared by every RPC add, remove or source set that asks while it is
    /// in flight.
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
            state.manualSince[device.nodeId] = at
            persist()
            let plan = try await trigger(.change)
            // The run may still not list it (its DNS probe failed, or it is recovering):
            // then it waits like any node that is not healthy yet.
            let addresses = Set(device.ipAddresses.filter(config.resolvers.addressFamily.includes).map(\.description))
            if !addresses.isEmpty, !plan.targets.contains(where: { !addresses.isDisjoint(with: $0.desired) }) {
                state.manualSources[device.nodeId]?.remove(source)
                if state.manualSources[device.nodeId]?.isEmpty == true { state.manualSources[device.nodeId] = nil }
                state.pending.append(PendingAdd(query: query, source: source, since: at, expires: at.addingTimeInterval(config.sync.pendingTTL.seconds)))
                persist()
                return .pending
            }
            return .added(plan)
        case .found(let device):
            state.exclusions[device.nodeId] = nil
            fallthrough
        case .notFound:
            state.pending.removeAll { $0.query == query }
            guard state.pending.count < maxPending else {
                persist()
                throw ControllerError.tooManyPending(limit: maxPending)
            }
            state.pending.append(PendingAdd(query: query, source: source, since: at, expires: at.addingTimeInterval(config.sync.pendingTTL.seconds)))
            persist()
            recordInventoryMetrics()
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
            persist()
            return .ambiguous(candidates)
        case .found(let device):
            state.exclusions[device.nodeId] = Exclusion(
                nodeId: device.nodeId, hostname: device.hostname, since: at,
                until: at.addingTimeInterval(config.sync.exclusionTTL.seconds)
            )
            state.manualSources[device.nodeId] = nil
            // A pending add of the same node under another name must not bring it back.
            let index = NodeQuery.Index(devices)
            state.pending.removeAll { add in
                if case .found(let other) = index.resolve(add.query, isHealthy: healthy) { return other.nodeId == device.nodeId }
                return false
            }
            persist()
            logger.info("resolver excluded", metadata: ["node": "\(query)", "nodeId": "\(device.nodeId)"])
            return .removed(try await trigger(.change))
        case .notFound:
            guard hadPending else { return .notFound }
            persist()
            return .removed(try await trigger(.change))
        }
    }

    /// `PUT /v1/sources/{name}`: the set replaces what `name` said before; reads the devices
    /// afresh and applies. The same set sent again changes nothing and writes nothing.
    public func replaceSources(_ name: String, members: [SourceSet.Member]) async throws -> Plan {
        guard !stopping else { throw ControllerError.shuttingDown }
        guard state.sourceSets[name] != nil || state.sourceSets.count < Self.maxSourceSets else {
            throw ControllerError.tooManySourceSets(limit: Self.maxSourceSets)
        }
        let devices = try await sharedDeviceList()
        let at = now()
        let before = state.sourceSets[name]?.members
        state.replaceSourceSet(name, members: members, at: at, devices: devices, isHealthy: isHealthy(at: at))
        persist()
        if before != members {
            logger.info("source set replaced", metadata: [
                "source": "\(name)", "resolvers": .stringConvertible(members.count),
                "withdrawn": .array(state.withdrawn.filter { $0.value == name }.keys.sorted().map { .string($0) }),
            ])
        }
        return try await trigger(.change)
    }

    // MARK: Views

    public var readiness: Readiness {
        // Ready after the first successful read; a rejected credential makes it not ready.
        let rejected = (lastError as? TailscaleAPIError)?.isCredentialRejected ?? false
        return Readiness(ready: everRead && !rejected, lastError: lastError.map { "\($0)" })
    }

    public func inventory() -> InventoryView {
        InventoryView(
            result: last, pending: state.pending, exclusions: Array(state.exclusions.values),
            lastSync: lastSync, lastHealthcheck: lastHealthcheck, lastError: lastError.map { "\($0)" },
            addressFamily: config.resolvers.addressFamily
        )
    }

    /// `GET /v1/sources`, judged against the devices the last run saw.
    public func sources() -> SourcesView {
        let devices = last?.inventory.devices ?? []
        let healthy = isHealthy(at: now())
        return SourcesView(sources: state.sourceSets.values.sorted { $0.name < $1.name }.map { set in
            let states = state.states(of: set, devices: devices, isHealthy: healthy)
            return SourcesView.Item(
                name: set.name,
                resolvers: zip(set.members, states).map { SourcesView.Member(node: $0.node, source: $0.source, state: $1) },
                updated: Timestamp.format(set.updated)
            )
        })
    }

    // MARK: Shutdown

    /// Stops taking triggers and fails the queued ones. Returns once the caller may cancel
    /// the worker: at once when no run is in flight or it is still reading (nothing was
    /// written), else when its write is answered or `writeGrace` has passed.
    public func stop(writeGrace: Duration = .seconds(3)) async {
        stopping = true
        for waiter in scheduler.drain() { waiter.resume(throwing: ControllerError.shuttingDown) }
        wake.signal()
        guard let inFlight, inFlight.stop() else { return }
        if !(await inFlight.waitForFinish(upTo: writeGrace)) {
            logger.warning("a write did not get its answer in time; its outcome is unknown and the next start reads the lists again")
        }
    }
}
