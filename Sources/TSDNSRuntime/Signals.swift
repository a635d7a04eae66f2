import Synchronization

/// A one-slot wake-up for a task that waits for work: `signal()` before `wait()` is not
/// lost, and cancelling the waiting task ends its wait.
final class WakeSignal: Sendable {
    private let slot = Mutex<(pending: Bool, waiter: CheckedContinuation<Void, Never>?)>((false, nil))

    func signal() {
        let waiter = slot.withLock { slot -> CheckedContinuation<Void, Never>? in
            guard let waiter = slot.waiter else {
                slot.pending = true
                return nil
            }
            slot.waiter = nil
            return waiter
        }
        waiter?.resume()
    }

    func wait() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let now = slot.withLock { slot -> Bool in
                    if slot.pending {
                        slot.pending = false
                        return true
                    }
                    slot.waiter = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            signal()
        }
    }

    /// Waits for the signal, at most `limit`; true when it came.
    func wait(upTo limit: Duration) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await self.wait()
                return !Task.isCancelled
            }
            group.addTask {
                try? await Task.sleep(for: limit)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }
}

/// Tells whoever stops a run whether it has sent a write yet: a run still reading can be
/// abandoned (nothing was written); one that has sent a write deserves its answer.
public final class WriteProgress: Sendable {
    private let state = Mutex<(sent: Bool, stopped: Bool, done: WakeSignal)>((false, false, WakeSignal()))

    public init() {}

    public var writeSent: Bool { state.withLock { $0.sent } }

    /// Whether the first write may go out: not once a stop has come.
    func beginWrite() -> Bool {
        state.withLock { state in
            guard !state.stopped else { return false }
            state.sent = true
            return true
        }
    }

    /// A stop: from now on no write starts. True when one had been sent already (it deserves
    /// its answer); false when the run may be cancelled with nothing written.
    public func stop() -> Bool {
        state.withLock { state in
            state.stopped = true
            return state.sent
        }
    }

    /// The run is over, written or not.
    func finished() { state.withLock { $0.done }.signal() }

    /// Waits up to `limit` for the run to finish; true when it did.
    public func waitForFinish(upTo limit: Duration) async -> Bool {
        await state.withLock { $0.done }.wait(upTo: limit)
    }
}
