import Foundation
import Testing
import TSDNSConfig
import TSDNSCore
import TSDNSHTTP
import TSDNSSimulator

/// `PUT /v1/sources/{name}` and `GET /v1/sources` against the real listener and loop.
@Suite("Source sets over RPC", .timeLimit(.minutes(1)))
struct SourceSetTests {
    /// The usual tailnet plus two untagged Kubernetes resolvers, 40 and 41.
    func startLoop(clock: TestDate? = nil, configure: (inout Config) -> Void = { _ in }) async throws -> LoopHarness {
        let tailnet = try makeTailnet()
        tailnet.addDevice(SimulatedDevices.device(40, hostname: "coredns-a", tags: nil))
        tailnet.addDevice(SimulatedDevices.device(41, hostname: "coredns-b", tags: nil))
        let loop = try await LoopHarness.start(tailnet: tailnet, clock: clock, configure: configure)
        try await loop.synced()
        return loop
    }

    func removal(_ plan: [String: Any], _ address: String) -> [String: Any]? {
        ((plan["targets"] as? [[String: Any]])?.first?["remove"] as? [[String: Any]])?.first { $0["address"] as? String == address }
    }

    @Test func aSetAddsItsMembersAndWithdrawsWhatItDrops() async throws {
        let loop = try await startLoop()
        let first = try await loop.putSources("kubernetes:prod", ["coredns-a", "coredns-b", "dns-1"])
        #expect(first.status == 200, "\(first.json)")
        #expect(loop.tailnet.nameservers == ["1.1.1.1", "100.64.0.1", "100.64.0.3", "100.64.0.40", "100.64.0.41"], "a 200 means written")

        let second = try await loop.putSources("kubernetes:prod", ["coredns-b"])
        #expect(second.status == 200)
        // coredns-a is withdrawn; dns-1 stays because its tag still names it.
        #expect(loop.tailnet.nameservers == ["1.1.1.1", "100.64.0.1", "100.64.0.3", "100.64.0.41"])
        #expect(removal(second.json, "100.64.0.40")?["reason"] as? String == "withdrawn by kubernetes:prod")
        #expect((second.json["text"] as? String)?.contains("withdrawn by kubernetes:prod") == true)

        // Withdrawn, not excluded: naming it again lists it again.
        _ = try await loop.putSources("kubernetes:prod", ["coredns-a", "coredns-b"])
        #expect(loop.tailnet.nameservers.contains("100.64.0.40"))
        let inventory = try await loop.request("GET", "/v1/inventory").json
        #expect((inventory["excluded"] as? [Any])?.isEmpty == true)
        try await loop.stop()
    }

    @Test func theSameSetSentAgainWritesNothing() async throws {
        let loop = try await startLoop()
        _ = try await loop.putSources("kubernetes:prod", ["coredns-a"])
        let writes = loop.tailnet.mutatingRequests.count
        for _ in 0..<3 {
            let again = try await loop.putSources("kubernetes:prod", ["coredns-a"])
            #expect(again.status == 200)
            #expect(again.json["changed"] as? Bool == false)
        }
        #expect(loop.tailnet.mutatingRequests.count == writes, "a resend is level-triggered: no writes")
        try await loop.stop()
    }

    @Test func membersNotThereYetArePendingForAsLongAsTheSetNamesThem() async throws {
        let clock = TestDate()
        let loop = try await startLoop(clock: clock) { $0.sync.pendingTTL = .seconds(60) }
        _ = try await loop.putSources("kubernetes:prod", ["coredns-later", "coredns-a"])
        let listed = try await loop.request("GET", "/v1/sources")
        #expect(listed.status == 200)
        let set = try #require((listed.json["sources"] as? [[String: Any]])?.first)
        #expect(set["name"] as? String == "kubernetes:prod")
        #expect(set["updated"] is String)
        let states = (set["resolvers"] as? [[String: Any]] ?? []).map { "\($0["node"] as? String ?? ""):\($0["state"] as? String ?? "")" }
        #expect(states == ["coredns-later:pending", "coredns-a:listed"])

        // Longer than pendingTTL later, it registers: a sync lists it, since the set still names it.
        clock.advance(by: 120)
        loop.tailnet.addDevice(SimulatedDevices.device(42, hostname: "coredns-later", tags: nil))
        _ = try await loop.request("POST", "/v1/sync")
        #expect(loop.tailnet.nameservers.contains("100.64.0.42"))
        try await loop.stop()
    }

