import Foundation
import Logging
import TSDNSConfig
import TSDNSCore
import TSDNSKubernetes
import TSDNSProbe
import TSDNSTailscale

/// What the tailnet looks like right now: every read a run needs, all of which succeeded.
public struct TailnetSnapshot: Sendable {
    public let devices: [Device]
    public var lists: [Target: [String]]
    public let readAt: Date
    /// When the reads began: what the loop was told after this is newer than the snapshot.
    public var startedAt: Date
    /// Pull mode: each cluster's annotated Services, read with the tailnet (sync runs only).
    public var clusters: [ClusterServices] = []
    /// The devices those Services name, by nodeId, with their sources.
    public var kubernetesSources: [String: Set<String>] = [:]
    /// Health, tags and address owners of `devices` at `readAt`, built once by the read
    /// for every inventory of the run (nil: built where needed).
    public var deviceIndex: DeviceIndex?
}

/// A cluster's LIST failed: the run's read failed, so it writes nothing.
public struct ClusterReadError: Error, CustomStringConvertible {
    public var cluster: String
    public var underlying: Error
    public var description: String { "kubernetes cluster \(cluster): \(underlying)" }

    /// 401, 403 or no credential to be had (a failing plugin): an operator must act.
    public var isCredentialRejected: Bool {
        switch underlying as? KubernetesError {
        case .status(let code, _, _, _)?: return code == 401 || code == 403
        case .credential?: return true
        default: return false
        }
    }
}

/// One reconcile run's inputs beyond the config.
public struct RunRequest: Sendable {
    public var mode: RunMode
    public var dryRun: Bool
    /// Resolver sources from outside the tailnet's tags, by nodeId (Kubernetes, RPC).
    public var extraSources: [String: Set<String>]
    public var excluded: Set<String>
    /// Withdrawn by a source set, by nodeId, with the set's name.
    public var withdrawn: [String: String]
    /// Consecutive failed checks by nodeId, this check included; empty means one each.
    public var failedChecks: [String: Int]
    /// DNS probe results of this check; nil: probe now if `probe: dns` (`run --once`).
    public var probes: [IPAddress: ProbeFinding]?
    /// Nodes not to add yet (`healthcheck.successThreshold`).
    public var heldBack: Set<String> = []
    /// `run --once` remembers nothing between runs, so one failed check is enough.
    public var failureThreshold: Int?

    public init(
        mode: RunMode, dryRun: Bool, extraSources: [String: Set<String>] = [:], excluded: Set<String> = [],
        withdrawn: [String: String] = [:], failedChecks: [String: Int] = [:], failureThreshold: Int? = nil
    ) {
        self.mode = mode
        self.dryRun = dryRun
        self.extraSources = extraSources
        self.excluded = excluded
        self.withdrawn = withdrawn
        self.failedChecks = failedChecks
        self.failureThreshold = failureThreshold
    }
}

public struct RunResult: Sendable {
    public var plan: Plan
    /// The devices and their health as this run saw them.
    public var inventory: ResolverInventory
}

/// Read everything, plan, apply. Nothing is written unless every read succeeded.
public final class Reconciler: Sendable {
    public let client: TailscaleClient
    public let config: Config
    public let tailnet: String
    /// With `healthcheck.probe: dns`: the DNS probe of every resolver a run judges.
    public let prober: DNSProber?
    /// Pull mode: the clusters every sync LISTs (`kubernetes.clusters`).
    public let clusters: [ClusterSource]
    private let logger: Logger
    private let now: @Sendable () -> Date

    /// `probeEndpoint` points resolver addresses elsewhere (the demo's local servers).
    public init(
        client: TailscaleClient, config: Config, tailnet: String, logger: Logger, now: @escaping @Sendable () -> Date = Date.init,
        probeEndpoint: (@Sendable (IPAddress) -> (IPAddress, Int))? = nil, clusters: [ClusterSource] = []
    ) {
        self.client = client
        self.clusters = clusters
        self.config = config
        self.tailnet = tailnet
        self.logger = logger
        self.now = now
        self.prober = config.healthcheck.probe == .dns
            ? DNSProber(settings: ProbeSettings(config.healthcheck.dns), endpoint: probeEndpoint) : nil
    }

