import Foundation
import Testing
@testable import TSDNSCore

/// The planner as a truth table: each row is one situation, read left to right as
/// "given this list and these devices, the plan keeps/adds/removes/blocks exactly this".

private let now = Date(timeIntervalSince1970: 1_795_000_000)  // fixed: tests never read the clock

private enum State: Sendable {
    case healthy, disconnected, unauthorized, keyExpired, keyExpiredButExpiryDisabled
    case noConnectedFieldSeenRecently, noConnectedFieldSeenLongAgo
}

/// Device n has 100.64.0.n and fd7a:115c:a1e0::n.
private func device(_ n: Int, _ state: State = .healthy, tags: [String]? = ["tag:dns"], host: String? = nil) -> Device {
    var d = Device(
        id: "id\(n)", nodeId: "node\(n)", name: "dns-\(n).tail.ts.net", hostname: host ?? "dns-\(n)",
        addresses: ["100.64.0.\(n)", "fd7a:115c:a1e0::\(n)"], tags: tags,
        authorized: true, connectedToControl: true, lastSeen: now,
        expires: now.addingTimeInterval(86400), keyExpiryDisabled: false
    )
    switch state {
    case .healthy: break
    case .disconnected:
        d.connectedToControl = false
        d.lastSeen = now.addingTimeInterval(-3600)
    case .unauthorized: d.authorized = false
    case .keyExpired: d.expires = now.addingTimeInterval(-60)
    case .keyExpiredButExpiryDisabled:
        d.expires = now.addingTimeInterval(-86400 * 365)
        d.keyExpiryDisabled = true
    case .noConnectedFieldSeenRecently:
        d.connectedToControl = nil
        d.lastSeen = now.addingTimeInterval(-60)
    case .noConnectedFieldSeenLongAgo:
        d.connectedToControl = nil
        d.lastSeen = now.addingTimeInterval(-600)
    }
    return d
}

private func v4(_ n: Int) -> String { "100.64.0.\(n)" }
private func v6(_ n: Int) -> String { "fd7a:115c:a1e0::\(n)" }

struct PlannerCase: Sendable, CustomTestStringConvertible {
    var name: String
    var target: Target = .global
    var current: [String]
    fileprivate var devices: [Device] = []
    var settings = PlanSettings(minResolvers: 0)
    var extraSources: [String: Set<String>] = [:]
    var excluded: Set<String> = []
    var withdrawn: [String: String] = [:]
    var failedChecks: [String: Int] = [:]
    // Expected
    var desired: [String]
    var added: [String] = []
    var removed: [String] = []
    var blocked: [String: SafetyRule] = [:]
    /// A fragment of the reason of the first added/removed entry, where it matters.
    var reason: String? = nil

    var testDescription: String { name }
}

private func settings(_ change: (inout PlanSettings) -> Void) -> PlanSettings {
    var s = PlanSettings(minResolvers: 0)
    change(&s)
    return s
}

