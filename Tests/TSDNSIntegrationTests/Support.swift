import Foundation
import Logging
import TSDNSConfig
import TSDNSCore
import TSDNSHTTP
import TSDNSRuntime
import TSDNSSimulator
import TSDNSTailscale

/// Retries in milliseconds, so fault tests finish quickly; the policy's logic is the same.
let fastRetry = RetryPolicy(maxAttempts: 4, baseDelay: .milliseconds(5), maxDelay: .milliseconds(20), budget: .seconds(10))

let quietLogger: Logger = {
    var logger = Logger(label: "test")
    logger.logLevel = .critical
    return logger
}()

/// A simulated tailnet with resolvers 1 (listed, healthy), 2 (listed, disconnected),
/// 3 (new, healthy) and a laptop; the global list holds 1.1.1.1, 1 and 2.
func makeTailnet(tokenLifetime: Duration = .seconds(3600)) throws -> SimulatedTailnet {
    let tailnet = try SimulatedTailnet(tokenLifetime: tokenLifetime)
    tailnet.setDevices([
        SimulatedDevices.device(1, hostname: "dns-1"),
        SimulatedDevices.device(2, hostname: "dns-2", connected: false),
        SimulatedDevices.device(3, hostname: "dns-3"),
        SimulatedDevices.device(50, hostname: "laptop", tags: nil),
    ])
    tailnet.setNameservers(["1.1.1.1", "100.64.0.1", "100.64.0.2"])
    return tailnet
}

func makeClient(_ tailnet: SimulatedTailnet, credential: Credential? = nil, retry: RetryPolicy = fastRetry, tailnetName: String = "-") -> TailscaleClient {
    TailscaleClient(
        baseURL: tailnet.baseURL, tailnet: tailnetName, credential: credential ?? .apiKey(tailnet.apiKey),
        http: HTTPClient(options: HTTPClientOptions(connectTimeout: .seconds(2), totalTimeout: .seconds(5))),
        retry: retry, logger: quietLogger
    )
}

func makeReconciler(_ tailnet: SimulatedTailnet, config: Config = Config(), credential: Credential? = nil) -> Reconciler {
    Reconciler(client: makeClient(tailnet, credential: credential), config: config, tailnet: "-", logger: quietLogger)
}

let onceRequest = RunRequest(mode: .sync, dryRun: false, failureThreshold: 1)
let dryRunRequest = RunRequest(mode: .sync, dryRun: true, failureThreshold: 1)

/// A scratch directory for config files, removed by the caller.
func scratchDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("tsdns-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

func write(_ text: String, to url: URL) throws {
    try text.write(to: url, atomically: true, encoding: .utf8)
}
