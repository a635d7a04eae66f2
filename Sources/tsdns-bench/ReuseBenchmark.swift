import Foundation
import Logging
import TSDNSConfig
import TSDNSCore
import TSDNSHTTP
import TSDNSRuntime
import TSDNSSimulator
import TSDNSSimulatorTLS
import TSDNSTailscale

/// Connection reuse against a simulated tailnet over TLS: the requests of an RPC add
/// (devices, list, re-read, write) with and without reuse, and the connections an idle
/// cycle opens.
func reuseBenchmark() async throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tsdns-reuse-bench-\(getpid())")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    try "subjectAltName=IP:127.0.0.1\n".write(to: directory.appendingPathComponent("san.ext"), atomically: true, encoding: .utf8)
    let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for step in [
        ["req", "-x509"] + key + ["-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=bench CA"],
        ["req"] + key + ["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem", "-days", "1", "-extfile", "san.ext"],
    ] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = step
        process.currentDirectoryURL = directory
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
    }
    let path = { (name: String) in directory.appendingPathComponent(name).path }
    let tls = try ServerTLS(certificateChainFile: path("server.pem"), keyFile: path("server.key"))
    let tailnet = try SimulatedTailnet(tls: tls)
    defer { tailnet.stop() }
    let resolvers = (1...3).map { SimulatedDevices.device($0, hostname: "dns-\($0)") }
    tailnet.setDevices(resolvers + (100...299).map { SimulatedDevices.device($0, hostname: "host-\($0)", tags: nil) })
    tailnet.setNameservers(["1.1.1.1"] + resolvers.map { $0.addresses[0] })
    var logger = Logger(label: "bench")
    logger.logLevel = .critical
    print("tsdns-bench reuse: simulated tailnet over TLS on \(tailnet.baseURL), \(tailnet.devices.count) devices")
    for reuse in [false, true] {
        let client = TailscaleClient(
            baseURL: tailnet.baseURL, tailnet: "-", credential: .apiKey(tailnet.apiKey),
            http: HTTPClient(options: HTTPClientOptions(tls: TLSOptions(caFile: path("ca.pem")), reuseConnections: reuse)), logger: logger
        )
        // An RPC add's requests, one after the other.
        var adds: [Double] = []
        let before = tailnet.acceptedConnections
        let clock = ContinuousClock()
        for round in 0..<60 {
            let start = clock.now
            _ = try await client.listDevices()
            let list = try await client.nameservers()
            _ = try await client.nameservers()
            _ = try await client.setNameservers(round % 2 == 0 ? list + ["100.64.0.200"] : list.filter { $0 != "100.64.0.200" })
            if round >= 10 { adds.append((clock.now - start).seconds * 1000) }
        }
        let opened = tailnet.acceptedConnections - before
        // Idle cycles of the reconciler: how many connections each one opens.
        let reconciler = Reconciler(client: client, config: Config(), tailnet: "-", logger: logger)
        _ = try await reconciler.run(RunRequest(mode: .sync, dryRun: false, failureThreshold: 1))
        let idleBefore = tailnet.acceptedConnections
        for _ in 0..<10 { _ = try await reconciler.run(RunRequest(mode: .sync, dryRun: false, failureThreshold: 1)) }
        let perCycle = Double(tailnet.acceptedConnections - idleBefore) / 10
        print(String(format: "  reuse %@: RPC add's 4 requests: median %.2f ms, p99 %.2f ms; %d connections for 240 requests; idle cycle opens %.1f connections",
                     reuse ? "on " : "off", median(adds), percentile(adds, 0.99), opened, perCycle))
    }
}
