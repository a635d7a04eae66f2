import Foundation

public enum Health: Sendable, Equatable {
    case healthy
    case unhealthy(String)

    public var isHealthy: Bool { self == .healthy }
}

extension Device {
    /// Health as the control plane sees it (README "What it does"): authorized, key not
    /// expired, and connected — `lastSeen` within `staleAfter` where `connectedToControl`
    /// is absent.
    /// Inlined so a caller reading it from a list copies none of the device's strings.
    @inline(__always)
    public func health(now: Date, staleAfter: Duration) -> Health {
        if authorized == false { return .unhealthy("not authorized") }
        if keyExpiryDisabled != true, let expires, expires <= now {
            return .unhealthy("key expired at \(Timestamp.format(expires))")
        }
        switch connectedToControl {
        case true?:
            return .healthy
        case false?:
            if let lastSeen { return .unhealthy("not connected since \(Timestamp.format(lastSeen))") }
            return .unhealthy("not connected")
        case nil:
            guard let lastSeen else { return .unhealthy("never seen") }
            if now.timeIntervalSince(lastSeen) > staleAfter.seconds {
                return .unhealthy("not seen since \(Timestamp.format(lastSeen))")
            }
            return .healthy
        }
    }
}

extension Duration {
    public var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
