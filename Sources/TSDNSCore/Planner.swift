/// What a run may do: a healthcheck only removes, a sync also adds.
public enum RunMode: String, Sendable {
    case healthcheck, sync
}

public enum SafetyRule: String, Sendable, Equatable {
    case minResolvers = "safety.minResolvers"
    case maxRemovals = "safety.maxRemovals"
    case neverEmpty = "safety.neverEmpty"
}

/// What becomes of a healthy managed entry that no source names (README `resolvers.unsourced`).
public enum Unsourced: String, Sendable, CaseIterable {
    /// Kept, as an unknown entry is.
    case keep
    /// Removed (subject to the safety rules): the program owns every managed entry.
    case remove
}

public struct PlanSettings: Sendable, Equatable {
    public var mode: RunMode
    public var addressFamily: AddressFamily
    public var failureThreshold: Int
    public var minResolvers: Int
    public var maxRemovals: Int
    /// Entries never touched; 100.100.100.100 is always among them.
    public var protect: [String]
    public var unsourced: Unsourced

    public init(
        mode: RunMode = .sync, addressFamily: AddressFamily = .ipv4, failureThreshold: Int = 1,
        minResolvers: Int = 1, maxRemovals: Int = 3, protect: [String] = [], unsourced: Unsourced = .keep
    ) {
        self.mode = mode
        self.addressFamily = addressFamily
        self.failureThreshold = failureThreshold
        self.minResolvers = minResolvers
        self.maxRemovals = maxRemovals
        self.protect = protect
        self.unsourced = unsourced
    }

    public static let alwaysProtected = "100.100.100.100"
}

public struct PlanEntry: Sendable, Equatable {
    public enum Action: String, Sendable {
        case add, remove, blocked, keep, unmanaged
    }

    public var action: Action
    public var address: String
    /// The owning device's hostname; nil where no device owns the address.
    public var node: String?
    public var nodeId: String?
    /// Free text for removals and keeps; the sources for adds; for blocked entries the
    /// removal that was held back.
    public var reason: String
    /// Set on blocked entries: the rule that held the removal back, and its setting.
    public var rule: SafetyRule?
    public var limit: Int?

    /// The rule as an operator reads it: `safety.minResolvers=1`.
    public var ruleDescription: String? {
        guard let rule else { return nil }
        return limit.map { "\(rule.rawValue)=\($0)" } ?? rule.rawValue
    }
}

public struct TargetPlan: Sendable, Equatable {
    public var target: Target
    public var current: [String]
    public var desired: [String]
    /// In list order: current entries first, then additions.
    public var entries: [PlanEntry]

    public var changed: Bool { desired != current }
    public func entries(_ action: PlanEntry.Action) -> [PlanEntry] { entries.filter { $0.action == action } }
}

public struct Plan: Sendable, Equatable {
    public var tailnet: String
    public var mode: RunMode
    public var dryRun: Bool
    public var targets: [TargetPlan]

    public init(tailnet: String, mode: RunMode, dryRun: Bool, targets: [TargetPlan]) {
        self.tailnet = tailnet
        self.mode = mode
        self.dryRun = dryRun
        self.targets = targets
    }

    public var changed: Bool { targets.contains(where: \.changed) }
}

