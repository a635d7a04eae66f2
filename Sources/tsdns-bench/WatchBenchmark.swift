import Foundation
import Synchronization
import TSDNSCore
import TSDNSRuntime
import TSDNSSimulator
#if canImport(Glibc)
import Glibc
#endif

/// The whole design as deployed: `run` (the loop) and `watch` as processes, against the
/// simulated tailnet and cluster. Prints the latency from a Service's creation in the
/// cluster to the simulated tailnet receiving the nameserver write, over 50 creations.
func watchBenchmark(binary: String) async throws {
    let tailnet = try SimulatedTailnet()
    defer { tailnet.stop() }
    let resolvers = (1...3).map { SimulatedDevices.device($0, hostname: "dns-\($0)") }
    let services = (100..<150).map { SimulatedDevices.device($0, hostname: "k8s-dns-\($0)", tags: nil) }
    tailnet.setDevices(resolvers + services + (200...299).map { SimulatedDevices.device($0, hostname: "host-\($0)", tags: nil) })
    tailnet.setNameservers(["1.1.1.1"] + resolvers.map { $0.addresses[0] })
    let cluster = try SimulatedCluster()
    defer { cluster.stop() }

    let rpcPort = try freePort()
    let watchPort = try freePort()
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tsdns-watch-bench-\(getpid())")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    try tailnet.apiKey.write(to: directory.appendingPathComponent("api-key"), atomically: true, encoding: .utf8)
    try cluster.kubeconfig(user: [("token", cluster.token)]).write(to: directory.appendingPathComponent("kubeconfig"), atomically: true, encoding: .utf8)
    let loopConfig = directory.appendingPathComponent("loop.yaml")
    try """
    tailscale:
      apiURL: \(tailnet.baseURL)
      apiKeyFile: \(directory.appendingPathComponent("api-key").path)
    rpc:
      listen: 127.0.0.1:\(rpcPort)
    """.write(to: loopConfig, atomically: true, encoding: .utf8)
    let watchConfig = directory.appendingPathComponent("watch.yaml")
    try """
    kubernetes:
      clusters:
        - name: prod
          kubeconfig: \(directory.appendingPathComponent("kubeconfig").path)
          namespace: dns
    watch:
      server: http://127.0.0.1:\(rpcPort)
      listen: 127.0.0.1:\(watchPort)
    """.write(to: watchConfig, atomically: true, encoding: .utf8)

    let loop = spawn(binary, ["run", "--config", loopConfig.path, "--log-level", "warning"])
    let watcher = spawn(binary, ["watch", "--config", watchConfig.path, "--log-level", "warning"])
    defer {
        for pid in [watcher, loop] {
            kill(pid, SIGTERM)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
    }
    let clock = ContinuousClock()
    let watchReady = RPCClient(server: "http://127.0.0.1:\(watchPort)", token: nil, timeout: .seconds(5))
    let readyBy = clock.now + .seconds(30)
    while clock.now < readyBy {
        if let answer = try? await watchReady.call("GET", "/readyz"), answer.status == 200 { break }
        try await Task.sleep(for: .milliseconds(20))
    }
    // Steady state: the watch is open and the start-up sends (after the LIST, after the
    // watch opened) have been applied, so they do not queue ahead of the first creation.
    while cluster.openWatches == 0 && clock.now < readyBy { try await Task.sleep(for: .milliseconds(10)) }
    try await Task.sleep(for: .milliseconds(500))
    print("tsdns-bench watch: \(binary); loop pid \(loop) on 127.0.0.1:\(rpcPort), watch pid \(watcher)")

    // The moment each write arrives, taken on the simulator's own thread.
    let writes = Mutex<[(String, ContinuousClock.Instant)]>([])
    tailnet.onWriteArrival { request in writes.withLock { $0.append((request.body, request.at)) } }
    var latencies: [Double] = []
    for device in services {
        let address = device.addresses[0]
        let created = clock.now
        cluster.apply(.tailscale(namespace: "dns", name: device.hostname, hostname: device.hostname))
        let deadline = clock.now + .seconds(10)
        var arrived: ContinuousClock.Instant?
        while arrived == nil && clock.now < deadline {
            arrived = writes.withLock { $0.first { $0.0.contains("\"\(address)\"") }?.1 }
            if arrived == nil { try await Task.sleep(for: .milliseconds(1)) }
        }
        guard let arrived else {
            print("  no write for \(device.hostname) within 10 s")
            continue
        }
        latencies.append((arrived - created).seconds * 1000)
        // Past the loop's least gap between event-triggered runs (200 ms): each creation is its own event.
        try await Task.sleep(for: .milliseconds(250))
    }
    tailnet.onWriteArrival(nil)
    guard !latencies.isEmpty else { return }
    if ProcessInfo.processInfo.environment["TSDNS_BENCH_VERBOSE"] != nil { print("  latencies (ms, in order): " + latencies.map { String(format: "%.0f", $0) }.joined(separator: " ")) }
    print(String(format: "Service created → nameserver write (watch + run, %d creations): p50 %.1f ms, p99 %.1f ms, max %.1f ms (target p99 < 100 ms)",
                 latencies.count, percentile(latencies, 0.5), percentile(latencies, 0.99), latencies.max()!))
}
