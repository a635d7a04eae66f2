import Foundation
import TSDNSCore

/// `GET /v1/inventory` (README "RPC API"): the lists as last read, every resolver the loop knows
/// with its health and sources, pending adds and exclusions.
public struct InventoryView: Sendable, Encodable {
    public struct TargetItem: Sendable, Encodable {
        public var target: String
        public var current: [String]
        public var desired: [String]
    }

    public struct Resolver: Sendable, Encodable {
        public var address: String
        public var node: String?
        public var nodeId: String?
        public var healthy: Bool
        public var sources: [String]
        public var lastSeen: String?
        /// Whether the address is in some managed list right now.
        public var listed: Bool
        /// Why it is unhealthy, where it is.
        public var problem: String?
        /// Removed by RPC and kept out.
        public var excluded: Bool
        /// The last DNS probe of this address (with `probe: dns`).
        public var probe: Probe?

        public struct Probe: Sendable, Encodable {
            /// ok, timeout, servfail, refused, error
            public var result: String
            public var reason: String
            public var roundTripMs: Double?
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(address, forKey: .address)
            try c.encode(node, forKey: .node)  // null, not absent: all six keys are always there
            try c.encode(nodeId, forKey: .nodeId)
            try c.encode(healthy, forKey: .healthy)
            try c.encode(sources, forKey: .sources)
            try c.encode(lastSeen, forKey: .lastSeen)
            try c.encode(listed, forKey: .listed)
            try c.encodeIfPresent(problem, forKey: .problem)
            try c.encode(excluded, forKey: .excluded)
            try c.encodeIfPresent(probe, forKey: .probe)
        }

        enum CodingKeys: String, CodingKey { case address, node, nodeId, healthy, sources, lastSeen, listed, problem, excluded, probe }
    }

    public struct PendingItem: Sendable, Encodable {
        public var node: String
        public var source: String
        public var since: String
        public var expires: String
    }

    public struct ExcludedItem: Sendable, Encodable {
        public var node: String
        public var nodeId: String
        public var until: String
    }

    public var targets: [TargetItem] = []
    public var resolvers: [Resolver] = []
    public var pending: [PendingItem]
    public var excluded: [ExcludedItem]
    public var lastSync: String?
    public var lastHealthcheck: String?
    public var lastError: String?

    enum CodingKeys: String, CodingKey { case targets, resolvers, pending, excluded, lastSync, lastHealthcheck, lastError }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(targets, forKey: .targets)
        try c.encode(resolvers, forKey: .resolvers)
        try c.encode(pending, forKey: .pending)
        try c.encode(excluded, forKey: .excluded)
        try c.encode(lastSync, forKey: .lastSync)  // null until the first one
        try c.encode(lastHealthcheck, forKey: .lastHealthcheck)
        try c.encode(lastError, forKey: .lastError)
    }

    init(
        result: RunResult?, pending: [PendingAdd], exclusions: [Exclusion],
        lastSync: Date?, lastHealthcheck: Date?, lastError: String?, addressFamily: AddressFamily
    ) {
        self.pending = pending.map {
            PendingItem(node: $0.query, source: $0.source, since: Timestamp.format($0.since), expires: Timestamp.format($0.expires))
        }
        self.excluded = exclusions.sorted { $0.hostname < $1.hostname }.map {
            ExcludedItem(node: $0.hostname, nodeId: $0.nodeId, until: Timestamp.format($0.until))
        }
        self.lastSync = lastSync.map(Timestamp.format)
        self.lastHealthcheck = lastHealthcheck.map(Timestamp.format)
        self.lastError = lastError
        guard let result else { return }
        let inventory = result.inventory
        let excludedIds = Set(exclusions.map(\.nodeId))
        targets = result.plan.targets.map { TargetItem(target: "\($0.target)", current: $0.current, desired: $0.desired) }
        var seen = Set<String>()
        func add(_ address: String, _ device: Device?, listed: Bool) {
            guard seen.insert(address).inserted else { return }
            let ip = IPAddress(address)
            let health = device.map { device in ip.map { inventory.health(of: device, at: $0) } ?? inventory.health(of: device) }
                ?? .unhealthy("no tailnet device has this address")
            let finding = ip.flatMap { inventory.probes[$0] }
            var problem: String?
            if case .unhealthy(let why) = health { problem = why }
            resolvers.append(Resolver(
                address: address, node: device?.hostname, nodeId: device?.nodeId, healthy: health.isHealthy,
                sources: device.flatMap { inventory.sources[$0.nodeId] }.map(ResolverInventory.ordered) ?? [],
                lastSeen: device?.lastSeen.map(Timestamp.format), listed: listed, problem: problem,
                excluded: device.map { excludedIds.contains($0.nodeId) } ?? false,
                probe: finding.map { Resolver.Probe(result: $0.result, reason: $0.reason, roundTripMs: $0.roundTrip.map { ($0.seconds * 1e5).rounded() / 100 }) }
            ))
        }
        let devicesById = Dictionary(inventory.devices.map { ($0.nodeId, $0) }, uniquingKeysWith: { first, _ in first })
        for target in result.plan.targets {
            for entry in target.entries where entry.action != .unmanaged {
                add(entry.address, entry.nodeId.flatMap { devicesById[$0] }, listed: target.desired.contains(entry.address))
            }
        }
        // Resolvers not in any list: unhealthy or excluded candidates.
        for (device, _) in inventory.candidates {
            for address in device.ipAddresses where addressFamily.includes(address) { add(address.description, device, listed: false) }
        }
    }
}
