import Foundation
import TSDNSCore

/// An RPC add for a node that is not in the tailnet, or not healthy, yet.
public struct PendingAdd: Sendable, Equatable, Codable {
    public var query: String
    public var source: String
    public var since: Date
    public var expires: Date
}

/// An RPC remove: the node stays out until added again, gone, or `until` passes.
public struct Exclusion: Sendable, Equatable, Codable {
    public var nodeId: String
    public var hostname: String
    public var since: Date
    public var until: Date
}

/// The whole set of resolvers one named source wants (`PUT /v1/sources/{name}`). It
/// replaces what that name said before; it has no TTL: its members are wanted, or pending,
/// for as long as the set names them.
public struct SourceSet: Sendable, Equatable, Codable {
    public struct Member: Sendable, Equatable, Hashable, Codable {
        /// How the sender names the node: address, hostname, MagicDNS name, nodeId or id.
        public var node: String
        /// Why it is a resolver, e.g. `kubernetes:prod/dns/coredns`.
        public var source: String

        public init(node: String, source: String) {
            self.node = node
            self.source = source
        }
    }

    public var name: String
    public var members: [Member]
    public var updated: Date
}

/// How a source set's member stands right now (`GET /v1/sources`).
public enum MemberState: String, Sendable, Codable {
    /// In the tailnet and healthy: a resolver.
    case listed
    /// Not in the tailnet, not healthy, or not one device yet.
    case pending
    /// Removed by an operator, who wins over every source until the exclusion ends.
    case excluded
}

/// The reconcile loop's memory between runs. Everything but `failedChecks` is durable: it
/// is what operators and senders told the loop, and `state.file` keeps it across restarts.
struct LoopState: Sendable, Equatable {
    /// Consecutive failed checks by nodeId.
    var failedChecks: [String: Int] = [:]
    /// Nodes that failed a check, with the checks they have passed in a row since; they are
    /// added again only after `healthcheck.successThreshold` of them.
    var recovering: [String: Int] = [:]
    /// Resolvers added by RPC, with their sources, by nodeId.
    var manualSources: [String: Set<String>] = [:]
    /// When each RPC add was made (not kept in `state.file`: a restarted loop's first read
    /// is newer than all of them).
    var manualSince: [String: Date] = [:]
    var pending: [PendingAdd] = []
    var exclusions: [String: Exclusion] = [:]
    var sourceSets: [String: SourceSet] = [:]
    /// Nodes a source set stopped naming, by nodeId, with the set's name: removed (not
    /// excluded) unless some source names them; forgotten once they are named again or no
    /// longer listed.
    var withdrawn: [String: String] = [:]

    /// The part that `state.file` keeps: not the counts of checks.
    var durable: LoopState {
        var copy = self
        copy.failedChecks = [:]
        copy.recovering = [:]
        copy.manualSince = [:]
        return copy
    }

    /// Expires exclusions and pending adds, forgets nodes that left the tailnet, and turns
    /// pending adds whose node is now healthy into resolvers — unless an operator excluded
    /// that node after the add was made. Returns the queries of the promoted adds.
    mutating func housekeeping(_ snapshot: TailnetSnapshot, isHealthy: (Device) -> Bool) -> [String] {
        expire(at: snapshot.readAt)
        // Only what was known when the read began can be gone: an add or a remove made for
        // a node that registered during the read is newer than this snapshot.
        let present = Set(snapshot.devices.map(\.nodeId))
        exclusions = exclusions.filter { present.contains($0.key) || $0.value.since >= snapshot.startedAt }
        manualSources = manualSources.filter { present.contains($0.key) || (manualSince[$0.key] ?? .distantPast) >= snapshot.startedAt }
        manualSince = manualSince.filter { manualSources[$0.key] != nil }
        withdrawn = withdrawn.filter { present.contains($0.key) }
        var promoted: [String] = []
        var kept: [PendingAdd] = []
        let index = NodeQuery.Index(snapshot.devices)
        for add in pending {
            if case .found(let device) = index.resolve(add.query, isHealthy: isHealthy), isHealthy(device) {
                if let exclusion = exclusions[device.nodeId], exclusion.since >= add.since { continue }
                manualSources[device.nodeId, default: []].insert(add.source)
                exclusions[device.nodeId] = nil
                promoted.append(add.query)
            } else {
                kept.append(add)
            }
        }
        pending = kept
        return promoted
    }

