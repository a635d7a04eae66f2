import Foundation
import Testing
import TSDNSConfig
import TSDNSCore
import TSDNSSimulator
import TSDNSTailscale
@testable import TSDNSRuntime

@Suite("Reconcile runs against the simulated tailnet", .timeLimit(.minutes(1)))
struct ReconcilerTests {
    /// The first half of a run: read and plan, nothing applied yet.
    func readAndPlan(_ reconciler: Reconciler) async throws -> (Plan, ResolverInventory) {
        let snapshot = try await reconciler.read()
        let inventory = reconciler.inventory(snapshot, onceRequest)
        return (reconciler.plan(snapshot, inventory, onceRequest), inventory)
    }

    @Test func onceAppliesThePlan() async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        let result = try await makeReconciler(tailnet).run(onceRequest)
        #expect(result.plan.changed)
        #expect(tailnet.nameservers == ["1.1.1.1", "100.64.0.1", "100.64.0.3"])
        #expect(tailnet.magicDNS)
        #expect(tailnet.mutatingRequests.map(\.path) == ["/api/v2/tailnet/-/dns/nameservers"])
    }

    /// The read builds the devices' index once; every inventory of the run shares it, and
    /// judges as an inventory built from the devices would.
    @Test func aReadIndexesTheDevicesOnce() async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        // Health that depends on the time of the read and on staleAfter: seen 4 and 6
        // minutes ago, with no connectedToControl (staleAfter is 5 minutes).
        for (n, minutes) in [(60, 4.0), (61, 6.0)] {
            var device = SimulatedDevices.device(n, hostname: "seen-\(n)", lastSeen: Date().addingTimeInterval(-minutes * 60))
            device.connectedToControl = nil
            tailnet.addDevice(device)
        }
        let reconciler = makeReconciler(tailnet)
        let snapshot = try await reconciler.read()
        let index = try #require(snapshot.deviceIndex)
        #expect(index.devices == snapshot.devices)
        let shared = reconciler.inventory(snapshot, onceRequest)
        let rebuilt = ResolverInventory(
            devices: snapshot.devices, now: snapshot.readAt, staleAfter: Config().healthcheck.staleAfter, resolverTags: Config().resolvers.tags
        )
        #expect(snapshot.devices.map { shared.health(of: $0) } == snapshot.devices.map { rebuilt.health(of: $0) })
        let seen = snapshot.devices.filter { $0.hostname.hasPrefix("seen-") }.map { shared.health(of: $0).isHealthy }
        #expect(seen == [true, false])
        #expect(shared.sources == rebuilt.sources)
        for address in snapshot.devices.flatMap(\.ipAddresses) {
            #expect(shared.owner(of: address)?.nodeId == rebuilt.owner(of: address)?.nodeId)
        }
    }

    @Test func dryRunMakesZeroMutatingRequests() async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        let result = try await makeReconciler(tailnet).run(dryRunRequest)
        #expect(result.plan.changed)
        #expect(result.plan.targets[0].desired == ["1.1.1.1", "100.64.0.1", "100.64.0.3"])
        #expect(tailnet.mutatingRequests.isEmpty)
        #expect(tailnet.nameservers == ["1.1.1.1", "100.64.0.1", "100.64.0.2"])
    }

    @Test func secondOnceWritesNothingAndMeetsTheRequestFloor() async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        var config = Config()
        config.resolvers.splitDNS = ["corp.example.com"]
        let reconciler = makeReconciler(tailnet, config: config)
        _ = try await reconciler.run(onceRequest)
        tailnet.clearLog()
        let second = try await reconciler.run(onceRequest)
        #expect(!second.plan.changed)
        #expect(tailnet.mutatingRequests.isEmpty)
        #expect(tailnet.requests.map { "\($0.method) \($0.path)" }.sorted() == [
            "GET /api/v2/tailnet/-/devices", "GET /api/v2/tailnet/-/dns/nameservers", "GET /api/v2/tailnet/-/dns/split-dns",
        ])
    }

    @Test func splitDNSWritesOnlyTheManagedDomain() async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        tailnet.setSplitDNS(["corp.example.com": ["100.64.0.2"], "lab.example.com": ["10.1.1.1"]])
        var config = Config()
        config.resolvers.global = false
        config.resolvers.splitDNS = ["corp.example.com"]
        _ = try await makeReconciler(tailnet, config: config).run(onceRequest)
        #expect(tailnet.splitDNS == ["corp.example.com": ["100.64.0.1", "100.64.0.3"], "lab.example.com": ["10.1.1.1"]])
        let writes = tailnet.mutatingRequests
        #expect(writes.map(\.method) == ["PATCH"])
        #expect(writes.first?.body == #"{"corp.example.com":["100.64.0.1","100.64.0.3"]}"#)
        #expect(tailnet.nameservers == ["1.1.1.1", "100.64.0.1", "100.64.0.2"], "global list untouched")
    }

    /// Whatever read fails, and however, nothing is written.
    @Test(arguments: [
        SimulatedTailnet.Fault(.status(500), path: "/devices"),
        SimulatedTailnet.Fault(.status(503), path: "/dns/nameservers"),
        SimulatedTailnet.Fault(.malformedBody, path: "/devices"),
        SimulatedTailnet.Fault(.truncatedBody, path: "/devices"),
        SimulatedTailnet.Fault(.truncatedBody, path: "/dns/nameservers"),
        SimulatedTailnet.Fault(.dropConnection, path: "/devices"),
        SimulatedTailnet.Fault(.status(403), path: "/devices"),
    ])
    func failedReadWritesNothing(_ fault: SimulatedTailnet.Fault) async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        tailnet.inject(fault)
        await #expect(throws: TailscaleAPIError.self) { try await makeReconciler(tailnet).run(onceRequest) }
        #expect(tailnet.mutatingRequests.isEmpty)
        #expect(tailnet.nameservers == ["1.1.1.1", "100.64.0.1", "100.64.0.2"])
    }

    @Test(arguments: ["/dns/nameservers", "/devices"])
    func answerWithoutItsListIsMalformedNotEmpty(_ path: String) async throws {
        // A 200 with `{}` must never read as "no nameservers" or "no devices".
        let server = try LoopbackHTTPServer { request in
            .json(200, [String: String]())
        }
        defer { server.stop() }
        let client = TailscaleClient(baseURL: server.baseURL, tailnet: "-", credential: .apiKey("k"), retry: fastRetry, logger: quietLogger)
        let error = try #require(await #expect(throws: TailscaleAPIError.self) {
            if path == "/devices" { _ = try await client.listDevices() } else { _ = try await client.nameservers() }
        })
        guard case .malformed = error else { Issue.record("expected malformed, got \(error)"); return }
    }

    @Test func maxRemovalsIsOneAllowanceForTheWholeApply() async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        tailnet.setDevices((1...4).map { SimulatedDevices.device($0, hostname: "dns-\($0)", connected: $0 == 1) })
        tailnet.setNameservers(["100.64.0.1", "100.64.0.2", "100.64.0.3"])
        tailnet.setSplitDNS(["corp.example.com": ["100.64.0.1", "100.64.0.4"]])
        var config = Config()
        config.resolvers.splitDNS = ["corp.example.com"]
        config.safety.maxRemovals = 2
        let result = try await makeReconciler(tailnet, config: config).run(onceRequest)
        let removed = result.plan.targets.flatMap { $0.entries(.remove) }.count
        let blocked = result.plan.targets.flatMap { $0.entries(.blocked) }
        #expect(removed == 2)
        #expect(blocked.map(\.rule) == [.maxRemovals])
        #expect(tailnet.nameservers == ["100.64.0.1"])
        #expect(tailnet.splitDNS == ["corp.example.com": ["100.64.0.1", "100.64.0.4"]])
    }

    @Test func splitDomainMatchesWhateverCaseTheAPIUses() async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        tailnet.setSplitDNS(["Corp.Example.com": ["10.9.9.9", "100.64.0.2"]])
        var config = Config()
        config.resolvers.global = false
        config.resolvers.splitDNS = ["corp.example.com"]
        _ = try await makeReconciler(tailnet, config: config).run(onceRequest)
        #expect(tailnet.splitDNS == ["Corp.Example.com": ["10.9.9.9", "100.64.0.1", "100.64.0.3"]])
    }

    @Test func failedReReadBeforeTheWriteWritesNothing() async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        let reconciler = makeReconciler(tailnet)
        let (plan, _) = try await readAndPlan(reconciler)
        #expect(plan.changed)
        tailnet.inject(.init(.status(500), path: "/dns/nameservers"))
        let applier = Applier(client: reconciler.client, logger: quietLogger, dryRun: false)
        await #expect(throws: TailscaleAPIError.self) {
            try await applier.apply(plan) { _, _ in plan.targets[0] }
        }
        #expect(tailnet.mutatingRequests.isEmpty)
    }

    @Test func listChangedSinceTheReadIsPlannedAgain() async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        let reconciler = makeReconciler(tailnet)
        let (plan, inventory) = try await readAndPlan(reconciler)
        // Someone edits the list in the admin console between our read and our write.
        tailnet.setNameservers(["9.9.9.9", "100.64.0.2", "100.64.0.1"])
        let settings = Config().planSettings(mode: .sync, failureThreshold: 1)
        let applied = try await Applier(client: reconciler.client, logger: quietLogger, dryRun: false).apply(plan) { target, current in
            Planner.plan(target: target, current: current, inventory: inventory, settings: settings)
        }
        #expect(tailnet.nameservers == ["9.9.9.9", "100.64.0.1", "100.64.0.3"])
        #expect(applied.targets[0].current == ["9.9.9.9", "100.64.0.2", "100.64.0.1"])
    }

    @Test func neverEmptiesTheGlobalListOrTurnsMagicDNSOff() async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        tailnet.setDevices([SimulatedDevices.device(1, hostname: "dns-1", connected: false)])
        tailnet.setNameservers(["100.64.0.1"])
        var config = Config()
        config.safety.minResolvers = 0
        let result = try await makeReconciler(tailnet, config: config).run(onceRequest)
        #expect(result.plan.targets[0].entries(.blocked).first?.rule == .neverEmpty)
        #expect(!result.plan.changed)
        #expect(tailnet.mutatingRequests.isEmpty)
        #expect(tailnet.magicDNS)
    }

    @Test func oauthReconcileMintsOnce() async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        let credential = Credential.oauth(clientID: tailnet.oauthClientID, clientSecret: tailnet.oauthClientSecret)
        _ = try await makeReconciler(tailnet, credential: credential).run(onceRequest)
        #expect(tailnet.requests.filter { $0.path == "/api/v2/oauth/token" }.count == 1)
        #expect(tailnet.nameservers == ["1.1.1.1", "100.64.0.1", "100.64.0.3"])
    }
}
