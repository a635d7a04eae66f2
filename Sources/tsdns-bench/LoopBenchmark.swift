import Foundation
import TSDNSConfig
import TSDNSCore
import TSDNSRuntime
import TSDNSSimulator
#if canImport(Glibc)
import Glibc
#endif

/// The loop as deployed: `tsdns-reconcile run` as a process with its RPC listener, driven
/// over RPC. Prints the latency from `POST /v1/resolvers` to the simulator receiving the
/// write, then the loop's RSS minute by minute under a steady request rate.
func loopBenchmark(binary: String, minutes: Double, requestsPerSecond: Int) async throws {
    let tailnet = try SimulatedTailnet()
    defer { tailnet.stop() }
    var devices = (1...10).map { SimulatedDevices.device($0, hostname: "dns-\($0)") }
    let churn = (100...119).map { SimulatedDevices.device($0, hostname: "k8s-\($0)", tags: nil) }
    devices += churn + (200...399).map { SimulatedDevices.device($0, hostname: "host-\($0)", tags: nil) }
    tailnet.setDevices(devices)
    tailnet.setNameservers(["1.1.1.1"] + devices.prefix(10).map { $0.addresses[0] })

    let port = try freePort()
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tsdns-loop-bench-\(getpid())")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    try tailnet.apiKey.write(to: directory.appendingPathComponent("api-key"), atomically: true, encoding: .utf8)
    let config = directory.appendingPathComponent("config.yaml")
    try """
    tailscale:
      apiURL: \(tailnet.baseURL)
      apiKeyFile: \(directory.appendingPathComponent("api-key").path)
    rpc:
      listen: 127.0.0.1:\(port)
    """.write(to: config, atomically: true, encoding: .utf8)

    let pid = spawn(binary, ["run", "--config", config.path, "--log-level", "warning"])
    defer {
        kill(pid, SIGTERM)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
    }
    let rpc = RPCClient(server: "http://127.0.0.1:\(port)", token: nil, timeout: .seconds(30))
    let clock = ContinuousClock()
    let readyBy = clock.now + .seconds(20)
    while clock.now < readyBy {
        if let answer = try? await rpc.call("GET", "/readyz"), answer.status == 200 { break }
        try await Task.sleep(for: .milliseconds(50))
    }
    print("tsdns-bench loop: \(binary), pid \(pid), \(devices.count) devices, RPC on 127.0.0.1:\(port)")

    // Latency: add a healthy node by RPC; stop the clock when the simulator gets the write.
    var latencies: [Double] = []
    for round in 0..<200 {
        let node = churn[round % churn.count]
        let start = clock.now
        let answer = try await rpc.call("POST", "/v1/resolvers", body: RPCWire.AddBody(node: node.hostname))
        let answered = clock.now
        guard answer.status == 200,
              let write = tailnet.requests.last(where: { $0.isMutating && $0.body.contains(node.addresses[0]) && $0.at >= start }) else {
            print("round \(round): no write seen (HTTP \(answer.status))")
            continue
        }
        latencies.append((write.at - start).seconds * 1000)
        _ = answered
        _ = try await rpc.call("DELETE", "/v1/resolvers/\(node.hostname)")
        // Past the minimum gap between event-triggered runs, so each add starts at once.
        try await Task.sleep(for: .milliseconds(250))
    }
    print(String(format: "POST /v1/resolvers → write at the simulator: p50 %.1f ms, p99 %.1f ms, max %.1f ms (%d adds)",
                 percentile(latencies, 0.5), percentile(latencies, 0.99), latencies.max() ?? 0, latencies.count))

    // Load: a steady mix of reads and writes for `minutes`, RSS sampled every 10 s.
    let interval = Duration.seconds(1) / requestsPerSecond
    let end = clock.now + .seconds(minutes * 60)
    let loadStart = clock.now
    var next = clock.now
    var sent = 0
    var failed = 0
    var samples: [(Double, Int)] = [(0, residentKiB(pid))]
    var nextSample = clock.now + .seconds(10)
    while clock.now < end {
        let node = churn[(sent / 10) % churn.count]
        let call: (String, String, (any Encodable & Sendable)?)
        switch sent % 10 {
        case 0: call = ("POST", "/v1/resolvers", RPCWire.AddBody(node: node.hostname))
        case 5: call = ("DELETE", "/v1/resolvers/\(node.hostname)", nil)
        case 3: call = ("POST", "/v1/sync", nil)
        case 7: call = ("POST", "/v1/healthcheck", RPCWire.RunBody(dryRun: true))
        case 9: call = ("GET", "/metrics", nil)
        default: call = ("GET", "/v1/inventory", nil)
        }
        do { _ = try await rpc.call(call.0, call.1, body: call.2) } catch { failed += 1 }
        sent += 1
        if clock.now >= nextSample {
            samples.append(((clock.now - loadStart).seconds / 60, residentKiB(pid)))
            nextSample += .seconds(10)
        }
        next += interval
        if next > clock.now { try await Task.sleep(until: next) }
    }
    samples.append(((clock.now - loadStart).seconds / 60, residentKiB(pid)))
    print("load: \(sent) requests in \(String(format: "%.1f", (clock.now - loadStart).seconds)) s (\(requestsPerSecond)/s target), \(failed) failed")
    for (minute, kib) in samples where minute == 0 || abs(minute - minute.rounded()) < 0.09 || minute == samples.last!.0 {
        print(String(format: "  RSS at minute %5.2f: %6.1f MiB", minute, Double(kib) / 1024))
    }
    let atTwo = samples.first { $0.0 >= 2 }?.1 ?? samples.first!.1
    let last = samples.last!.1
    print(String(format: "RSS growth from minute 2 to the end: %+.1f MiB (%.1f → %.1f MiB)",
                 Double(last - atTwo) / 1024, Double(atTwo) / 1024, Double(last) / 1024))
}