    @Test func aNodeTwoSetsNameStaysUntilBothDropIt() async throws {
        let loop = try await startLoop()
        _ = try await loop.putSources("kubernetes:prod", ["coredns-a"])
        _ = try await loop.putSources("kubernetes:staging", ["coredns-a"])
        _ = try await loop.putSources("kubernetes:prod", [])
        #expect(loop.tailnet.nameservers.contains("100.64.0.40"), "staging still names it")
        let inventory = try await loop.request("GET", "/v1/inventory").json
        let entry = (inventory["resolvers"] as? [[String: Any]])?.first { $0["address"] as? String == "100.64.0.40" }
        #expect(entry?["sources"] as? [String] == ["kubernetes:staging/dns/coredns-a"])
        _ = try await loop.putSources("kubernetes:staging", [])
        #expect(!loop.tailnet.nameservers.contains("100.64.0.40"))
        try await loop.stop()
    }

    @Test func aWithdrawnNodeComesBackWithATag() async throws {
        let loop = try await startLoop()
        _ = try await loop.putSources("kubernetes:prod", ["coredns-a"])
        _ = try await loop.putSources("kubernetes:prod", [])
        #expect(!loop.tailnet.nameservers.contains("100.64.0.40"))
        loop.tailnet.updateDevice(nodeId: SimulatedDevices.device(40, hostname: "").nodeId) { $0.tags = ["tag:dns"] }
        _ = try await loop.request("POST", "/v1/sync")
        #expect(loop.tailnet.nameservers.contains("100.64.0.40"))
        try await loop.stop()
    }

    @Test func anOperatorsRemoveWinsOverASet() async throws {
        let loop = try await startLoop()
        _ = try await loop.putSources("kubernetes:prod", ["coredns-a"])
        let removed = try await loop.request("DELETE", "/v1/resolvers/coredns-a")
        #expect(removed.status == 200)
        _ = try await loop.putSources("kubernetes:prod", ["coredns-a"])
        #expect(!loop.tailnet.nameservers.contains("100.64.0.40"), "the resend does not undo the exclusion")
        let set = try #require((try await loop.request("GET", "/v1/sources").json["sources"] as? [[String: Any]])?.first)
        #expect((set["resolvers"] as? [[String: Any]])?.first?["state"] as? String == "excluded")
        try await loop.stop()
    }