private let cases: [PlannerCase] = [
    // Managed vs unmanaged
    PlannerCase(name: "unmanaged public resolver kept in place", current: ["1.1.1.1", v4(1), "8.8.8.8"], devices: [device(1)],
                desired: ["1.1.1.1", v4(1), "8.8.8.8"]),
    PlannerCase(name: "private non-Tailscale address is unmanaged", current: ["192.168.1.53", v4(2)], devices: [device(1, .disconnected), device(2)],
                desired: ["192.168.1.53", v4(2)]),
    PlannerCase(name: "non-IP entry (DoH URL) is unmanaged", current: ["https://dns.example/dns-query", v4(1)], devices: [device(1)],
                desired: ["https://dns.example/dns-query", v4(1)]),
    PlannerCase(name: "100.100.100.100 always protected though in 100.64/10", current: ["100.100.100.100", v4(1)], devices: [device(1)],
                desired: ["100.100.100.100", v4(1)]),
    PlannerCase(name: "safety.protect keeps an orphan Tailscale address", current: ["100.64.50.50", v4(1)], devices: [device(1)],
                settings: settings { $0.protect = ["100.64.50.50"] }, desired: ["100.64.50.50", v4(1)]),
    PlannerCase(name: "orphan Tailscale-range IPv4 removed", current: [v4(1), "100.64.9.9"], devices: [device(1)],
                desired: [v4(1)], removed: ["100.64.9.9"], reason: "no tailnet device"),
    PlannerCase(name: "orphan Tailscale-range IPv6 removed", current: [v4(1), "fd7a:115c:a1e0::99"], devices: [device(1)],
                desired: [v4(1)], removed: ["fd7a:115c:a1e0::99"]),

    // Health
    PlannerCase(name: "disconnected device removed", current: ["1.1.1.1", v4(1), v4(2)], devices: [device(1), device(2, .disconnected)],
                desired: ["1.1.1.1", v4(1)], removed: [v4(2)], reason: "not connected since"),
    PlannerCase(name: "unauthorized device removed", current: [v4(1), v4(2)], devices: [device(1), device(2, .unauthorized)],
                desired: [v4(1)], removed: [v4(2)], reason: "not authorized"),
    PlannerCase(name: "expired key removed", current: [v4(1), v4(2)], devices: [device(1), device(2, .keyExpired)],
                desired: [v4(1)], removed: [v4(2)], reason: "key expired"),
    PlannerCase(name: "past expiry ignored when keyExpiryDisabled", current: [v4(1), v4(2)], devices: [device(1), device(2, .keyExpiredButExpiryDisabled)],
                desired: [v4(1), v4(2)]),
    PlannerCase(name: "no connectedToControl: recent lastSeen is healthy", current: [v4(1)], devices: [device(1, .noConnectedFieldSeenRecently)],
                desired: [v4(1)]),
    PlannerCase(name: "no connectedToControl: lastSeen older than staleAfter removed", current: [v4(1), v4(2)],
                devices: [device(1), device(2, .noConnectedFieldSeenLongAgo)], desired: [v4(1)], removed: [v4(2)], reason: "not seen since"),
    PlannerCase(name: "device gone from the tailnet: address removed", current: [v4(1), v4(2)], devices: [device(1)],
                desired: [v4(1)], removed: [v4(2)]),
    PlannerCase(name: "healthy untagged device already listed is kept", current: [v4(1), v4(5)], devices: [device(1), device(5, tags: nil)],
                desired: [v4(1), v4(5)]),
    PlannerCase(name: "unhealthy untagged listed device removed", current: [v4(1), v4(5)], devices: [device(1), device(5, .disconnected, tags: nil)],
                desired: [v4(1)], removed: [v4(5)]),
    PlannerCase(name: "failureThreshold not reached: kept", current: [v4(1), v4(2)], devices: [device(1), device(2, .disconnected)],
                settings: settings { $0.failureThreshold = 3 }, failedChecks: ["node2": 2], desired: [v4(1), v4(2)]),
    PlannerCase(name: "failureThreshold reached: removed", current: [v4(1), v4(2)], devices: [device(1), device(2, .disconnected)],
                settings: settings { $0.failureThreshold = 3 }, failedChecks: ["node2": 3], desired: [v4(1)], removed: [v4(2)]),

    // Additions and order
    PlannerCase(name: "new healthy tagged device appended", current: ["1.1.1.1", v4(1)], devices: [device(1), device(7)],
                desired: ["1.1.1.1", v4(1), v4(7)], added: [v4(7)], reason: "tag:dns"),
    PlannerCase(name: "entries that stay keep positions; adds in numeric order", current: [v4(5), "8.8.8.8", v4(2)],
                devices: [device(5), device(2), device(10), device(9)],
                desired: [v4(5), "8.8.8.8", v4(2), v4(9), v4(10)], added: [v4(9), v4(10)]),
    PlannerCase(name: "unhealthy tagged device not added", current: [v4(1)], devices: [device(1), device(7, .disconnected)],
                desired: [v4(1)]),
    PlannerCase(name: "untagged device without a source not added", current: [v4(1)], devices: [device(1), device(7, tags: nil)],
                desired: [v4(1)]),
    PlannerCase(name: "device with another tag not added", current: [v4(1)], devices: [device(1), device(7, tags: ["tag:web"])],
                desired: [v4(1)]),
    PlannerCase(name: "Kubernetes source adds an untagged device", current: [v4(1)], devices: [device(1), device(8, tags: nil)],
                extraSources: ["node8": ["kubernetes:prod/dns/coredns"]], desired: [v4(1), v4(8)], added: [v4(8)],
                reason: "kubernetes:prod/dns/coredns"),
    PlannerCase(name: "sources are combined in the reason", current: [v4(1)], devices: [device(1), device(8)],
                extraSources: ["node8": ["kubernetes:prod/dns/coredns"]], desired: [v4(1), v4(8)], added: [v4(8)],
                reason: "tag:dns, kubernetes:prod/dns/coredns"),
    PlannerCase(name: "addressFamily ipv6 adds the IPv6 address", current: [v4(1)], devices: [device(1), device(7)],
                settings: settings { $0.addressFamily = .ipv6 }, desired: [v4(1), v6(1), v6(7)], added: [v6(1), v6(7)]),
    PlannerCase(name: "addressFamily both: IPv4 before IPv6", current: [], devices: [device(7), device(3)],
                settings: settings { $0.addressFamily = .both }, desired: [v4(3), v4(7), v6(3), v6(7)], added: [v4(3), v4(7), v6(3), v6(7)]),
    PlannerCase(name: "IPv6 written in another form matches its device", current: ["fd7a:115c:a1e0:0:0::1"], devices: [device(1)],
                settings: settings { $0.addressFamily = .ipv6 }, desired: ["fd7a:115c:a1e0:0:0::1"]),
    PlannerCase(name: "healthcheck never adds", current: [v4(1), v4(2)], devices: [device(1), device(2, .disconnected), device(7)],
                settings: settings { $0.mode = .healthcheck }, desired: [v4(1)], removed: [v4(2)]),
    PlannerCase(name: "excluded device removed by a sync", current: [v4(1), v4(2)], devices: [device(1), device(2)], excluded: ["node2"],
                desired: [v4(1)], removed: [v4(2)], reason: "excluded"),
    PlannerCase(name: "excluded device not added", current: [v4(1)], devices: [device(1), device(7)], excluded: ["node7"],
                desired: [v4(1)]),

    // Safety
    PlannerCase(name: "minResolvers blocks the removal that crosses it", current: [v4(1), v4(2), "1.1.1.1"],
                devices: [device(1, .disconnected), device(2, .disconnected)], settings: settings { $0.minResolvers = 1 },
                desired: [v4(2), "1.1.1.1"], removed: [v4(1)], blocked: [v4(2): .minResolvers]),
    PlannerCase(name: "minResolvers counts additions", current: [v4(1), "1.1.1.1"], devices: [device(1, .disconnected), device(7)],
                settings: settings { $0.minResolvers = 1 }, desired: ["1.1.1.1", v4(7)], added: [v4(7)], removed: [v4(1)]),
    PlannerCase(name: "minResolvers not binding when fewer exist now", current: [v4(1), "1.1.1.1"], devices: [device(1, .disconnected)],
                settings: settings { $0.minResolvers = 2 }, desired: ["1.1.1.1"], removed: [v4(1)]),
    PlannerCase(name: "maxRemovals holds back the rest", current: ["1.1.1.1", v4(1), v4(2), v4(3), v4(4)],
                devices: [device(1, .disconnected), device(2, .disconnected), device(3, .disconnected), device(4, .disconnected)],
                settings: settings { $0.maxRemovals = 2 }, desired: ["1.1.1.1", v4(3), v4(4)], removed: [v4(1), v4(2)],
                blocked: [v4(3): .maxRemovals, v4(4): .maxRemovals]),
    PlannerCase(name: "global list never emptied", current: [v4(1), v4(2)], devices: [device(1, .disconnected), device(2, .unauthorized)],
                desired: [v4(2)], removed: [v4(1)], blocked: [v4(2): .neverEmpty]),
    PlannerCase(name: "a split-DNS list may become empty", target: .splitDNS("corp.example.com"), current: [v4(1)],
                devices: [device(1, .disconnected)], desired: [], removed: [v4(1)]),
    PlannerCase(name: "only change blocked: plan unchanged", current: [v4(1)], devices: [device(1, .disconnected)],
                settings: settings { $0.minResolvers = 1 }, desired: [v4(1)], blocked: [v4(1): .minResolvers]),
    PlannerCase(name: "minResolvers counts devices, not their addresses", current: [v4(1), v6(1), v4(2), v6(2)],
                devices: [device(1), device(2, .disconnected)], settings: settings { $0.minResolvers = 2; $0.addressFamily = .both },
                desired: [v4(1), v6(1), v6(2)], removed: [v4(2)], blocked: [v6(2): .minResolvers]),
    PlannerCase(name: "device shared in from another tailnet is not added for its tag", current: [v4(1)],
                devices: [device(1), { var d = device(7); d.isExternal = true; return d }()], desired: [v4(1)]),
    PlannerCase(name: "empty list and no resolvers: nothing to do", current: [], devices: [device(1, tags: nil)], desired: []),
    // Source sets and ownership of unsourced entries.
    PlannerCase(name: "withdrawn by a source set and named by nothing: removed", current: ["1.1.1.1", v4(1), v4(2)],
                devices: [device(1), device(2, tags: nil)], withdrawn: ["node2": "kubernetes:prod"],
                desired: ["1.1.1.1", v4(1)], removed: [v4(2)], reason: "withdrawn by kubernetes:prod"),
    PlannerCase(name: "withdrawn but still tagged: kept", current: ["1.1.1.1", v4(1)], devices: [device(1)],
                withdrawn: ["node1": "kubernetes:prod"], desired: ["1.1.1.1", v4(1)]),
    PlannerCase(name: "withdrawn but named by another source: kept", current: ["1.1.1.1", v4(2)], devices: [device(2, tags: nil)],
                extraSources: ["node2": ["kubernetes:staging/dns/x"]], withdrawn: ["node2": "kubernetes:prod"], desired: ["1.1.1.1", v4(2)]),
    PlannerCase(name: "withdrawals wait for a sync: a healthcheck keeps it", current: ["1.1.1.1", v4(2)], devices: [device(2, tags: nil)],
                settings: settings { $0.mode = .healthcheck }, withdrawn: ["node2": "kubernetes:prod"], desired: ["1.1.1.1", v4(2)]),
    PlannerCase(name: "withdrawn removal still obeys minResolvers", current: [v4(2), "1.1.1.1"], devices: [device(2, tags: nil)],
                settings: settings { $0.minResolvers = 1 }, withdrawn: ["node2": "kubernetes:prod"], desired: [v4(2), "1.1.1.1"],
                blocked: [v4(2): .minResolvers]),
    PlannerCase(name: "unsourced: keep keeps a healthy untagged entry", current: ["1.1.1.1", v4(2)], devices: [device(2, tags: nil)],
                settings: settings { $0.unsourced = .keep }, desired: ["1.1.1.1", v4(2)]),
    PlannerCase(name: "unsourced: remove removes a healthy untagged entry", current: ["1.1.1.1", v4(1), v4(2)],
                devices: [device(1), device(2, tags: nil)], settings: settings { $0.unsourced = .remove },
                desired: ["1.1.1.1", v4(1)], removed: [v4(2)], reason: "no source names it"),
    PlannerCase(name: "unsourced: remove keeps an entry an RPC add names", current: ["1.1.1.1", v4(2)], devices: [device(2, tags: nil)],
                settings: settings { $0.unsourced = .remove }, extraSources: ["node2": ["manual"]], desired: ["1.1.1.1", v4(2)]),
    PlannerCase(name: "unsourced: remove leaves unmanaged entries alone", current: ["1.1.1.1", "100.100.100.100", v4(1)],
                devices: [device(1)], settings: settings { $0.unsourced = .remove }, desired: ["1.1.1.1", "100.100.100.100", v4(1)]),
    PlannerCase(name: "unsourced: remove obeys maxRemovals", current: ["1.1.1.1", v4(2), v4(3)],
                devices: [device(2, tags: nil), device(3, tags: nil)], settings: settings { $0.unsourced = .remove; $0.maxRemovals = 1 },
                desired: ["1.1.1.1", v4(3)], removed: [v4(2)], blocked: [v4(3): .maxRemovals]),
    // Device addresses: only Tailscale's ranges count.
    PlannerCase(name: "a tagged device claiming 8.8.8.8 does not get it added", current: ["1.1.1.1"],
                devices: [{ var d = device(1); d.addresses = ["8.8.8.8", "100.64.0.1"]; return d }()],
                desired: ["1.1.1.1", v4(1)], added: [v4(1)]),
    PlannerCase(name: "a disconnected device claiming 1.1.1.1 does not get it removed", current: ["1.1.1.1", v4(2)],
                devices: [device(2), { var d = device(3, .disconnected); d.addresses = ["1.1.1.1"]; return d }()],
                desired: ["1.1.1.1", v4(2)]),
    PlannerCase(name: "an IPv4-mapped IPv6 address is not a Tailscale address", current: ["1.1.1.1"],
                devices: [{ var d = device(1); d.addresses = ["::ffff:100.64.0.25"]; return d }()],
                settings: settings { $0.addressFamily = .both }, desired: ["1.1.1.1"]),
    PlannerCase(name: "two devices claim one address: healthy if any is (healthy first)", current: ["1.1.1.1", v4(5)],
                devices: [device(5, host: "a"), { var d = device(5, .disconnected, host: "b"); d.nodeId = "node5b"; return d }()],
                desired: ["1.1.1.1", v4(5)]),
    PlannerCase(name: "two devices claim one address: healthy if any is (healthy last)", current: ["1.1.1.1", v4(5)],
                devices: [{ var d = device(5, .disconnected, host: "b"); d.nodeId = "node5b"; return d }(), device(5, host: "a")],
                desired: ["1.1.1.1", v4(5)]),
    PlannerCase(name: "two devices claim one address, both down: removed", current: ["1.1.1.1", v4(5)],
                devices: [device(5, .disconnected), { var d = device(5, .unauthorized); d.nodeId = "node5b"; return d }()],
                desired: ["1.1.1.1"], removed: [v4(5)]),
    PlannerCase(name: "three devices claim one address: healthy if any is (healthy third)", current: ["1.1.1.1", v4(5)],
                devices: [{ var d = device(5, .disconnected, host: "b"); d.nodeId = "node5b"; return d }(),
                          { var d = device(5, .unauthorized, host: "c"); d.nodeId = "node5c"; return d }(), device(5, host: "a")],
                desired: ["1.1.1.1", v4(5)]),
]

