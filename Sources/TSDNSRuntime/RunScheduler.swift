import TSDNSCore

/// What asks for a run.
public enum Trigger: Sendable, Equatable {
    /// The loop's own timers: a health check, not held back by the gap.
    case timer(RunMode)
    /// `POST /v1/sync` or `/v1/healthcheck`: a check, held back by the gap.
    case request(RunMode)
    /// An RPC add, remove or source set: a sync that is not a check (it must not count a
    /// node's failures twice), held back by the gap.
    case change

    public var mode: RunMode {
        switch self {
        case .timer(let mode), .request(let mode): return mode
        case .change: return .sync
        }
    }

    /// Whether the run counts toward `healthcheck.failureThreshold` (and `successThreshold`).
    public var countsAsCheck: Bool {
        if case .change = self { return false }
        return true
    }

    /// Event-triggered runs start at least the minimum gap apart; timers do not wait.
    var respectsGap: Bool {
        if case .timer = self { return false }
        return true
    }
}

/// The loop's scheduling decisions as a pure value, driven by `now` (the controller is the
/// I/O shell around it). One run at a time; every trigger waits for a run that starts after
/// it arrived; triggers of one mode that arrive before their run starts share it; runs
/// asked for by events start at least `minimumGap` apart, so a storm of RPC calls costs one
/// run per gap and never starves the timers.
struct RunScheduler<Waiter, Instant: InstantProtocol>: Sendable where Instant.Duration == Duration, Waiter: Sendable {
    struct Batch: Sendable {
        var mode: RunMode
        /// Held back by the gap: only while every trigger in it is an event.
        var respectsGap: Bool
        /// A check when any trigger in it is one.
        var countsAsCheck: Bool
        var waiters: [Waiter]
    }

    enum Decision: Sendable {
        case idle
        case wait(until: Instant)
        case run(Batch)
    }

    let minimumGap: Duration
    private(set) var queue: [Batch] = []
    private(set) var running = false
    private var lastEventStart: Instant?

    init(minimumGap: Duration) {
        self.minimumGap = minimumGap
    }

    /// Adds a trigger; `waiter` (if any) is handed back with the batch that serves it.
    mutating func add(_ trigger: Trigger, waiter: Waiter?) {
        let waiters = waiter.map { [$0] } ?? []
        if let index = queue.firstIndex(where: { $0.mode == trigger.mode }) {
            queue[index].respectsGap = queue[index].respectsGap && trigger.respectsGap
            queue[index].countsAsCheck = queue[index].countsAsCheck || trigger.countsAsCheck
            queue[index].waiters += waiters
        } else {
            queue.append(Batch(mode: trigger.mode, respectsGap: trigger.respectsGap, countsAsCheck: trigger.countsAsCheck, waiters: waiters))
        }
    }

    /// What to do at `now`. `.run` takes the batch out of the queue and marks a run in
    /// flight until `finished()`; triggers that come during a `.wait` still join it.
    mutating func next(now: Instant) -> Decision {
        guard !running, let first = queue.first else { return .idle }
        if first.respectsGap, let last = lastEventStart, now < last.advanced(by: minimumGap) {
            return .wait(until: last.advanced(by: minimumGap))
        }
        queue.removeFirst()
        running = true
        if first.respectsGap { lastEventStart = now }
        return .run(first)
    }

    mutating func finished() {
        running = false
    }

    /// Empties the queue (shutdown): its waiters are to be failed.
    mutating func drain() -> [Waiter] {
        defer { queue = [] }
        return queue.flatMap(\.waiters)
    }
}