/// The heart of the program: a pure function from a target's current list and the inventory
/// to the list it should be, with a reason for every entry (README "What it does", "Safety rules").
public enum Planner {
    public static func plan(
        target: Target, current: [String], inventory: ResolverInventory, settings: PlanSettings
    ) -> TargetPlan {
        let protected = Set((settings.protect + [PlanSettings.alwaysProtected]).flatMap { text in
            [text, IPAddress(text)?.description].compactMap { $0 }
        })
        var entries: [PlanEntry] = []
        var listed = Set<IPAddress>()

        for text in current {
            let address = IPAddress(text)
            if let address { listed.insert(address) }
            if protected.contains(text) || address.map({ protected.contains($0.description) }) == true {
                entries.append(PlanEntry(action: .unmanaged, address: text, reason: "unmanaged (protected)"))
                continue
            }
            guard let address else {
                entries.append(PlanEntry(action: .unmanaged, address: text, reason: "unmanaged"))
                continue
            }
            guard let device = inventory.owner(of: address) else {
                if address.isTailscaleRange {
                    entries.append(PlanEntry(action: .remove, address: text, reason: "no tailnet device has this address"))
                } else {
                    entries.append(PlanEntry(action: .unmanaged, address: text, reason: "unmanaged"))
                }
                continue
            }
            entries.append(judge(text, address: address, device: device, inventory: inventory, settings: settings))
        }

        var additions: [(IPAddress, PlanEntry)] = []
        if settings.mode == .sync {
            for (device, sources) in inventory.candidates
            where inventory.health(of: device).isHealthy && !inventory.excluded.contains(device.nodeId) && !inventory.heldBack.contains(device.nodeId) {
                // A candidate address that fails its DNS probe is not added.
                for address in device.ipAddresses
                where settings.addressFamily.includes(address) && !listed.contains(address) && inventory.probes[address]?.passed != false {
                    listed.insert(address)
                    additions.append((address, PlanEntry(
                        action: .add, address: address.description, node: device.hostname,
                        nodeId: device.nodeId, reason: sources.joined(separator: ", ")
                    )))
                }
            }
        }
        additions.sort { $0.0 < $1.0 }
        entries += additions.map(\.1)

        applySafety(to: &entries, target: target, settings: settings)
        let desired = entries.filter { $0.action != .remove }.map(\.address)
        return TargetPlan(target: target, current: current, desired: desired, entries: entries)
    }

    /// The verdict on a listed address that a device owns.
    private static func judge(_ text: String, address: IPAddress, device: Device, inventory: ResolverInventory, settings: PlanSettings) -> PlanEntry {
        var entry = PlanEntry(action: .keep, address: text, node: device.hostname, nodeId: device.nodeId, reason: "")
        if case .unhealthy(let why) = inventory.health(of: device, at: address) {
            let failures = inventory.failures(of: device)
            if failures >= settings.failureThreshold {
                entry.action = .remove
                entry.reason = why
            } else {
                entry.reason = "\(why) (failed check \(failures) of \(settings.failureThreshold))"
            }
        } else if settings.mode == .sync && inventory.excluded.contains(device.nodeId) {
            entry.action = .remove
            entry.reason = "excluded by RPC"
        } else if settings.mode == .sync && inventory.sources[device.nodeId] == nil {
            // Withdrawn by a source set: removed whatever `unsourced` says.
            if let set = inventory.withdrawn[device.nodeId] {
                entry.action = .remove
                entry.reason = "withdrawn by \(set)"
            } else if settings.unsourced == .remove {
                entry.action = .remove
                entry.reason = "no source names it (resolvers.unsourced=remove)"
            }
        }
        return entry
    }

    /// Holds back removals, in list order, that break a safety rule: at most `maxRemovals`;
    /// no fewer than `minResolvers` managed resolvers (devices, not addresses: a device
    /// listed by IPv4 and IPv6 is one resolver) where that many exist now; and the global
    /// list never empty.
    private static func applySafety(to entries: inout [PlanEntry], target: Target, settings: PlanSettings) {
        func resolvers(_ actions: Set<PlanEntry.Action>) -> Int {
            Set(entries.filter { actions.contains($0.action) }.map { $0.nodeId ?? "address \($0.address)" }).count
        }
        let managedNow = resolvers([.keep, .remove])
        var removals = entries.indices.filter { entries[$0].action == .remove }
        func block(_ index: Int, _ rule: SafetyRule) {
            entries[index].action = .blocked
            entries[index].rule = rule
            switch rule {
            case .minResolvers: entries[index].limit = settings.minResolvers
            case .maxRemovals: entries[index].limit = settings.maxRemovals
            case .neverEmpty: entries[index].limit = nil
            }
        }
        if removals.count > settings.maxRemovals {
            for index in removals[max(0, settings.maxRemovals)...] { block(index, .maxRemovals) }
            removals = Array(removals.prefix(max(0, settings.maxRemovals)))
        }
        if managedNow >= settings.minResolvers {
            while !removals.isEmpty && resolvers([.keep, .blocked, .add]) < settings.minResolvers {
                block(removals.removeLast(), .minResolvers)
            }
        }
        if target == .global, !entries.isEmpty, entries.allSatisfy({ $0.action == .remove }), let last = removals.last {
            block(last, .neverEmpty)
        }
    }
}