    @Test func badSetsAre400AndWriteNothing() async throws {
        let loop = try await startLoop()
        let writes = loop.tailnet.mutatingRequests.count
        let long = String(repeating: "n", count: 300)
        let cases: [(String, String, Int, String)] = [
            ("/v1/sources/bad%20name", #"{"resolvers": []}"#, 400, "must match"),
            ("/v1/sources/\(String(repeating: "x", count: 129))", #"{"resolvers": []}"#, 400, "must match"),
            ("/v1/sources/k", #"{}"#, 400, "\"resolvers\" is required"),
            ("/v1/sources/k", #"{"resolvers": {}}"#, 400, "\"resolvers\" must be"),
            ("/v1/sources/k", #"{"resolvers": [{"nod": "x"}]}"#, 400, "unknown key"),
            ("/v1/sources/k", #"{"resolvers": [{"node": null}]}"#, 400, "must not be null"),
            ("/v1/sources/k", #"{"resolvers": [{"node": "\#(long)"}]}"#, 400, "longer than 256 bytes"),
            ("/v1/sources/k", #"{"resolvers": [{"node": "a", "source": "\#(long)"}]}"#, 400, "longer than 256 bytes"),
            ("/v1/sources/k", #"{"resolvers": [{"node": "a\u001b[31m"}]}"#, 400, "control characters"),
        ]
        for (path, body, status, message) in cases {
            let answer = try await loop.request("PUT", path, body: body)
            #expect(answer.status == status, "\(path) \(body.prefix(60))")
            #expect((answer.json["error"] as? String)?.contains(message) == true, "\(path): \(answer.json)")
        }
        #expect(try await loop.request("GET", "/v1/sources/k").status == 405)
        #expect(try await loop.request("POST", "/v1/sources").status == 405)
        #expect(loop.tailnet.mutatingRequests.count == writes)
        try await loop.stop()
    }

    @Test func theNumberOfSourceSetsIsBounded() async throws {
        let loop = try await startLoop()
        for index in 0..<256 {
            #expect(try await loop.putSources("set-\(index)", []).status == 200)
        }
        let refused = try await loop.putSources("set-256", [])
        #expect(refused.status == 503)
        #expect((refused.json["error"] as? String)?.contains("256 source sets") == true)
        #expect(try await loop.putSources("set-7", ["coredns-a"]).status == 200, "an existing name is still replaced")
        try await loop.stop()
    }

    @Test func aLargeSetIsAccepted() async throws {
        let loop = try await startLoop()
        let nodes = (0..<10_000).map { "pod-\($0).example" }
        let answer = try await loop.putSources("kubernetes:big", nodes)
        #expect(answer.status == 200, "10,000 members fit the 4 MiB limit")
        let tooMany = (0..<10_001).map { #"{"node": "p\#($0)"}"# }.joined(separator: ",")
        let refused = try await loop.request("PUT", "/v1/sources/kubernetes:big", body: #"{"resolvers": [\#(tooMany)]}"#)
        #expect(refused.status == 400)
        try await loop.stop()
    }
}

/// `state.file`: what operators and senders told the loop survives a restart.
@Suite("Loop state across restarts", .timeLimit(.minutes(1)))
struct RestartTests {
    @Test func anExclusionAPendingAddAndASourceSetSurviveARestart() async throws {
        let tailnet = try makeTailnet()
        tailnet.addDevice(SimulatedDevices.device(40, hostname: "coredns-a", tags: nil))
        let directory = try scratchDirectory()
        let stateFile = directory.appendingPathComponent("state.json").path
        let first = try await LoopHarness.start(tailnet: tailnet, directory: directory) { $0.state.file = stateFile }
        try await first.synced()
        #expect(try await first.request("DELETE", "/v1/resolvers/dns-3").status == 200)
        #expect(try await first.request("POST", "/v1/resolvers", body: #"{"node": "coredns-later"}"#).status == 202)
        #expect(try await first.putSources("kubernetes:prod", ["coredns-a"]).status == 200)
        #expect(tailnet.nameservers == ["1.1.1.1", "100.64.0.1", "100.64.0.40"])
        try await first.stop(restart: true)

        // Someone re-adds dns-3 by hand and drops coredns-a while the loop is down.
        tailnet.setNameservers(["1.1.1.1", "100.64.0.1", "100.64.0.3"])
        let second = try await LoopHarness.start(tailnet: tailnet, directory: directory) { $0.state.file = stateFile }
        try await second.synced()
        #expect(tailnet.nameservers == ["1.1.1.1", "100.64.0.1", "100.64.0.40"], "the exclusion held and the set was restored")
        let inventory = try await second.request("GET", "/v1/inventory").json
        #expect((inventory["pending"] as? [[String: Any]])?.first?["node"] as? String == "coredns-later")
        #expect((inventory["excluded"] as? [[String: Any]])?.first?["node"] as? String == "dns-3")
        // The pending add is still retried: it registers and is added.
        tailnet.addDevice(SimulatedDevices.device(43, hostname: "coredns-later", tags: nil))
        _ = try await second.request("POST", "/v1/sync")
        #expect(tailnet.nameservers.contains("100.64.0.43"))
        try await second.stop()
    }

    @Test func withoutAStateFileARestartForgets() async throws {
        let tailnet = try makeTailnet()
        let directory = try scratchDirectory()
        let first = try await LoopHarness.start(tailnet: tailnet, directory: directory)
        try await first.synced()
        #expect(try await first.request("DELETE", "/v1/resolvers/dns-3").status == 200)
        try await first.stop(restart: true)
        let second = try await LoopHarness.start(tailnet: tailnet, directory: directory)
        try await second.synced()
        #expect(tailnet.nameservers.contains("100.64.0.3"), "the control case: memory only")
        try await second.stop()
    }

    @Test func exclusionsExpireAcrossARestart() async throws {
        let tailnet = try makeTailnet()
        let directory = try scratchDirectory()
        let stateFile = directory.appendingPathComponent("state.json").path
        let clock = TestDate()
        let first = try await LoopHarness.start(tailnet: tailnet, directory: directory, clock: clock) {
            $0.state.file = stateFile
            $0.sync.exclusionTTL = .seconds(600)
        }
        try await first.synced()
        #expect(try await first.request("DELETE", "/v1/resolvers/dns-3").status == 200)
        try await first.stop(restart: true)
        clock.advance(by: 601)
        let second = try await LoopHarness.start(tailnet: tailnet, directory: directory, clock: clock) { $0.state.file = stateFile }
        try await second.synced()
        #expect(tailnet.nameservers.contains("100.64.0.3"), "the exclusion had expired")
        try await second.stop()
    }
}
