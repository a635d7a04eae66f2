import Foundation
import Testing
import TSDNSConfig
import TSDNSCore
import TSDNSHTTP
import TSDNSSimulator
import TSDNSRuntime
import TSDNSTailscale

@Suite("Tailscale client against the simulated tailnet", .timeLimit(.minutes(1)))
struct TailscaleClientTests {
    @Test func readsDevicesAndLists() async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        tailnet.setSplitDNS(["corp.example.com": ["100.64.0.1"]])
        let client = makeClient(tailnet)
        let devices = try await client.listDevices()
        #expect(devices == tailnet.devices)
        #expect(try await client.nameservers() == ["1.1.1.1", "100.64.0.1", "100.64.0.2"])
        #expect(try await client.splitDNS() == ["corp.example.com": ["100.64.0.1"]])
        #expect(tailnet.requests.map(\.path) == [
            "/api/v2/tailnet/-/devices", "/api/v2/tailnet/-/dns/nameservers", "/api/v2/tailnet/-/dns/split-dns",
        ])
    }

    @Test func namedTailnetAndUnknownTailnet() async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        #expect(try await makeClient(tailnet, tailnetName: "example.com").nameservers().count == 3)
        await #expect(throws: TailscaleAPIError.permanent(status: 404, message: "GET /api/v2/tailnet/other.com/dns/nameservers: tailnet not found")) {
            try await makeClient(tailnet, tailnetName: "other.com").nameservers()
        }
    }

    @Test func writesGlobalAndSplitDNS() async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        tailnet.setSplitDNS(["other.example.com": ["10.0.0.53"], "corp.example.com": ["100.64.0.1"]])
        let client = makeClient(tailnet)
        #expect(try await client.setNameservers(["1.1.1.1", "100.64.0.3"]) == ["1.1.1.1", "100.64.0.3"])
        try await client.updateSplitDNS(["corp.example.com": ["100.64.0.3"]])
        #expect(tailnet.splitDNS == ["other.example.com": ["10.0.0.53"], "corp.example.com": ["100.64.0.3"]])
        #expect(tailnet.requests.last?.body == #"{"corp.example.com":["100.64.0.3"]}"#, "the PATCH names only the managed domain")
        try await client.updateSplitDNS(["corp.example.com": []])
        #expect(tailnet.splitDNS == ["other.example.com": ["10.0.0.53"]])
        #expect(tailnet.requests.last?.body == #"{"corp.example.com":null}"#)
    }

    @Test(arguments: [
        SimulatedTailnet.Fault.Kind.status(503), .status(500), .status(502), .status(429, retryAfter: "0"),
        .dropConnection, .truncatedBody,
    ])
    func transientFailureIsRetriedThenSucceeds(_ fault: SimulatedTailnet.Fault.Kind) async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        tailnet.inject(.init(fault, path: "/devices", times: 2))
        let devices = try await makeClient(tailnet).listDevices()
        #expect(devices.count == 4)
        #expect(tailnet.requests.count == 3)
    }

    @Test func retryAfterIsHonoured() async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        tailnet.inject(.init(.status(429, retryAfter: "1"), times: 1))
        let clock = ContinuousClock()
        let start = clock.now
        _ = try await makeClient(tailnet).nameservers()
        // The fast policy alone would wait at most 20 ms.
        #expect(clock.now - start >= .milliseconds(900))
    }

    @Test func persistentFailureGivesUpAsTransient() async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        tailnet.inject(.init(.status(500)))
        // A budget no busy test machine runs out of: the attempts, not the time, must end it.
        let retry = RetryPolicy(maxAttempts: fastRetry.maxAttempts, baseDelay: fastRetry.baseDelay, maxDelay: fastRetry.maxDelay, budget: .seconds(120))
        let error = try #require(await #expect(throws: TailscaleAPIError.self) { try await makeClient(tailnet, retry: retry).listDevices() })
        guard case .transient(let message) = error else { Issue.record("expected transient, got \(error)"); return }
        #expect(message.contains("HTTP 500"))
        #expect(message.contains("gave up after 4 attempts"))
        #expect(tailnet.requests.count == fastRetry.maxAttempts)
    }

    @Test(arguments: [400, 401, 403, 404])
    func permanentFailureFailsAtOnceWithTheMessage(_ status: Int) async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        tailnet.inject(.init(.status(status)))
        await #expect(throws: TailscaleAPIError.permanent(status: status, message: "GET /api/v2/tailnet/-/devices: simulated failure (HTTP \(status))")) {
            try await makeClient(tailnet).listDevices()
        }
        #expect(tailnet.requests.count == 1)
    }

    @Test func wrongAPIKeyIsRejected() async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        let error = try #require(await #expect(throws: TailscaleAPIError.self) { try await makeClient(tailnet, credential: .apiKey("tskey-api-wrong")).listDevices() })
        #expect(error.isCredentialRejected)
        #expect(error.description.contains("API token invalid"))
        #expect(!error.description.contains("tskey-api-wrong"), "secrets never appear in errors")
    }

    @Test func malformedBodyIsAnError() async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        tailnet.inject(.init(.malformedBody))
        let error = try #require(await #expect(throws: TailscaleAPIError.self) { try await makeClient(tailnet).listDevices() })
        guard case .malformed(let message) = error else { Issue.record("expected malformed, got \(error)"); return }
        #expect(message.hasPrefix("GET /api/v2/tailnet/-/devices"))
    }

    @Test func connectionRefusedIsTransient() async throws {
        // Port 1: nothing listens there (a stopped simulator's port may be reused by another test).
        let client = TailscaleClient(baseURL: "http://127.0.0.1:1", tailnet: "-", credential: .apiKey("k"), retry: fastRetry, logger: quietLogger)
        let error = try #require(await #expect(throws: TailscaleAPIError.self) { try await client.listDevices() })
        guard case .transient(let message) = error else { Issue.record("expected transient, got \(error)"); return }
        #expect(message.contains("gave up after 4 attempts"))
    }

    // MARK: OAuth

    @Test func oauthMintsOnceAndReuses() async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        let client = makeClient(tailnet, credential: .oauth(clientID: tailnet.oauthClientID, clientSecret: tailnet.oauthClientSecret))
        _ = try await client.listDevices()
        _ = try await client.nameservers()
        _ = try await client.splitDNS()
        #expect(tailnet.requests.filter { $0.path == "/api/v2/oauth/token" }.count == 1)
        let form = try #require(tailnet.requests.first { $0.path == "/api/v2/oauth/token" }?.body)
        #expect(form.contains("client_id=\(tailnet.oauthClientID)"))
        #expect(form.contains("grant_type=client_credentials"))
    }

    @Test func oauthRemintsOnceOn401() async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        let client = makeClient(tailnet, credential: .oauth(clientID: tailnet.oauthClientID, clientSecret: tailnet.oauthClientSecret))
        _ = try await client.listDevices()
        tailnet.revokeTokens()
        _ = try await client.listDevices()
        let paths = tailnet.requests.map { "\($0.path) \($0.status ?? 0)" }
        #expect(paths == [
            "/api/v2/oauth/token 200", "/api/v2/tailnet/-/devices 200",
            "/api/v2/tailnet/-/devices 401", "/api/v2/oauth/token 200", "/api/v2/tailnet/-/devices 200",
        ])
    }

    @Test func oauthPersistent401IsNotALoop() async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        let client = makeClient(tailnet, credential: .oauth(clientID: tailnet.oauthClientID, clientSecret: tailnet.oauthClientSecret))
        tailnet.inject(.init(.status(401), path: "/devices"))
        await #expect(throws: TailscaleAPIError.self) { try await client.listDevices() }
        #expect(tailnet.requests.filter { $0.path.hasSuffix("/devices") }.count == 2, "one re-mint, then give up")
    }

    @Test func wrongOAuthSecretIsPermanent() async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        let client = makeClient(tailnet, credential: .oauth(clientID: tailnet.oauthClientID, clientSecret: "wrong"))
        let error = try #require(await #expect(throws: TailscaleAPIError.self) { try await client.listDevices() })
        #expect(error == .permanent(status: 401, message: "POST /api/v2/oauth/token: invalid client credentials"))
    }
}

