/// The one backoff of the program: exponential from `base`, capped at `max`, with jitter
/// (each wait a random 50–100 % of its step, unless `jitter` is off), used by the Tailscale
/// client's retries, the loop's retry of a failed run, and the Kubernetes reflector.
public struct Backoff: Sendable, Equatable {
    public var base: Duration
    public var max: Duration
    public var jitter: Bool

    public init(base: Duration, max: Duration, jitter: Bool = true) {
        self.base = base
        self.max = max
        self.jitter = jitter
    }

    /// The full step after `failures` consecutive failures (1 = the first), before jitter.
    public func step(after failures: Int) -> Duration {
        let exponential = base * (1 << Swift.min(Swift.max(failures, 1) - 1, 30))
        return Swift.min(exponential, max)
    }

    /// The wait after `failures` failures; `random` is a number in 0...1 (injected in tests).
    public func delay(after failures: Int, random: Double = Double.random(in: 0...1)) -> Duration {
        let step = step(after: failures)
        return jitter ? step * (0.5 + 0.5 * random) : step
    }
}
