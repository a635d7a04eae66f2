import Foundation
import Testing
import TSDNSConfig
import TSDNSCore
import TSDNSHTTP
import TSDNSSimulator

@Suite("RPC API of the running loop", .timeLimit(.minutes(1)))
struct RPCTests {
    @Test func healthReadinessAndMetrics() async throws {
        let loop = try await LoopHarness.start()
        let health = try await loop.request("GET", "/healthz")
        #expect(health.status == 200)
        #expect(health.json["status"] as? String == "ok")
        try await loop.ready()
        // The start-up sync applied the pending change.
        try await eventually("the start-up sync applied") { loop.tailnet.nameservers == ["1.1.1.1", "100.64.0.1", "100.64.0.3"] }
        let metrics = try await loop.metrics()
        #expect(metricValue(metrics, #"tsdns_sync_total{result="applied"}"#) == 1)
        #expect(metricValue(metrics, #"tsdns_api_requests_total{api="tailscale",code="200"}"#) >= 3)
        #expect(metricValue(metrics, "tsdns_last_success_timestamp_seconds") > 1_700_000_000)
        #expect(metricValue(metrics, #"tsdns_resolvers{target="global",state="healthy"}"#) == 2)
        #expect(metrics.contains("tsdns_apply_duration_seconds_bucket"))
        try await loop.stop()
    }

    @Test func notReadyUntilTheTailnetCouldBeRead() async throws {
        let tailnet = try makeTailnet()
        tailnet.inject(.init(.status(500), path: "/devices"))
        let loop = try await LoopHarness.start(tailnet: tailnet)
        let first = try await loop.request("GET", "/readyz")
        #expect(first.status == 503)
        try await eventually("a failed read is reported") {
            (try await loop.request("GET", "/readyz").json["error"] as? String)?.contains("HTTP 500") == true
        }
        #expect(try await loop.request("GET", "/healthz").status == 200)
        tailnet.clearFaults()
        try await loop.ready()
        try await loop.stop()
    }

    @Test func inventoryHasTheContractShape() async throws {
        let loop = try await LoopHarness.start()
        try await loop.ready()
        let (status, inventory) = try await loop.request("GET", "/v1/inventory")
        #expect(status == 200)
        for key in ["targets", "resolvers", "pending", "excluded", "lastSync", "lastHealthcheck"] {
            #expect(inventory.keys.contains(key), "missing \(key)")
        }
        #expect(inventory["lastSync"] is String)
        let resolvers = try #require(inventory["resolvers"] as? [[String: Any]])
        #expect(resolvers.count >= 3)
        for resolver in resolvers {
            for key in ["address", "node", "nodeId", "healthy", "sources", "lastSeen"] {
                #expect(resolver.keys.contains(key), "resolver without \(key)")
            }
        }
        let dns2 = try #require(resolvers.first { $0["node"] as? String == "dns-2" })
        #expect(dns2["healthy"] as? Bool == false)
        let dns3 = try #require(resolvers.first { $0["node"] as? String == "dns-3" })
        #expect(dns3["sources"] as? [String] == ["tag:dns"])
        #expect(dns3["healthy"] as? Bool == true)
        try await loop.stop()
    }

    @Test func bearerTokenIsRequiredAndRotates() async throws {
        let loop = try await LoopHarness.start(token: "first-token")
        #expect(try await loop.request("GET", "/healthz", token: .some(nil)).status == 200, "/healthz needs no token")
        #expect(try await loop.request("GET", "/metrics", token: .some(nil)).status == 200)
        let missing = try await loop.request("GET", "/v1/inventory", token: .some(nil))
        #expect(missing.status == 401)
        #expect(missing.json["error"] is String)
        #expect(try await loop.request("GET", "/v1/inventory", token: "wrong-token").status == 401)
        #expect(try await loop.request("POST", "/v1/sync", token: "first-tokeN").status == 401)
        #expect(try await loop.request("GET", "/v1/inventory").status == 200)
        #expect(try await loop.request("GET", "/v1/nothing", token: .some(nil)).status == 401, "unknown /v1/ paths need the token too")

        try write("second-token\n", to: loop.directory.appendingPathComponent("rpc-token"))
        #expect(try await loop.request("GET", "/v1/inventory", token: "first-token").status == 401)
        #expect(try await loop.request("GET", "/v1/inventory", token: "second-token").status == 200)
        try await loop.stop()
    }