    /// The addresses a run judges whose devices the control plane calls healthy: every
    /// managed entry of the lists, and in a sync every candidate that could be added.
    public func probeTargets(_ snapshot: TailnetSnapshot, _ request: RunRequest) -> [IPAddress] {
        var unprobed = request
        unprobed.probes = [:]
        let inventory = inventory(snapshot, unprobed)
        var targets: [IPAddress] = []
        var seen = Set<IPAddress>()
        let protected = Set(config.safety.protect.compactMap(IPAddress.init))
        for list in snapshot.lists.values {
            for address in list.compactMap(IPAddress.init) where !protected.contains(address) {
                if let device = inventory.owner(of: address), inventory.health(of: device).isHealthy, seen.insert(address).inserted {
                    targets.append(address)
                }
            }
        }
        if request.mode == .sync {
            for (device, _) in inventory.candidates
            where inventory.health(of: device).isHealthy && !inventory.excluded.contains(device.nodeId) {
                for address in device.ipAddresses where config.resolvers.addressFamily.includes(address) && seen.insert(address).inserted {
                    targets.append(address)
                }
            }
        }
        return targets
    }

    /// Probes the run's targets; empty without `probe: dns`. Never fails: an unreachable
    /// resolver is an unhealthy resolver, not a failed read.
    public func probe(_ snapshot: TailnetSnapshot, _ request: RunRequest) async -> [IPAddress: ProbeFinding] {
        guard let prober else { return [:] }
        let results = await prober.probe(probeTargets(snapshot, request))
        var findings: [IPAddress: ProbeFinding] = [:]
        // A probe the batch deadline cut short says nothing: the control plane's verdict stands.
        for result in results where !result.cutShort {
            findings[result.address] = ProbeFinding(passed: result.passed, reason: result.reason, result: result.outcome.label, roundTrip: result.roundTrip)
        }
        let cut = results.filter(\.cutShort).count
        if cut > 0 {
            logger.warning("DNS probes cut short by the batch deadline; raise healthcheck.dns.concurrency", metadata: [
                "cutShort": .stringConvertible(cut), "probes": .stringConvertible(results.count),
            ])
        }
        return findings
    }

    /// The request floor: one devices GET, one nameservers GET if the global list is
    /// managed, one split-DNS GET if any domain is; in a sync, one LIST (per page) of every
    /// cluster, all at once. Any failure fails the whole read.
    public func read(mode: RunMode = .sync) async throws -> TailnetSnapshot {
        let targets = config.resolvers.targets
        let splitDomains = config.resolvers.splitDNS
        let startedAt = now()
        async let devices = client.listDevices()
        async let global: [String]? = targets.contains(.global) ? client.nameservers() : nil
        async let split: [String: [String]]? = splitDomains.isEmpty ? nil : client.splitDNS()
        async let clusterReads = mode == .sync ? readClusters() : []
        let (readDevices, readGlobal, readSplit, readClusters) = try await (devices, global, split, clusterReads)
        var lists: [Target: [String]] = [:]
        if let readGlobal { lists[.global] = readGlobal }
        for domain in splitDomains { lists[.splitDNS(domain)] = readSplit.map { splitEntry($0, domain).list } ?? [] }
        var snapshot = TailnetSnapshot(devices: readDevices, lists: lists, readAt: now(), startedAt: startedAt, clusters: readClusters)
        snapshot.kubernetesSources = kubernetesSources(snapshot)
        snapshot.deviceIndex = deviceIndex(snapshot)
        return snapshot
    }

    /// Every cluster's annotated Services, in config order; the first failure cancels the rest.
    private func readClusters() async throws -> [ClusterServices] {
        guard !clusters.isEmpty else { return [] }
        return try await withThrowingTaskGroup(of: (Int, ClusterServices).self) { group in
            for (index, cluster) in clusters.enumerated() {
                group.addTask {
                    do {
                        return (index, try await cluster.read())
                    } catch is CancellationError {
                        throw CancellationError()
                    } catch {
                        throw ClusterReadError(cluster: cluster.name, underlying: error)
                    }
                }
            }
            var results: [ClusterServices?] = Array(repeating: nil, count: clusters.count)
            for try await (index, services) in group { results[index] = services }
            return results.compactMap { $0 }
        }
    }

