import Foundation

/// A nameserver list this program manages.
public enum Target: Hashable, Sendable, Comparable, CustomStringConvertible {
    case global
    case splitDNS(String)

    /// `global` or `split:<domain>`, as in plan output.
    public var description: String {
        switch self {
        case .global: return "global"
        case .splitDNS(let domain): return "split:\(domain)"
        }
    }
}

/// What a DNS probe found at one address (README "DNS probe").
public struct ProbeFinding: Sendable, Equatable {
    public var passed: Bool
    /// `dns probe: ok`, `dns probe: timeout after 2s`, `dns probe: SERVFAIL`, ...
    public var reason: String
    /// The `result` label: ok, timeout, servfail, refused, error.
    public var result: String
    public var roundTrip: Duration?

    public init(passed: Bool, reason: String, result: String, roundTrip: Duration?) {
        self.passed = passed
        self.reason = reason
        self.result = result
        self.roundTrip = roundTrip
    }
}

/// What the devices alone say, for one read: who is healthy, who carries a resolver tag, who
/// owns which address. Built once per read; every inventory of a run (the probe targets,
/// the check counts, the plan) shares it, since only their requests differ.
public struct DeviceIndex: Sendable {
    public let devices: [Device]
    /// Health as the control plane sees it is a function of the device and the time of the
    /// read, so it is judged when asked (a run asks for a few dozen devices), not kept for
    /// all 10,000 in a table hashed by nodeId.
    let now: Date
    let staleAfter: Duration
    /// The resolver tags each device carries, by nodeId (none for shared-in devices).
    let tagSources: [String: Set<String>]
    /// Who claims each address.
    let addressOwners: AddressOwners

    public init(devices: [Device], now: Date, staleAfter: Duration, resolverTags: [String]) {
        self.devices = devices
        self.now = now
        self.staleAfter = staleAfter
        var tagSources: [String: Set<String>] = [:]
        // A device has an IPv4 and an IPv6 address.
        var addressOwners = AddressOwners(expected: devices.count * 2)
        // One pass: the devices are cold in memory this late in the read.
        for index in devices.indices {
            // Fields, not the device: a copy of a device (to call a method on it) retains and
            // releases its strings.
            // A device shared in from another tailnet carries that tailnet's tags, not ours.
            if devices[index].isExternal != true, let tags = devices[index].tags {
                for tag in resolverTags where tags.contains(tag) { tagSources[devices[index].nodeId, default: []].insert(tag) }
            }
            for address in devices[index].ipAddresses { addressOwners.insert(address, position: index) }
        }
        self.addressOwners = addressOwners
        self.tagSources = tagSources
    }
}

/// Everything known about the tailnet's devices for one run: who owns which address, who is
/// healthy, and who should be a resolver and why.
public struct ResolverInventory: Sendable {
    /// The devices' own part, shared by every inventory of the read.
    public let index: DeviceIndex
    public var devices: [Device] { index.devices }
    /// Why each device should be a resolver, by nodeId: `tag:dns`, `kubernetes:...`, `manual`.
    public let sources: [String: Set<String>]
    /// Devices removed by operators, by nodeId.
    public let excluded: Set<String>
    /// Devices a source set stopped naming, by nodeId, with the set's name: removed unless
    /// another source names them.
    public let withdrawn: [String: String]
    /// Consecutive failed healthchecks by nodeId, counting this one.
    public let failedChecks: [String: Int]
    /// DNS probe results of this check, by address (empty without `probe: dns`).
    public let probes: [IPAddress: ProbeFinding]
    /// Nodes that failed and have not passed `successThreshold` checks in a row since: not
    /// added yet (a listed one stays).
    public let heldBack: Set<String>

    public init(
        index: DeviceIndex,
        extraSources: [String: Set<String>] = [:],
        excluded: Set<String> = [],
        withdrawn: [String: String] = [:],
        failedChecks: [String: Int] = [:],
        probes: [IPAddress: ProbeFinding] = [:],
        heldBack: Set<String> = []
    ) {
        self.index = index
        var sources = extraSources
        for (nodeId, tags) in index.tagSources { sources[nodeId, default: []].formUnion(tags) }
        self.sources = sources.filter { !$0.value.isEmpty }
        self.excluded = excluded
        self.withdrawn = withdrawn
        self.failedChecks = failedChecks
        self.probes = probes
        self.heldBack = heldBack
    }

    /// From the devices alone, with an empty request (the plain case of tests and tools).
    public init(devices: [Device], now: Date, staleAfter: Duration, resolverTags: [String]) {
        self.init(index: DeviceIndex(devices: devices, now: now, staleAfter: staleAfter, resolverTags: resolverTags))
    }

