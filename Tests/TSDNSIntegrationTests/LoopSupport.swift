import Foundation
import Synchronization
import Testing
import TSDNSConfig
import TSDNSCore
import TSDNSHTTP
import TSDNSRuntime
import TSDNSServer
import TSDNSSimulator
import TSDNSTailscale

/// The long-running loop in-process: a Daemon against a simulated tailnet, its RPC listener
/// on 127.0.0.1:0. Timers are an hour apart unless a test asks otherwise, so only the
/// start-up sync and the test's own requests run.
struct LoopHarness {
    let tailnet: SimulatedTailnet
    let daemon: Daemon
    let running: Task<Void, Error>
    let baseURL: String
    let token: String?
    let directory: URL

    /// `productionTiming` uses the retry policy and backoff the program ships with.
    static func start(
        tailnet: SimulatedTailnet? = nil, token: String? = nil, productionTiming: Bool = false,
        directory: URL? = nil, maxPending: Int = 10_000, clock: TestDate? = nil,
        probes: ProbeEndpoint? = nil, configure: (inout Config) -> Void = { _ in }
    ) async throws -> LoopHarness {
        let tailnet = try tailnet ?? makeTailnet()
        let directory = try directory ?? scratchDirectory()
        var config = Config()
        config.healthcheck.interval = .seconds(3600)
        config.sync.interval = .seconds(3600)
        config.rpc.listen = "127.0.0.1:0"
        if let token {
            let file = directory.appendingPathComponent("rpc-token")
            try write(token + "\n", to: file)
            config.rpc.tokenFile = file.path
        }
        configure(&config)
        let now: @Sendable () -> Date
        if let clock { now = { clock.now } } else { now = { Date() } }
        let daemon = try Daemon(
            config: config, tailnet: "-", apiURL: tailnet.baseURL, credential: .apiKey(tailnet.apiKey),
            logger: quietLogger, signals: false, retry: productionTiming ? RetryPolicy() : fastRetry,
            minimumGap: .milliseconds(50), maxRetryDelay: productionTiming ? .seconds(3) : .milliseconds(200),
            maxPending: maxPending, now: now, probeEndpoint: probes?.map
        )
        let running = Task { try await daemon.run() }
        guard let port = await daemon.port() else { throw HarnessError.noListener }
        return LoopHarness(tailnet: tailnet, daemon: daemon, running: running, baseURL: "http://127.0.0.1:\(port)", token: token, directory: directory)
    }

    /// Stops the loop; `restart` keeps the tailnet and the directory for a loop started next.
    func stop(restart: Bool = false) async throws {
        await daemon.shutdown()
        try await running.value
        guard !restart else { return }
        tailnet.stop()
        try? FileManager.default.removeItem(at: directory)
    }

    /// One raw request; `token` defaults to the harness's. A body is sent as JSON unless
    /// `headers` names a Content-Type.
    func request(
        _ method: String, _ path: String, body: String? = nil, token: String?? = .none, headers extra: [HTTPHeader] = []
    ) async throws -> (status: Int, json: [String: Any]) {
        var headers: [HTTPHeader] = extra
        if let bearer = token ?? self.token { headers.append(HTTPHeader("Authorization", "Bearer \(bearer)")) }
        if body != nil && !extra.contains(where: { $0.name.lowercased() == "content-type" }) {
            headers.append(HTTPHeader("Content-Type", "application/json"))
        }
        let response = try await HTTPClient(options: HTTPClientOptions(totalTimeout: .seconds(30)))
            .send(HTTPRequest(method: method, url: baseURL + path, headers: headers, body: body.map { Data($0.utf8) }))
        let json = (try? JSONSerialization.jsonObject(with: response.body)) as? [String: Any] ?? [:]
        return (response.status, json)
    }

    func metrics() async throws -> String {
        let response = try await HTTPClient().send(HTTPRequest(url: baseURL + "/metrics"))
        return String(decoding: response.body, as: UTF8.self)
    }

    /// Waits for the start-up sync to have read the tailnet.
    func ready() async throws {
        try await eventually("the loop becomes ready") { try await request("GET", "/readyz").status == 200 }
    }

    /// Waits for the start-up sync to have completed (written what it had to).
    func synced() async throws {
        try await eventually("the start-up sync completed") { try await request("GET", "/v1/inventory").json["lastSync"] is String }
    }

    /// `PUT /v1/sources/{name}` naming `nodes`.
    func putSources(_ name: String, _ nodes: [String]) async throws -> (status: Int, json: [String: Any]) {
        let members = nodes.map { #"{"node": "\#($0)", "source": "\#(name)/dns/\#($0)"}"# }.joined(separator: ", ")
        return try await request("PUT", "/v1/sources/\(name)", body: #"{"resolvers": [\#(members)]}"#)
    }
}

/// Where the loop's DNS probes reach a device address (a struct, so that a trailing
/// closure still means `configure`).
struct ProbeEndpoint: Sendable {
    let map: @Sendable (IPAddress) -> (IPAddress, Int)
}

/// Wall-clock time a test moves by hand, for TTLs and expiry without sleeping.
final class TestDate: Sendable {
    private let offset = Mutex<TimeInterval>(0)
    var now: Date { Date().addingTimeInterval(offset.withLock { $0 }) }
    func advance(by seconds: TimeInterval) { offset.withLock { $0 += seconds } }
}

enum HarnessError: Error {
    case noListener
    case timedOut(String)
}

/// Polls a condition until it holds (every 20 ms, for at most `limit`): for state that
/// changes in another process or thread, where there is nothing to await.
func eventually(_ what: String, limit: Duration = .seconds(10), _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + limit
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    Issue.record("timed out waiting until \(what)")
    throw HarnessError.timedOut(what)
}

/// The value of one Prometheus series in a /metrics text, 0 if absent.
func metricValue(_ text: String, _ series: String) -> Double {
    for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
        return Double(line.split(separator: " ").last ?? "") ?? 0
    }
    return 0
}
