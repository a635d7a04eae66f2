import Foundation
import Testing
import TSDNSConfig
import TSDNSCore
import TSDNSHTTP
import TSDNSSimulator

/// What an outside-in probe of the listener found, each as a test of the fix.
@Suite("RPC hardening", .timeLimit(.minutes(1)))
struct RPCHardeningTests {
    @Test func aBrowserCannotDriveATokenlessListener() async throws {
        let loop = try await LoopHarness.start { $0.rpc.allowedHosts = ["dnsmon.example.ts.net"] }
        try await loop.synced()
        let writes = loop.tailnet.mutatingRequests.count
        // CSRF: a page's form post carries an Origin.
        let csrf = try await loop.request("POST", "/v1/resolvers", body: #"{"node":"dns-3"}"#, headers: [HTTPHeader("Origin", "http://evil.example")])
        #expect(csrf.status == 403)
        #expect((csrf.json["error"] as? String)?.contains("Origin") == true)
        // DNS rebinding: the page's name resolves to 127.0.0.1.
        let rebound = try await loop.request("GET", "/v1/inventory", headers: [HTTPHeader("Host", "rebind.evil.example:8053")])
        #expect(rebound.status == 403)
        #expect(try await loop.request("GET", "/v1/inventory", headers: [HTTPHeader("Host", "localhost:8053")]).status == 200)
        #expect(try await loop.request("GET", "/v1/inventory", headers: [HTTPHeader("Host", "[::1]:8053")]).status == 200)
        #expect(try await loop.request("GET", "/v1/inventory", headers: [HTTPHeader("Host", "DNSmon.example.ts.net")]).status == 200, "rpc.allowedHosts")
        #expect(try await loop.request("GET", "/healthz", headers: [HTTPHeader("Host", "rebind.evil.example")]).status == 200, "probes are not /v1/")
        #expect(loop.tailnet.mutatingRequests.count == writes)
        try await loop.stop()
    }

    @Test func withATokenOriginAndHostAreTheTokensBusiness() async throws {
        let loop = try await LoopHarness.start(token: "t0ken")
        try await loop.synced()
        let answer = try await loop.request("GET", "/v1/inventory", headers: [HTTPHeader("Origin", "https://ops.example"), HTTPHeader("Host", "dnsmon.example.ts.net")])
        #expect(answer.status == 200)
        try await loop.stop()
    }

    @Test func bodiesMustBeDeclaredJSON() async throws {
        let loop = try await LoopHarness.start()
        try await loop.synced()
        let plain = try await loop.request("POST", "/v1/resolvers", body: #"{"node":"dns-3"}"#, headers: [HTTPHeader("Content-Type", "text/plain")])
        #expect(plain.status == 415)
        let form = try await loop.request("PUT", "/v1/sources/k", body: #"{"resolvers":[]}"#, headers: [HTTPHeader("Content-Type", "application/x-www-form-urlencoded")])
        #expect(form.status == 415)
        let parameters = try await loop.request("POST", "/v1/sync", body: #"{"dryRun":true}"#, headers: [HTTPHeader("Content-Type", "application/json; charset=utf-8")])
        #expect(parameters.status == 200)
        #expect(try await loop.request("POST", "/v1/sync").status == 200, "an empty body needs no Content-Type")
        try await loop.stop()
    }

    @Test func nodeSourceAndPendingAreBounded() async throws {
        let loop = try await LoopHarness.start(maxPending: 3)
        try await loop.synced()
        let long = String(repeating: "x", count: 60_000)
        #expect(try await loop.request("POST", "/v1/resolvers", body: #"{"node":"\#(long)"}"#).status == 400)
        #expect(try await loop.request("POST", "/v1/resolvers", body: #"{"node":"dns-x","source":"\#(long)"}"#).status == 400)
        #expect(try await loop.request("DELETE", "/v1/resolvers/\(String(repeating: "y", count: 300))").status == 400)
        for index in 0..<3 {
            #expect(try await loop.request("POST", "/v1/resolvers", body: #"{"node":"later-\#(index)"}"#).status == 202)
        }
        let full = try await loop.request("POST", "/v1/resolvers", body: #"{"node":"later-3"}"#)
        #expect(full.status == 503)
        #expect((full.json["error"] as? String)?.contains("pending") == true)
        #expect(try await loop.request("POST", "/v1/resolvers", body: #"{"node":"later-0"}"#).status == 202, "re-adding one that waits is no new entry")
        #expect(try await loop.request("POST", "/v1/resolvers", body: #"{"node":"dns-3"}"#).status == 200, "a healthy node is not pending")
        try await loop.stop()
    }

    @Test func headOnProbesAndReadinessSaysWhy() async throws {
        let tailnet = try makeTailnet()
        tailnet.inject(.init(.status(503), path: "/devices"))
        let loop = try await LoopHarness.start(tailnet: tailnet)
        #expect(try await loop.request("HEAD", "/healthz").status == 200)
        let notReady = try await loop.request("GET", "/readyz")
        #expect(notReady.status == 503)
        #expect(notReady.json["error"] is String, "not ready says why")
        tailnet.clearFaults()
        try await loop.ready()
        try await loop.stop()
    }

    @Test func aRejectedCredentialIsUnavailableNotAServerError() async throws {
        let loop = try await LoopHarness.start()
        try await loop.synced()
        loop.tailnet.inject(.init(.status(401)))
        let sync = try await loop.request("POST", "/v1/sync")
        #expect(sync.status == 503, "\(sync.json)")
        #expect((sync.json["error"] as? String)?.contains("401") == true)
        loop.tailnet.clearFaults()
        try await loop.stop()
    }

    @Test func everyFixedSeriesIsExportedFromTheStart() async throws {
        let tailnet = try makeTailnet()
        tailnet.inject(.init(.delay(.seconds(20)), path: "/devices"))
        let loop = try await LoopHarness.start(tailnet: tailnet)
        let metrics = try await loop.metrics()
        for result in ["noop", "applied", "error", "blocked"] {
            #expect(metrics.contains(#"tsdns_sync_total{result="\#(result)"} 0"#), "sync \(result)")
            #expect(metrics.contains(#"tsdns_healthcheck_total{result="\#(result)"} 0"#), "healthcheck \(result)")
        }
        for state in ["healthy", "unhealthy", "pending", "excluded"] {
            #expect(metrics.contains(#"tsdns_resolvers{target="global",state="\#(state)"} 0"#), "\(state)")
        }
        #expect(metrics.contains("tsdns_last_success_timestamp_seconds 0"))
        tailnet.clearFaults()
        try await loop.stop()
    }
}
