/// The configuration file's model (CONTRACT §3), with the documented defaults.
/// Secrets are not held here: only where to read them from.
public struct Config: Sendable, Equatable {
    public struct Tailscale: Sendable, Equatable {
        public var tailnet: String?
        public var apiURL: String?
        public var apiKeyFile: String?
        public var oauth: OAuth?
        public init() {}
    }

    public struct OAuth: Sendable, Equatable {
        public var clientID: String?
        public var clientSecretFile: String?
        public init() {}
    }

    public struct Resolvers: Sendable, Equatable {
        public var tags: [String] = ["tag:dns"]
        public var addressFamily: AddressFamily = .ipv4
        public var global = true
        public var splitDNS: [String] = []
        public init() {}

        public var targets: [Target] {
            (global ? [.global] : []) + splitDNS.map(Target.splitDNS)
        }
    }

    public enum Probe: String, Sendable, CaseIterable {
        case none, dns
    }

    public struct Healthcheck: Sendable, Equatable {
        public var interval: Duration = .seconds(30)
        public var staleAfter: Duration = .seconds(300)
        public var failureThreshold = 1
        public var probe: Probe = .none
        public init() {}
    }

    public struct Sync: Sendable, Equatable {
        public var interval: Duration = .seconds(300)
        public var pendingTTL: Duration = .seconds(600)
        public var exclusionTTL: Duration = .seconds(600)
        public init() {}
    }

    public struct Safety: Sendable, Equatable {
        public var minResolvers = 1
        public var maxRemovals = 3
        public var protect: [String] = [PlanSettings.alwaysProtected]
        public init() {}
    }

    public struct Cluster: Sendable, Equatable {
        public var name: String
        public var kubeconfig: String?
        public var context: String?
        /// nil or "" for all namespaces.
        public var namespace: String?
        public var annotationKey = "tailscale.com/tags"
        public var annotationValue = "tag:dns"
        public init(name: String) { self.name = name }
    }

    public struct RPC: Sendable, Equatable {
        public var listen = "127.0.0.1:8053"
        public var tokenFile: String?
        public init() {}
    }

    public struct Watch: Sendable, Equatable {
        public var cluster: String?
        public var server: String?
        public var tokenFile: String?
        public init() {}
    }

    public var tailscale = Tailscale()
    public var resolvers = Resolvers()
    public var healthcheck = Healthcheck()
    public var sync = Sync()
    public var safety = Safety()
    public var clusters: [Cluster] = []
    public var rpc = RPC()
    public var watch = Watch()
    public init() {}

    public func planSettings(mode: RunMode, failureThreshold: Int? = nil) -> PlanSettings {
        PlanSettings(
            mode: mode,
            addressFamily: resolvers.addressFamily,
            failureThreshold: failureThreshold ?? healthcheck.failureThreshold,
            minResolvers: safety.minResolvers,
            maxRemovals: safety.maxRemovals,
            protect: safety.protect
        )
    }
}

/// Go/Kubernetes-style durations: `90s`, `5m`, `1h30m`, `1.5h`, `250ms`.
public enum DurationText {
    public static func parse(_ text: String) -> Duration? {
        // Longer units first, so "ms" is not read as "m".
        let units: [(String, Double)] = [("ns", 1e-9), ("us", 1e-6), ("µs", 1e-6), ("ms", 1e-3), ("h", 3600), ("m", 60), ("s", 1)]
        var rest = Substring(text)
        guard !rest.isEmpty else { return nil }
        if rest == "0" { return .zero }
        var total = 0.0
        while !rest.isEmpty {
            let number = rest.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
            guard !number.isEmpty, let value = Double(number) else { return nil }
            rest = rest.dropFirst(number.count)
            guard let unit = units.first(where: { rest.hasPrefix($0.0) }) else { return nil }
            rest = rest.dropFirst(unit.0.count)
            total += value * unit.1
        }
        guard total * 1e9 < Double(Int64.max) else { return nil }
        return .nanoseconds(Int64((total * 1e9).rounded()))
    }

    public static func format(_ duration: Duration) -> String {
        var seconds = Int(duration.components.seconds)
        var text = ""
        if seconds >= 3600 { text += "\(seconds / 3600)h"; seconds %= 3600 }
        if seconds >= 60 { text += "\(seconds / 60)m"; seconds %= 60 }
        if seconds > 0 || text.isEmpty { text += "\(seconds)s" }
        return text
    }
}