    /// Drops exclusions and pending adds whose time has passed (also at load).
    mutating func expire(at date: Date) {
        exclusions = exclusions.filter { $0.value.until > date }
        pending = pending.filter { $0.expires > date }
    }

    /// Failed checks after one more check of `devices`: +1 for each failing device, and a
    /// passing one starts again from zero.
    func counting(_ devices: [Device], fails: (Device) -> Bool) -> [String: Int] {
        var counts: [String: Int] = [:]
        for device in devices where fails(device) {
            counts[device.nodeId] = (failedChecks[device.nodeId] ?? 0) + 1
        }
        return counts
    }

    /// Passed checks after one more check: a failing device starts recovering from zero, one
    /// that passed (with probes: was probed and answered) counts up and is released at
    /// `threshold`; one this check did not judge keeps its count.
    func recovering(after devices: [Device], fails: (Device) -> Bool, passes: (Device) -> Bool, threshold: Int) -> [String: Int] {
        var next: [String: Int] = [:]
        for device in devices {
            guard let count = recovering[device.nodeId] else {
                if fails(device) { next[device.nodeId] = 0 }
                continue
            }
            if fails(device) {
                next[device.nodeId] = 0
            } else if !passes(device) {
                next[device.nodeId] = count
            } else if count + 1 < threshold {
                next[device.nodeId] = count + 1
            }
        }
        return next
    }

    // MARK: Source sets

    /// The nodeIds a list of members names right now, with each one's sources. A member
    /// that is not one device yet (absent, or an ambiguous hostname) names nothing.
    static func resolve(_ members: [SourceSet.Member], in devices: [Device], isHealthy: (Device) -> Bool) -> [String: Set<String>] {
        resolve(members, in: NodeQuery.Index(devices), isHealthy: isHealthy)
    }

    static func resolve(_ members: [SourceSet.Member], in index: NodeQuery.Index, isHealthy: (Device) -> Bool) -> [String: Set<String>] {
        var named: [String: Set<String>] = [:]
        for member in members {
            if case .found(let device) = index.resolve(member.node, isHealthy: isHealthy) {
                named[device.nodeId, default: []].insert(member.source)
            }
        }
        return named
    }

    /// Every source outside the tailnet's tags: RPC adds and source-set members, by nodeId.
    func extraSources(_ devices: [Device], isHealthy: (Device) -> Bool) -> [String: Set<String>] {
        var sources = manualSources
        guard !sourceSets.isEmpty else { return sources }
        let index = NodeQuery.Index(devices)
        for set in sourceSets.values {
            for (id, named) in Self.resolve(set.members, in: index, isHealthy: isHealthy) {
                sources[id, default: []].formUnion(named)
            }
        }
        return sources
    }

    /// Replaces what `name` said before. Nodes it named then and does not name now are
    /// withdrawn; whether another source still names them (a tag, another set, an RPC add)
    /// is the planner's question, asked on every run.
    mutating func replaceSourceSet(_ name: String, members: [SourceSet.Member], at date: Date, devices: [Device], isHealthy: (Device) -> Bool) {
        let index = NodeQuery.Index(devices)
        let before = sourceSets[name].map { Self.resolve($0.members, in: index, isHealthy: isHealthy) } ?? [:]
        let after = Self.resolve(members, in: index, isHealthy: isHealthy)
        sourceSets[name] = SourceSet(name: name, members: members, updated: date)
        for id in before.keys where after[id] == nil { withdrawn[id] = name }
        for id in after.keys { withdrawn[id] = nil }
    }

    /// After a run: a withdrawal ends once some source names the node again, or once none
    /// of its addresses is listed any more (it has been removed). Only withdrawals the run
    /// knew (`before`) are settled: one made while it ran is judged by the next run.
    mutating func settleWithdrawals(before: [String: String], sources: [String: Set<String>], listed: Set<String>) {
        withdrawn = withdrawn.filter { id, set in
            before[id] != set || (sources[id] == nil && listed.contains(id))
        }
    }

    /// How each member of a set stands.
    func states(of set: SourceSet, devices: [Device], isHealthy: (Device) -> Bool) -> [MemberState] {
        let index = NodeQuery.Index(devices)
        return set.members.map { member in
            guard case .found(let device) = index.resolve(member.node, isHealthy: isHealthy) else { return .pending }
            if exclusions[device.nodeId] != nil { return .excluded }
            return isHealthy(device) ? .listed : .pending
        }
    }
}