    @Test func errorsAreJSONWithTheRightStatus() async throws {
        let loop = try await LoopHarness.start()
        try await loop.ready()
        let cases: [(String, String, String?, Int, String)] = [
            ("GET", "/nowhere", nil, 404, "no such endpoint"),
            ("GET", "/v1/nowhere", nil, 404, "no such endpoint"),
            ("GET", "/v1/sync", nil, 405, "not allowed"),
            ("POST", "/healthz", nil, 405, "not allowed"),
            ("PUT", "/v1/resolvers", "{}", 405, "not allowed"),
            ("POST", "/v1/sync", "{not json", 400, "not valid JSON"),
            ("POST", "/v1/sync", "[true]", 400, "must be a JSON object"),
            ("POST", "/v1/sync", #"{"dryRun": "yes"}"#, 400, "\"dryRun\" must be true or false"),
            ("POST", "/v1/sync", #"{"dryRun": 1}"#, 400, "\"dryRun\" must be true or false"),
            ("POST", "/v1/sync", #"{"dryRun": null}"#, 400, "\"dryRun\" must not be null"),
            ("POST", "/v1/sync", #"{"dry_run": true}"#, 400, "unknown key \"dry_run\""),
            ("POST", "/v1/healthcheck", #"{"dryrun": true}"#, 400, "unknown key \"dryrun\""),
            ("POST", "/v1/resolvers", #"{"node": null}"#, 400, "\"node\" must not be null"),
            ("POST", "/v1/resolvers", #"{"source": "x"}"#, 400, "\"node\" is required"),
            ("POST", "/v1/resolvers", #"{"node": 42}"#, 400, "\"node\" must be a string"),
            ("POST", "/v1/resolvers", "", 400, "request body required"),
            ("POST", "/v1/resolvers", #""dns-1""#, 400, "must be a JSON object"),
            ("POST", "/v1/resolvers", #"{"node": "dns-1", "source": 7}"#, 400, "\"source\" must be a string"),
            ("DELETE", "/v1/resolvers/no-such-node", nil, 404, "no node"),
            ("POST", "/v1/sync", #"{"dryRun": true, "pad": "\#(String(repeating: "x", count: 70_000))"}"#, 413, "over 65536 bytes"),
        ]
        for (method, path, body, status, message) in cases {
            let answer = try await loop.request(method, path, body: body)
            #expect(answer.status == status, "\(method) \(path) \(body?.prefix(40) ?? "")")
            #expect((answer.json["error"] as? String)?.contains(message) == true, "\(method) \(path): \(answer.json)")
        }
        #expect(loop.tailnet.mutatingRequests.count == 1, "only the start-up sync wrote")
        try await loop.stop()
    }

    @Test func syncAndHealthcheckReturnThePlan() async throws {
        let loop = try await LoopHarness.start()
        try await loop.ready()
        loop.tailnet.updateDevice(nodeId: SimulatedDevices.device(1, hostname: "").nodeId) { $0.connectedToControl = false }
        loop.tailnet.addDevice(SimulatedDevices.device(4, hostname: "dns-4"))

        let preview = try await loop.request("POST", "/v1/sync", body: #"{"dryRun": true}"#)
        #expect(preview.status == 200)
        #expect(preview.json["changed"] as? Bool == true)
        #expect(preview.json["dryRun"] as? Bool == true)
        let previewCheck = try await loop.request("POST", "/v1/healthcheck", body: #"{"dryRun": true}"#)
        #expect(previewCheck.status == 200)
        #expect(previewCheck.json["mode"] as? String == "healthcheck")
        #expect(loop.tailnet.nameservers == ["1.1.1.1", "100.64.0.1", "100.64.0.3"], "a dry run writes nothing")

        // A healthcheck removes the dead resolver and never adds the new one.
        let check = try await loop.request("POST", "/v1/healthcheck")
        #expect(check.status == 200)
        let target = try #require((check.json["targets"] as? [[String: Any]])?.first)
        #expect((target["add"] as? [Any])?.isEmpty == true)
        #expect(loop.tailnet.nameservers == ["1.1.1.1", "100.64.0.3"])

        let sync = try await loop.request("POST", "/v1/sync", body: "{}")
        #expect(sync.status == 200)
        #expect((sync.json["text"] as? String)?.contains("+ 100.64.0.4") == true)
        #expect(loop.tailnet.nameservers == ["1.1.1.1", "100.64.0.3", "100.64.0.4"], "a 200 means the write has completed")
        try await loop.stop()
    }

    @Test func concurrentSyncsAreSerializedAndCoalesced() async throws {
        let loop = try await LoopHarness.start()
        try await loop.ready()
        let runsBefore = metricValue(try await loop.metrics(), #"tsdns_sync_total{result="noop"}"#)
            + metricValue(try await loop.metrics(), #"tsdns_sync_total{result="applied"}"#)
        loop.tailnet.addDevice(SimulatedDevices.device(4, hostname: "dns-4"))
        loop.tailnet.inject(.init(.delay(.milliseconds(300)), method: "POST"))
        let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<50 { group.addTask { try await loop.request("POST", "/v1/sync").status } }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(statuses.allSatisfy { $0 == 200 })
        #expect(loop.tailnet.mostConcurrentWrites == 1)
        let metrics = try await loop.metrics()
        let runs = metricValue(metrics, #"tsdns_sync_total{result="noop"}"#) + metricValue(metrics, #"tsdns_sync_total{result="applied"}"#) - runsBefore
        // Usually 2 runs (one, then one follow-up for everything that came during it); a
        // request that a loaded machine sends late may cost a few more, never one each.
        #expect(runs >= 1 && runs <= 5, "50 triggers, \(runs) runs")
        #expect(metricValue(metrics, #"tsdns_sync_total{result="applied"}"#) == 2, "the start-up sync and one apply")
        #expect(loop.tailnet.mutatingRequests.count == 2, "start-up sync + one apply")
        #expect(loop.tailnet.nameservers.last == "100.64.0.4")
        try await loop.stop()
    }

    @Test func addByEveryKindOfName() async throws {
        let loop = try await LoopHarness.start()
        try await loop.ready()
        let untagged = (60...63).map { SimulatedDevices.device($0, hostname: "k8s-\($0)", tags: nil) }
        for device in untagged { loop.tailnet.addDevice(device) }
        for (device, name) in zip(untagged, ["100.64.0.60", "k8s-61", "k8s-62.\(SimulatedDevices.domain)", untagged[3].nodeId]) {
            let answer = try await loop.request("POST", "/v1/resolvers", body: #"{"node": "\#(name)", "source": "kubernetes:prod/dns/\#(device.hostname)"}"#)
            #expect(answer.status == 200, "\(name): \(answer.json)")
            #expect(loop.tailnet.nameservers.contains(device.addresses[0]), "\(name) written before the 200")
        }
        let inventory = try await loop.request("GET", "/v1/inventory").json
        let k8s = (inventory["resolvers"] as? [[String: Any]] ?? []).first { $0["node"] as? String == "k8s-61" }
        #expect(k8s?["sources"] as? [String] == ["kubernetes:prod/dns/k8s-61"])
        try await loop.stop()
    }

    @Test func pendingThenHealthyThenAdded() async throws {
        let loop = try await LoopHarness.start()
        try await loop.ready()
        let pending = try await loop.request("POST", "/v1/resolvers", body: #"{"node": "coredns-new"}"#)
        #expect(pending.status == 202)
        #expect(pending.json["status"] as? String == "pending")
        let listed = try await loop.request("GET", "/v1/inventory").json["pending"] as? [[String: Any]]
        #expect(listed?.first?["node"] as? String == "coredns-new")

        // It registers, not yet connected: still pending after a run.
        var device = SimulatedDevices.device(70, hostname: "coredns-new", tags: nil, connected: false)
        loop.tailnet.addDevice(device)
        _ = try await loop.request("POST", "/v1/healthcheck")
        #expect(!loop.tailnet.nameservers.contains("100.64.0.70"))
        // It connects: the next run promotes it, and a sync adds it.
        device.connectedToControl = true
        loop.tailnet.updateDevice(nodeId: device.nodeId) { $0.connectedToControl = true }
        _ = try await loop.request("POST", "/v1/healthcheck")
        try await eventually("the pending node is added") { loop.tailnet.nameservers.contains("100.64.0.70") }
        let after = try await loop.request("GET", "/v1/inventory").json
        #expect((after["pending"] as? [Any])?.isEmpty == true)
        try await loop.stop()
    }

    @Test func pendingExpiresAfterItsTTL() async throws {
        let loop = try await LoopHarness.start { $0.sync.pendingTTL = .milliseconds(300) }
        try await loop.ready()
        #expect(try await loop.request("POST", "/v1/resolvers", body: #"{"node": "never-comes"}"#).status == 202)
        try await eventually("the pending add expires") {
            _ = try await loop.request("POST", "/v1/healthcheck")
            return (try await loop.request("GET", "/v1/inventory").json["pending"] as? [Any])?.isEmpty == true
        }
        try await loop.stop()
    }

    @Test func ambiguousHostnameIs409UnlessOneIsHealthy() async throws {
        let loop = try await LoopHarness.start()
        try await loop.ready()
        loop.tailnet.addDevice(SimulatedDevices.device(80, hostname: "dup", tags: nil))
        loop.tailnet.addDevice(SimulatedDevices.device(81, hostname: "dup", tags: nil))
        let conflict = try await loop.request("POST", "/v1/resolvers", body: #"{"node": "dup"}"#)
        #expect(conflict.status == 409)
        let message = conflict.json["error"] as? String ?? ""
        #expect(message.contains(SimulatedDevices.device(80, hostname: "dup").nodeId) && message.contains(SimulatedDevices.device(81, hostname: "dup").nodeId))
        loop.tailnet.updateDevice(nodeId: SimulatedDevices.device(80, hostname: "").nodeId) { $0.connectedToControl = false }
        let resolved = try await loop.request("POST", "/v1/resolvers", body: #"{"node": "dup"}"#)
        #expect(resolved.status == 200)
        #expect(loop.tailnet.nameservers.contains("100.64.0.81"))
        try await loop.stop()
    }

    @Test func removeExcludesUntilReaddedOrExpired() async throws {
        let clock = TestDate()
        let loop = try await LoopHarness.start(clock: clock) { $0.sync.exclusionTTL = .seconds(600) }
        try await loop.ready()
        try await eventually("the start-up sync applied") { loop.tailnet.nameservers.contains("100.64.0.3") }
        let removed = try await loop.request("DELETE", "/v1/resolvers/dns-3")
        #expect(removed.status == 200)
        #expect(!loop.tailnet.nameservers.contains("100.64.0.3"))
        let excluded = try await loop.request("GET", "/v1/inventory").json["excluded"] as? [[String: Any]]
        #expect(excluded?.first?["node"] as? String == "dns-3")
        // The exclusion holds across syncs...
        _ = try await loop.request("POST", "/v1/sync")
        #expect(!loop.tailnet.nameservers.contains("100.64.0.3"))
        // ...and ends with its TTL.
        clock.advance(by: 601)
        _ = try await loop.request("POST", "/v1/sync")
        #expect(loop.tailnet.nameservers.contains("100.64.0.3"), "the exclusion expired and the sync re-added it")
        // Removed again, then added again by RPC at once.
        #expect(try await loop.request("DELETE", "/v1/resolvers/100.64.0.3").status == 200)
        #expect(try await loop.request("POST", "/v1/resolvers", body: #"{"node": "dns-3"}"#).status == 200)
        #expect(loop.tailnet.nameservers.contains("100.64.0.3"))
        try await loop.stop()
    }

    @Test func outageLeavesItServingAndItRecoversByItself() async throws {
        let loop = try await LoopHarness.start { $0.healthcheck.interval = .milliseconds(200) }
        try await loop.ready()
        try await eventually("the start-up sync applied") { loop.tailnet.nameservers == ["1.1.1.1", "100.64.0.1", "100.64.0.3"] }
        let writesBefore = loop.tailnet.mutatingRequests.count
        loop.tailnet.inject(.init(.status(503), path: "/devices"))
        loop.tailnet.updateDevice(nodeId: SimulatedDevices.device(1, hostname: "").nodeId) { $0.connectedToControl = false }
        try await eventually("several runs fail") {
            metricValue(try await loop.metrics(), #"tsdns_healthcheck_total{result="error"}"#) >= 3
        }
        #expect(try await loop.request("GET", "/healthz").status == 200)
        #expect(try await loop.request("POST", "/v1/sync").status == 503)
        #expect(loop.tailnet.mutatingRequests.count == writesBefore, "no write during the outage")
        loop.tailnet.clearFaults()
        try await eventually("the loop applies by itself after the outage", limit: .seconds(5)) {
            loop.tailnet.nameservers == ["1.1.1.1", "100.64.0.3"]
        }
        #expect(loop.tailnet.mutatingRequests.count == writesBefore + 1)
        try await loop.stop()
    }

    @Test func rejectedCredentialKeepsServingAndIsNotReady() async throws {
        let tailnet = try makeTailnet()
        tailnet.inject(.init(.status(401), path: "/devices"))
        let loop = try await LoopHarness.start(tailnet: tailnet)
        try await eventually("the rejection is visible in /readyz") {
            let answer = try await loop.request("GET", "/readyz")
            return answer.status == 503 && (answer.json["error"] as? String)?.contains("HTTP 401") == true
        }
        #expect(try await loop.request("GET", "/healthz").status == 200)
        #expect(metricValue(try await loop.metrics(), #"tsdns_sync_total{result="error"}"#) >= 1)
        #expect(tailnet.mutatingRequests.isEmpty)
        try await loop.stop()
    }

    @Test func exclusionEndsWhenTheNodeLeavesTheTailnet() async throws {
        let loop = try await LoopHarness.start()
        try await loop.ready()
        #expect(try await loop.request("DELETE", "/v1/resolvers/dns-3").status == 200)
        loop.tailnet.removeDevice(nodeId: SimulatedDevices.device(3, hostname: "").nodeId)
        _ = try await loop.request("POST", "/v1/sync")
        // It comes back as a new registration under the same name and address.
        loop.tailnet.addDevice(SimulatedDevices.device(3, hostname: "dns-3"))
        _ = try await loop.request("POST", "/v1/sync")
        #expect(loop.tailnet.nameservers.contains("100.64.0.3"))
        #expect((try await loop.request("GET", "/v1/inventory").json["excluded"] as? [Any])?.isEmpty == true)
        try await loop.stop()
    }

    @Test func removingUnderAnotherNameDropsAPendingAdd() async throws {
        let loop = try await LoopHarness.start()
        try await loop.ready()
        var device = SimulatedDevices.device(90, hostname: "coredns-late", tags: nil, connected: false)
        loop.tailnet.addDevice(device)
        #expect(try await loop.request("POST", "/v1/resolvers", body: #"{"node": "coredns-late"}"#).status == 202)
        #expect(try await loop.request("DELETE", "/v1/resolvers/100.64.0.90").status == 200)
        device.connectedToControl = true
        loop.tailnet.updateDevice(nodeId: device.nodeId) { $0.connectedToControl = true }
        _ = try await loop.request("POST", "/v1/sync")
        #expect(!loop.tailnet.nameservers.contains("100.64.0.90"), "the operator's remove wins over the older add")
        try await loop.stop()
    }

    @Test func addsAndRemovesDoNotCountAsHealthChecks() async throws {
        let loop = try await LoopHarness.start { $0.healthcheck.failureThreshold = 2 }
        try await loop.ready()
        try await eventually("the start-up sync applied") { loop.tailnet.nameservers.contains("100.64.0.3") }
        loop.tailnet.updateDevice(nodeId: SimulatedDevices.device(3, hostname: "").nodeId) { $0.connectedToControl = false }
        _ = try await loop.request("POST", "/v1/healthcheck")
        for n in 60...62 {
            loop.tailnet.addDevice(SimulatedDevices.device(n, hostname: "svc-\(n)", tags: nil))
            #expect(try await loop.request("POST", "/v1/resolvers", body: #"{"node": "svc-\#(n)"}"#).status == 200)
        }
        #expect(loop.tailnet.nameservers.contains("100.64.0.3"), "one failed check of two, however many adds ran")
        _ = try await loop.request("POST", "/v1/healthcheck")
        #expect(!loop.tailnet.nameservers.contains("100.64.0.3"))
        try await loop.stop()
    }

    @Test func aHealthyCheckResetsTheCount() async throws {
        let loop = try await LoopHarness.start { $0.healthcheck.failureThreshold = 2 }
        try await loop.ready()
        try await eventually("the start-up sync applied") { loop.tailnet.nameservers.contains("100.64.0.3") }
        let id = SimulatedDevices.device(3, hostname: "").nodeId
        loop.tailnet.updateDevice(nodeId: id) { $0.connectedToControl = false }
        _ = try await loop.request("POST", "/v1/healthcheck")
        loop.tailnet.updateDevice(nodeId: id) { $0.connectedToControl = true }
        _ = try await loop.request("POST", "/v1/healthcheck")
        loop.tailnet.updateDevice(nodeId: id) { $0.connectedToControl = false }
        _ = try await loop.request("POST", "/v1/healthcheck")
        #expect(loop.tailnet.nameservers.contains("100.64.0.3"), "failed, healthy, failed: not two in a row")
        _ = try await loop.request("POST", "/v1/healthcheck")
        #expect(!loop.tailnet.nameservers.contains("100.64.0.3"))
        try await loop.stop()
    }

    @Test func outageEndNoticedWithinFiveSecondsWithShippedTiming() async throws {
        let loop = try await LoopHarness.start(productionTiming: true) { $0.healthcheck.interval = .seconds(1) }
        try await loop.ready()
        try await eventually("the start-up sync applied") { loop.tailnet.nameservers == ["1.1.1.1", "100.64.0.1", "100.64.0.3"] }
        loop.tailnet.inject(.init(.status(503), path: "/devices"))
        loop.tailnet.updateDevice(nodeId: SimulatedDevices.device(1, hostname: "").nodeId) { $0.connectedToControl = false }
        try await eventually("a run fails", limit: .seconds(15)) {
            metricValue(try await loop.metrics(), #"tsdns_healthcheck_total{result="error"}"#) >= 1
        }
        let healed = ContinuousClock.now
        loop.tailnet.clearFaults()
        try await eventually("the loop applies after the outage", limit: .seconds(10)) {
            loop.tailnet.nameservers == ["1.1.1.1", "100.64.0.3"]
        }
        #expect(ContinuousClock.now - healed < .seconds(5))
        try await loop.stop()
    }

    @Test func failureThresholdCountsConsecutiveChecks() async throws {
        let loop = try await LoopHarness.start { $0.healthcheck.failureThreshold = 3 }
        try await loop.ready()
        try await eventually("the start-up sync applied") { loop.tailnet.nameservers.contains("100.64.0.3") }
        loop.tailnet.updateDevice(nodeId: SimulatedDevices.device(3, hostname: "").nodeId) { $0.connectedToControl = false }
        _ = try await loop.request("POST", "/v1/healthcheck")
        _ = try await loop.request("POST", "/v1/healthcheck")
        #expect(loop.tailnet.nameservers.contains("100.64.0.3"), "two failed checks of three")
        _ = try await loop.request("POST", "/v1/healthcheck")
        #expect(!loop.tailnet.nameservers.contains("100.64.0.3"), "the third removes it")
        try await loop.stop()
    }
}
