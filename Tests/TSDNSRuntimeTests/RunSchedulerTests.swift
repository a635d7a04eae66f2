import Testing
import TSDNSCore
import TSDNSHTTP
@testable import TSDNSRuntime

/// The scheduler is driven by `now` alone: these tests never sleep and count runs exactly.
@Suite("Run scheduler")
struct RunSchedulerTests {
    typealias Scheduler = RunScheduler<Int, ContinuousClock.Instant>
    let t0 = ContinuousClock.now
    let gap = Duration.milliseconds(200)

    func runs(_ decision: Scheduler.Decision) -> Scheduler.Batch? {
        if case .run(let batch) = decision { return batch }
        return nil
    }

    @Test func idleWithNothingQueued() {
        var scheduler = Scheduler(minimumGap: gap)
        guard case .idle = scheduler.next(now: t0) else { Issue.record("expected idle"); return }
    }

    @Test func triggersOfOneModeShareARun() throws {
        var scheduler = Scheduler(minimumGap: gap)
        for waiter in 1...50 { scheduler.add(.request(.sync), waiter: waiter) }
        let batch = try #require(runs(scheduler.next(now: t0)))
        #expect(batch.waiters == Array(1...50))
        #expect(batch.mode == .sync)
        scheduler.finished()
        guard case .idle = scheduler.next(now: t0) else { Issue.record("one run serves all fifty"); return }
    }

    @Test func triggersDuringARunGetOneFollowUp() throws {
        var scheduler = Scheduler(minimumGap: gap)
        scheduler.add(.timer(.sync), waiter: 1)
        let first = try #require(runs(scheduler.next(now: t0)))
        #expect(first.waiters == [1])
        // While it runs: nothing else starts.
        scheduler.add(.change, waiter: 2)
        scheduler.add(.change, waiter: 3)
        guard case .idle = scheduler.next(now: t0 + .milliseconds(10)) else { Issue.record("one run at a time"); return }
        scheduler.finished()
        let second = try #require(runs(scheduler.next(now: t0 + .milliseconds(20))))
        #expect(second.waiters == [2, 3])
        #expect(second.countsAsCheck == false, "adds and removes are not health checks")
    }

    @Test func eventRunsKeepTheMinimumGap() throws {
        var scheduler = Scheduler(minimumGap: gap)
        scheduler.add(.change, waiter: 1)
        _ = try #require(runs(scheduler.next(now: t0)))
        scheduler.finished()
        scheduler.add(.change, waiter: 2)
        guard case .wait(let until) = scheduler.next(now: t0 + .milliseconds(50)) else { Issue.record("expected a wait"); return }
        #expect(until == t0 + gap)
        // A trigger during the wait joins the waiting batch.
        scheduler.add(.request(.sync), waiter: 3)
        let next = try #require(runs(scheduler.next(now: t0 + gap)))
        #expect(next.waiters == [2, 3])
        #expect(next.countsAsCheck, "a check joined it")
    }

    @Test func timersDoNotWaitForTheGap() throws {
        var scheduler = Scheduler(minimumGap: gap)
        scheduler.add(.change, waiter: nil)
        _ = try #require(runs(scheduler.next(now: t0)))
        scheduler.finished()
        scheduler.add(.timer(.healthcheck), waiter: 7)
        let batch = try #require(runs(scheduler.next(now: t0 + .milliseconds(1))))
        #expect(batch.mode == .healthcheck)
        #expect(batch.waiters == [7])
    }

    @Test func aStormCostsOneRunPerGap() {
        var scheduler = Scheduler(minimumGap: gap)
        var started = 0
        // 1,000 triggers over one second, each run taking 10 ms.
        var runningUntil: ContinuousClock.Instant?
        for millisecond in 0..<1000 {
            let now = t0 + .milliseconds(millisecond)
            if let end = runningUntil, now >= end {
                scheduler.finished()
                runningUntil = nil
            }
            scheduler.add(.change, waiter: millisecond)
            if case .run = scheduler.next(now: now) {
                started += 1
                runningUntil = now + .milliseconds(10)
            }
        }
        #expect(started == 5, "one run per 200 ms gap over one second")
    }

    @Test func modesQueueSeparatelyInArrivalOrder() throws {
        var scheduler = Scheduler(minimumGap: .zero)
        scheduler.add(.timer(.healthcheck), waiter: 1)
        scheduler.add(.timer(.sync), waiter: 2)
        scheduler.add(.timer(.healthcheck), waiter: 3)
        let first = try #require(runs(scheduler.next(now: t0)))
        #expect(first.mode == .healthcheck && first.waiters == [1, 3])
        scheduler.finished()
        let second = try #require(runs(scheduler.next(now: t0)))
        #expect(second.mode == .sync && second.waiters == [2])
    }

    @Test func drainHandsBackEveryQueuedWaiter() {
        var scheduler = Scheduler(minimumGap: gap)
        scheduler.add(.change, waiter: 1)
        scheduler.add(.timer(.healthcheck), waiter: 2)
        #expect(scheduler.drain().sorted() == [1, 2])
        guard case .idle = scheduler.next(now: t0) else { Issue.record("drained"); return }
    }
}

@Suite("Backoff")
struct BackoffTests {
    @Test func doublesUpToItsCap() {
        let backoff = Backoff(base: .milliseconds(800), max: .seconds(30))
        #expect((1...7).map(backoff.step(after:)) == [.milliseconds(800), .milliseconds(1600), .milliseconds(3200), .milliseconds(6400), .milliseconds(12800), .milliseconds(25600), .seconds(30)])
        #expect(backoff.step(after: 1000) == .seconds(30))
    }

    @Test func jitterStaysWithinHalfToFullStep() {
        let backoff = Backoff(base: .seconds(1), max: .seconds(8))
        #expect(backoff.delay(after: 3, random: 0) == .seconds(2))
        #expect(backoff.delay(after: 3, random: 1) == .seconds(4))
        #expect(Backoff(base: .seconds(1), max: .seconds(8), jitter: false).delay(after: 3, random: 0) == .seconds(4))
    }
}
