import Foundation
import Logging
import ServiceLifecycle
import TSDNSCore
import TSDNSTailscale

/// The timers of `run`: a sync at start and every `sync.interval`, a healthcheck every
/// `healthcheck.interval`. A failed run is retried soon with a bounded backoff (transient
/// errors) or slowly (rejected credentials); the process never exits on an API outage.
public struct ReconcileLoop: Service {
    public let controller: Controller
    private let logger: Logger
    /// The longest wait between retries of a failed run: an outage's end is noticed quickly.
    private let maxRetryDelay: Duration

    public init(controller: Controller, logger: Logger, maxRetryDelay: Duration = .seconds(3)) {
        self.controller = controller
        self.logger = logger
        self.maxRetryDelay = maxRetryDelay
    }

    public func run() async {
        let controller = controller
        // On graceful shutdown the timers stop and the controller abandons a run that is
        // still reading (so a timer waiting for it returns at once) or lets a write finish.
        await withGracefulShutdownHandler {
            await cancelWhenGracefulShutdown { await self.tick() }
        } onGracefulShutdown: {
            Task { await controller.shutdown() }
        }
        await controller.shutdown()
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
            do { try await Task.sleep(until: due) } catch { return }
            let mode: RunMode = nextSync <= clock.now ? .sync : .healthcheck
            do {
                _ = try await controller.trigger(mode, event: false)
                failures = 0
                if mode == .sync { nextSync = clock.now + config.sync.interval }
                nextHealthcheck = clock.now + config.healthcheck.interval
            } catch is ControllerError {
                return
            } catch {
                failures += 1
                let retry = retryDelay(after: failures, error: error, config: config)
                if mode == .sync { nextSync = clock.now + retry } else { nextHealthcheck = clock.now + retry }
            }
        }
    }

    private func retryDelay(after failures: Int, error: Error, config: Config) -> Duration {
        if let apiError = error as? TailscaleAPIError, apiError.isCredentialRejected {
            return min(config.sync.interval, .seconds(60))
        }
        let exponential = Duration.milliseconds(500) * (1 << min(failures - 1, 10))
        return min(exponential, maxRetryDelay)
    }
}