    /// Pull mode's sources by nodeId: each annotated Service's device, when it is one
    /// device now. A Service whose device is not in the tailnet yet is pending (logged), not
    /// an error; an ambiguous hostname names its candidates.
    func kubernetesSources(_ snapshot: TailnetSnapshot) -> [String: Set<String>] {
        guard !snapshot.clusters.isEmpty else { return [:] }
        let index = NodeQuery.Index(snapshot.devices)
        let staleAfter = config.healthcheck.staleAfter
        let isHealthy: (Device) -> Bool = { $0.isHealthy(now: snapshot.readAt, staleAfter: staleAfter) }
        var sources: [String: Set<String>] = [:]
        var pending: [String] = []
        for cluster in snapshot.clusters {
            for member in cluster.members {
                switch index.resolve(member.node, isHealthy: isHealthy) {
                case .found(let device):
                    sources[device.nodeId, default: []].insert(member.source)
                case .notFound:
                    pending.append("\(member.source) (\(member.node))")
                case .ambiguous(let candidates):
                    logger.warning("a Service's device name is ambiguous; it stays pending until exactly one of them is healthy", metadata: [
                        "source": "\(member.source)", "node": "\(TerminalText.escape(member.node))",
                        "candidates": .array(candidates.map { .string("\($0.nodeId) (\(TerminalText.escape($0.name)))") }),
                    ])
                }
            }
        }
        if !pending.isEmpty {
            logger.info("Services whose devices are not in the tailnet yet (pending)", metadata: [
                "services": .array(pending.prefix(20).map { .string(TerminalText.escape($0)) }), "count": .stringConvertible(pending.count),
            ])
        }
        return sources
    }

    public func inventory(_ snapshot: TailnetSnapshot, _ request: RunRequest) -> ResolverInventory {
        var sources = request.extraSources
        for (id, named) in snapshot.kubernetesSources { sources[id, default: []].formUnion(named) }
        return ResolverInventory(
            index: snapshot.deviceIndex ?? deviceIndex(snapshot),
            extraSources: sources,
            excluded: request.excluded,
            withdrawn: request.withdrawn,
            failedChecks: request.failedChecks,
            probes: request.probes ?? [:],
            heldBack: request.heldBack
        )
    }

    func deviceIndex(_ snapshot: TailnetSnapshot) -> DeviceIndex {
        DeviceIndex(devices: snapshot.devices, now: snapshot.readAt, staleAfter: config.healthcheck.staleAfter, resolverTags: config.resolvers.tags)
    }

    /// Plans every target. `safety.maxRemovals` is one allowance for the whole apply, used
    /// up by the lists in order (global first).
    public func plan(_ snapshot: TailnetSnapshot, _ inventory: ResolverInventory, _ request: RunRequest) -> Plan {
        var settings = config.planSettings(mode: request.mode, failureThreshold: request.failureThreshold)
        let allowance = settings.maxRemovals
        var targets: [TargetPlan] = []
        for target in config.resolvers.targets {
            settings.maxRemovals = max(0, allowance - targets.reduce(0) { $0 + $1.entries(.remove).count })
            targets.append(Planner.plan(target: target, current: snapshot.lists[target] ?? [], inventory: inventory, settings: settings))
        }
        return Plan(tailnet: displayName(snapshot.devices), mode: request.mode, dryRun: request.dryRun, targets: targets)
    }

    /// The tailnet as plans name it: the configured name, or for "-" the MagicDNS suffix the
    /// devices share (`dns-1.tail1234.ts.net` → `tail1234.ts.net`).
    func displayName(_ devices: [Device]) -> String {
        guard tailnet == "-" else { return tailnet }
        for device in devices where device.isExternal != true {
            let name = device.name.hasSuffix(".") ? String(device.name.dropLast()) : device.name
            if let dot = name.firstIndex(of: "."), name.index(after: dot) < name.endIndex {
                return String(name[name.index(after: dot)...])
            }
        }
        return tailnet
    }

    /// Reads (unless given a fresh snapshot), plans and applies. `progress` learns when the
    /// first write is sent, for whoever may have to stop the run.
    public func run(_ request: RunRequest, snapshot given: TailnetSnapshot? = nil, progress: WriteProgress? = nil) async throws -> RunResult {
        let snapshot: TailnetSnapshot
        if let given { snapshot = given } else { snapshot = try await read(mode: request.mode) }
        var request = request
        if request.probes == nil { request.probes = await probe(snapshot, request) }
        let inventory = inventory(snapshot, request)
        let plan = plan(snapshot, inventory, request)
        let settings = config.planSettings(mode: request.mode, failureThreshold: request.failureThreshold)
        let applier = Applier(client: client, logger: logger, dryRun: request.dryRun, progress: progress)
        let applied = try await applier.apply(plan) { target, current in
            // A list planned again keeps what the other lists left of the allowance.
            var adjusted = settings
            let others = plan.targets.filter { $0.target != target }.reduce(0) { $0 + $1.entries(.remove).count }
            adjusted.maxRemovals = max(0, settings.maxRemovals - others)
            return Planner.plan(target: target, current: current, inventory: inventory, settings: adjusted)
        }
        return RunResult(plan: applied, inventory: inventory)
    }
}