@Suite("Planner truth table")
struct PlannerTableTests {
    @Test(arguments: cases)
    func row(_ row: PlannerCase) {
        let inventory = ResolverInventory(
            index: DeviceIndex(devices: row.devices, now: now, staleAfter: .seconds(300), resolverTags: ["tag:dns"]),
            extraSources: row.extraSources, excluded: row.excluded, withdrawn: row.withdrawn, failedChecks: row.failedChecks
        )
        let plan = Planner.plan(target: row.target, current: row.current, inventory: inventory, settings: row.settings)
        #expect(plan.desired == row.desired)
        #expect(plan.entries(.add).map(\.address) == row.added)
        #expect(plan.entries(.remove).map(\.address) == row.removed)
        let blocked = Dictionary(uniqueKeysWithValues: plan.entries(.blocked).map { ($0.address, $0.rule!) })
        #expect(blocked == row.blocked)
        #expect(plan.changed == (row.desired != row.current))
        if let reason = row.reason {
            let first = (plan.entries(.add) + plan.entries(.remove)).first
            #expect(first?.reason.contains(reason) == true, "reason was \(first?.reason ?? "none")")
        }
        // Invariants that hold for every row.
        if row.target == .global && !row.current.isEmpty { #expect(!plan.desired.isEmpty) }
        #expect(Set(plan.desired).count == plan.desired.count, "no duplicates introduced")
    }
}
