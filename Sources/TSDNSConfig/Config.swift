import TSDNSCore

/// The configuration file's model (README "Configuration"), with the documented defaults.
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
        public var unsourced: Unsourced = .keep
        public init() {}

        public var targets: [Target] {
            (global ? [.global] : []) + splitDNS.map(Target.splitDNS)
        }
    }

    public enum Probe: String, Sendable, CaseIterable {
        case none, dns
    }

    public enum DNSQueryType: String, Sendable, CaseIterable {
        case A, AAAA, NS, SOA, TXT
    }

    public enum DNSTransport: String, Sendable, CaseIterable {
        case udp, tcp
    }

    /// The query `probe: dns` sends to each resolver address.
    public struct DNSProbe: Sendable, Equatable {
        public var name = "."
        public var type: DNSQueryType = .NS
        public var port = 53
        public var timeout: Duration = .seconds(2)
        public var transport: DNSTransport = .udp
        public var proxy = ""
        public var concurrency = 32
        public init() {}
    }

    public struct Healthcheck: Sendable, Equatable {
        public var interval: Duration = .seconds(30)
        public var staleAfter: Duration = .seconds(300)
        public var failureThreshold = 1
        public var successThreshold = 1
        public var probe: Probe = .none
        public var dns = DNSProbe()
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
        /// Host header names accepted besides IP literals and localhost.
        public var allowedHosts: [String] = []
        public var maxConnections = 256
        public init() {}
    }

    public struct State: Sendable, Equatable {
        /// Where the loop keeps exclusions, RPC adds, pending adds and source sets; nil = memory only.
        public var file: String?
        public init() {}
    }

    public struct Watch: Sendable, Equatable {
        public var cluster: String?
        public var server: String?
        public var tokenFile: String?
        public var resyncInterval: Duration = .seconds(60)
        public var proxy = ""
        public var listen = ""
        public init() {}
    }

    public var tailscale = Tailscale()
    public var resolvers = Resolvers()
    public var healthcheck = Healthcheck()
    public var sync = Sync()
    public var safety = Safety()
    public var clusters: [Cluster] = []
    public var rpc = RPC()
    public var state = State()
    public var watch = Watch()
    public init() {}

    public func planSettings(mode: RunMode, failureThreshold: Int? = nil) -> PlanSettings {
        PlanSettings(
            mode: mode,
            addressFamily: resolvers.addressFamily,
            failureThreshold: failureThreshold ?? healthcheck.failureThreshold,
            minResolvers: safety.minResolvers,
            maxRemovals: safety.maxRemovals,
            protect: safety.protect,
            unsourced: resolvers.unsourced
        )
    }
}