/// The one place that writes to the tailnet. Dry-run is enforced here. Every changed target
/// is re-read right before writing and re-planned if it moved; if any re-read fails,
/// nothing is written.
struct Applier: Sendable {
    let client: TailscaleClient
    let logger: Logger
    let dryRun: Bool
    var progress: WriteProgress? = nil

    /// Sends one write. Once it is sent, a failure without an answer (a timeout, an empty
    /// reply, a stop) leaves its outcome unknown: the API may have applied it.
    @discardableResult
    private func write<T: Sendable>(_ target: String, _ operation: () async throws -> T) async throws -> T {
        // A stop that came first wins: nothing was sent, so nothing is unknown.
        guard progress?.beginWrite() ?? true else { throw CancellationError() }
        do {
            return try await operation()
        } catch let error as TailscaleAPIError {
            if case .transient = error { throw ApplyError.outcomeUnknown(target: target, reason: error.description) }
            throw error
        } catch is CancellationError {
            throw ApplyError.outcomeUnknown(target: target, reason: "the run was stopped before the API answered")
        }
    }

    func apply(_ plan: Plan, replan: (Target, [String]) -> TargetPlan) async throws -> Plan {
        guard !dryRun, plan.changed else { return plan }
        var targets = plan.targets
        let changed = targets.indices.filter { targets[$0].changed }

        // Re-read every changed target first: a failure here writes nothing.
        let splitChanged = changed.contains { if case .splitDNS = targets[$0].target { true } else { false } }
        let freshGlobal = changed.contains { targets[$0].target == .global } ? try await client.nameservers() : nil
        let freshSplit = splitChanged ? try await client.splitDNS() : nil
        for index in changed {
            let fresh: [String]
            switch targets[index].target {
            case .global: fresh = freshGlobal ?? []
            case .splitDNS(let domain): fresh = freshSplit.map { splitEntry($0, domain).list } ?? []
            }
            if fresh != targets[index].current {
                logger.notice("list changed since it was read; planning again", metadata: ["target": "\(targets[index].target)"])
                targets[index] = replan(targets[index].target, fresh)
            }
        }

        if let index = changed.first(where: { targets[$0].target == .global }), targets[index].changed {
            let desired = targets[index].desired
            // The planner never empties the global list; this guard makes it impossible.
            guard !desired.isEmpty else { throw ApplyError.refusedEmptyGlobalList }
            let written = try await write("global") { try await client.setNameservers(desired) }
            if written != desired {
                logger.warning("the API holds a different global list than was written", metadata: ["written": "\(desired)", "holds": "\(written)"])
            }
            logApplied(targets[index])
        }
        var splitChanges: [String: [String]] = [:]
        for index in changed where targets[index].changed {
            if case .splitDNS(let domain) = targets[index].target {
                splitChanges[freshSplit.map { splitEntry($0, domain).key } ?? domain] = targets[index].desired
            }
        }
        if !splitChanges.isEmpty {
            try await write("split-DNS") { try await client.updateSplitDNS(splitChanges) }
            for index in changed where targets[index].changed {
                if case .splitDNS = targets[index].target { logApplied(targets[index]) }
            }
        }
        var result = plan
        result.targets = targets
        return result
    }

    private func logApplied(_ target: TargetPlan) {
        logger.notice("applied", metadata: [
            "target": "\(target.target)",
            "added": .array(target.entries(.add).map { .string($0.address) }),
            "removed": .array(target.entries(.remove).map { .string($0.address) }),
            "blocked": .array(target.entries(.blocked).map { .string($0.address) }),
        ])
    }
}

/// A domain's list in the split-DNS map, matched without regard to case (DNS names are
/// case-insensitive), with the API's own spelling of the domain for writing back.
func splitEntry(_ map: [String: [String]], _ domain: String) -> (key: String, list: [String]) {
    if let list = map[domain] { return (domain, list) }
    if let match = map.first(where: { $0.key.lowercased() == domain.lowercased() }) { return (match.key, match.value) }
    return (domain, [])
}

public enum ApplyError: Error, CustomStringConvertible {
    case refusedEmptyGlobalList
    /// A write was sent and no answer came: the next run reads the lists again.
    case outcomeUnknown(target: String, reason: String)

    public var description: String {
        switch self {
        case .refusedEmptyGlobalList: return "refused to write an empty global nameserver list (it would turn MagicDNS off)"
        case .outcomeUnknown(let target, let reason):
            return "the \(target) write was sent but its outcome is unknown (\(reason)); the next run reads the lists again"
        }
    }
}