@Suite("Connection reuse", .timeLimit(.minutes(1)))
struct ConnectionReuseTests {
    func client(_ tailnet: SimulatedTailnet, reuse: Bool) -> TailscaleClient {
        TailscaleClient(
            baseURL: tailnet.baseURL, tailnet: "-", credential: .apiKey(tailnet.apiKey),
            http: HTTPClient(options: HTTPClientOptions(connectTimeout: .seconds(2), totalTimeout: .seconds(5), reuseConnections: reuse)),
            retry: fastRetry, logger: quietLogger
        )
    }

    /// A run reads the devices and the list at once, so reuse keeps at most two connections
    /// however many runs follow; without reuse every request opens one.
    @Test(arguments: [true, false])
    func idleRunsReuseTheConnectionsOfTheFirstOne(_ reuse: Bool) async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        let reconciler = Reconciler(client: client(tailnet, reuse: reuse), config: Config(), tailnet: "-", logger: quietLogger)
        _ = try await reconciler.run(onceRequest)
        tailnet.clearLog()
        let before = tailnet.acceptedConnections
        for _ in 0..<5 {
            let idle = try await reconciler.run(onceRequest)
            #expect(!idle.plan.changed)
        }
        #expect(tailnet.requests.count == 10)
        if reuse {
            #expect(tailnet.acceptedConnections <= 2)
        } else {
            #expect(tailnet.acceptedConnections - before == 10)
        }
    }

    @Test func aConnectionThatFailedIsNotUsedAgain() async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        let client = client(tailnet, reuse: true)
        _ = try await client.nameservers()
        #expect(tailnet.acceptedConnections == 1)
        // The server drops the connection mid-request: the retry connects anew...
        tailnet.inject(.init(.dropConnection, path: "/dns/nameservers", times: 1))
        _ = try await client.nameservers()
        #expect(tailnet.acceptedConnections == 2)
        // ...and that new connection is the one kept.
        _ = try await client.nameservers()
        _ = try await client.nameservers()
        #expect(tailnet.acceptedConnections == 2)
    }
}