    /// The device that answers for an address. Where several claim it, a healthy one (the
    /// address is healthy if any owner is), so the verdict does not depend on list order.
    public func owner(of address: IPAddress) -> Device? {
        let owners = index.addressOwners.owners(of: address, in: devices)
        guard owners.count > 1 else { return owners.first.map { devices[$0] } }
        return owners.lazy.map { devices[$0] }.first { $0.isHealthy(now: index.now, staleAfter: index.staleAfter) } ?? devices[owners[0]]
    }

    /// Health as the control plane sees it, at the time of the read.
    public func health(of device: Device) -> Health {
        device.health(now: index.now, staleAfter: index.staleAfter)
    }

    /// Health of one of the device's addresses: the control plane's verdict, then the DNS
    /// probe's where one was sent.
    public func health(of device: Device, at address: IPAddress) -> Health {
        let control = health(of: device)
        guard control.isHealthy, let probe = probes[address], !probe.passed else { return control }
        return .unhealthy(probe.reason)
    }

    /// Whether a device fails this check: the control plane says so, or a probe of one of
    /// its addresses failed.
    public func failsCheck(_ device: Device) -> Bool {
        !device.isHealthy(now: index.now, staleAfter: index.staleAfter) || device.ipAddresses.contains { probes[$0]?.passed == false }
    }

    /// Failed checks in a row; a failing device without a count has failed this one.
    public func failures(of device: Device) -> Int {
        if !failsCheck(device) { return 0 }
        return max(1, failedChecks[device.nodeId] ?? 1)
    }

    /// Tags first, then Kubernetes and RPC sources, each alphabetically: `tag:dns, kubernetes:...`.
    public static func ordered(_ sources: Set<String>) -> [String] {
        sources.sorted { a, b in
            let (aTag, bTag) = (a.hasPrefix("tag:"), b.hasPrefix("tag:"))
            return aTag != bTag ? aTag : a < b
        }
    }

    /// Devices that should be listed, with their sources, in a stable order.
    public var candidates: [(device: Device, sources: [String])] {
        // By index: a closure over each device would copy all 10,000 to read one field. A
        // few dozen nodeIds have sources: the rest are turned away by a filter of their bytes
        // rather than hashed into the dictionary one by one (1.1 → 0.3 ms for 10,000).
        let filter = NodeIdFilter(sources.keys)
        return devices.indices.compactMap { index in
            guard filter.mayContain(devices[index].nodeId), let found = sources[devices[index].nodeId] else { return nil }
            return (devices[index], Self.ordered(found))
        }
    }
}

/// Whether a string may be one of a few, by a small table of 64-bit hashes of their bytes
/// (FNV-1a). Never wrong when it says no, as `==` judges: strings compare by canonical
/// equivalence (`"K" == "\u{212A}"`), which for ASCII is byte equality, so a key that is
/// not ASCII lets every string through and a string that is not ASCII always passes.
struct NodeIdFilter {
    /// hash | 1 per slot; 0: empty.
    private var slots: [UInt64] = []
    private var everything = false

    init(_ keys: some Sequence<String>) {
        var hashes: [UInt64] = []
        for key in keys {
            guard let hash = Self.hash(key) else {
                everything = true
                return
            }
            hashes.append(hash)
        }
        var size = 8
        while size < hashes.count * 2 { size *= 2 }
        slots = Array(repeating: 0, count: size)
        for hash in hashes {
            var slot = Int(truncatingIfNeeded: hash >> 32) & (size - 1)
            while slots[slot] != 0 && slots[slot] != hash { slot = (slot + 1) & (size - 1) }
            slots[slot] = hash
        }
    }

    func mayContain(_ text: String) -> Bool {
        if everything { return true }
        guard let hash = Self.hash(text) else { return true }
        var slot = Int(truncatingIfNeeded: hash >> 32) & (slots.count - 1)
        while slots[slot] != 0 {
            if slots[slot] == hash { return true }
            slot = (slot + 1) & (slots.count - 1)
        }
        return false
    }

    /// FNV-1a of the UTF-8 bytes, never 0; nil for a string that is not ASCII.
    static func hash(_ text: String) -> UInt64? {
        var text = text
        return text.withUTF8 { bytes in
            var hash: UInt64 = 0xCBF2_9CE4_8422_2325
            for byte in bytes {
                guard byte < 0x80 else { return nil }
                hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3
            }
            return hash | 1
        }
    }
}
