import Foundation
import Logging
import ServiceLifecycle
import TSDNSConfig
import TSDNSCore
import TSDNSHTTP
import TSDNSTailscale

/// The reconcile loop as a service: the controller's worker and the timers (a sync at start
/// and every `sync.interval`, a healthcheck every `healthcheck.interval`), both inside
/// `run()`. A failed run is retried soon with a bounded backoff (transient errors) or slowly
/// (rejected credentials); the process never exits on an API outage. On graceful shutdown
/// the timers stop, a run that is still reading is abandoned and a write in flight gets up
/// to `writeGrace` for its answer.
public struct ReconcileLoop: Service {
    public let controller: Controller
    private let logger: Logger
    private let retry: Backoff
    private let writeGrace: Duration
    /// Waits until the RPC listener is bound: the first API request comes after it, so a
    /// second instance on the same port fails before it writes anything.
    private let listenerReady: @Sendable () async -> Void

    public init(
        controller: Controller, logger: Logger, maxRetryDelay: Duration = .seconds(3), writeGrace: Duration = .seconds(3),
        listenerReady: @escaping @Sendable () async -> Void = {}
    ) {
        self.controller = controller
        self.logger = logger
        self.retry = Backoff(base: .milliseconds(500), max: maxRetryDelay, jitter: false)
        self.writeGrace = writeGrace
        self.listenerReady = listenerReady
    }

    public func run() async {
        let controller = controller
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await controller.work() }
            group.addTask {
                await listenerReady()
                await self.tick()
            }
            // Returns on graceful shutdown, or throws when the group is cancelled.
            try? await gracefulShutdown()
            await controller.stop(writeGrace: writeGrace)
            group.cancelAll()
        }
        logger.info("reconcile loop stopped")
    }

    private func tick() async {
        let config = controller.config
        let clock = ContinuousClock()
        var nextSync = clock.now
        var nextHealthcheck = clock.now + config.healthcheck.interval
        var failures = 0
        while !Task.isCancelled {
            let due = min(nextSync, nextHealthcheck)
            do { try await clock.sleep(until: due) } catch { return }
            let mode: RunMode = nextSync <= clock.now ? .sync : .healthcheck
            do {
                _ = try await controller.trigger(.timer(mode))
                failures = 0
                if mode == .sync { nextSync = clock.now + config.sync.interval }
                nextHealthcheck = clock.now + config.healthcheck.interval
            } catch is ControllerError {
                return
            } catch {
                if Task.isCancelled { return }
                failures += 1
                let wait = retryDelay(after: failures, error: error, config: config)
                logger.debug("retrying the failed run", metadata: ["mode": "\(mode.rawValue)", "retryIn": "\(DurationText.brief(wait))"])
                if mode == .sync { nextSync = clock.now + wait } else { nextHealthcheck = clock.now + wait }
            }
        }
    }

    private func retryDelay(after failures: Int, error: Error, config: Config) -> Duration {
        // A rejected credential is not an outage: retrying every few seconds only fills logs.
        let rejected = (error as? TailscaleAPIError)?.isCredentialRejected == true || (error as? ClusterReadError)?.isCredentialRejected == true
        if rejected { return min(config.sync.interval, .seconds(60)) }
        return retry.delay(after: failures)
    }
}
