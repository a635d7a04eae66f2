import Foundation

public enum Health: Sendable, Equatable {
    case healthy
    case unhealthy(String)

    public var isHealthy: Bool { self == .healthy }
}

extension Device {
    /// What the control plane's view of a device says is wrong with it.
    enum ControlFault: Equatable {
        case notAuthorized
        case keyExpired(Date)
        case notConnected(since: Date?)
        case neverSeen
        case notSeen(since: Date)

        var reason: String {
            switch self {
            case .notAuthorized: return "not authorized"
            case .keyExpired(let at): return "key expired at \(Timestamp.format(at))"
            case .notConnected(let since?): return "not connected since \(Timestamp.format(since))"
            case .notConnected(nil): return "not connected"
            case .neverSeen: return "never seen"
            case .notSeen(let since): return "not seen since \(Timestamp.format(since))"
            }
        }
    }

    /// Health as the control plane sees it (README "What it does"): authorized, key not
    /// expired, and connected — `lastSeen` within `staleAfter` where `connectedToControl`
    /// is absent. Inlined so a caller reading it from a list copies none of the device's
    /// strings.
    @inline(__always)
    func controlFault(now: Date, staleAfter: Duration) -> ControlFault? {
        if authorized == false { return .notAuthorized }
        if keyExpiryDisabled != true, let expires, expires <= now { return .keyExpired(expires) }
        switch connectedToControl {
        case true?:
            return nil
        case false?:
            return .notConnected(since: lastSeen)
        case nil:
            guard let lastSeen else { return .neverSeen }
            return now.timeIntervalSince(lastSeen) > staleAfter.seconds ? .notSeen(since: lastSeen) : nil
        }
    }

    public func health(now: Date, staleAfter: Duration) -> Health {
        controlFault(now: now, staleAfter: staleAfter).map { .unhealthy($0.reason) } ?? .healthy
    }

    /// The same verdict without the reason's text: a check of a tailnet's devices, many of
    /// them offline, formats no dates.
    @inline(__always)
    public func isHealthy(now: Date, staleAfter: Duration) -> Bool {
        controlFault(now: now, staleAfter: staleAfter) == nil
    }
}

extension Duration {
    public var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
