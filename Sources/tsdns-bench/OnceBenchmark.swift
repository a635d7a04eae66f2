import Foundation
import TSDNSConfig
import TSDNSCore
import TSDNSSimulator

/// The once benchmark's tailnet: 10,000 devices, 20 tagged resolvers, all listed (idle),
/// and a config file pointing at it.
struct BenchTailnet {
    let tailnet: SimulatedTailnet
    let devices: [Device]
    let directory: URL
    let keyFile: URL
    let config: URL

    init(deviceCount: Int = 10_000, resolverCount: Int = 20) throws {
        tailnet = try SimulatedTailnet()
        var devices: [Device] = []
        for n in 1...deviceCount {
            let isResolver = n <= resolverCount
            devices.append(SimulatedDevices.device(n, hostname: isResolver ? "dns-\(n)" : "host-\(n)", tags: isResolver ? ["tag:dns"] : nil))
        }
        self.devices = devices
        tailnet.setDevices(devices)
        tailnet.setNameservers(["1.1.1.1"] + devices.prefix(resolverCount).map { $0.addresses[0] })

        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tsdns-bench-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        keyFile = directory.appendingPathComponent("api-key")
        try tailnet.apiKey.write(to: keyFile, atomically: true, encoding: .utf8)
        config = directory.appendingPathComponent("config.yaml")
        try """
        tailscale:
          apiURL: \(tailnet.baseURL)
          apiKeyFile: \(keyFile.path)
        """.write(to: config, atomically: true, encoding: .utf8)
    }
}

/// `tsdns-bench serve`: the once benchmark's tailnet until interrupted, for profiling by hand
/// (`perf record tsdns-reconcile run --dry-run --config <printed path>`).
func serveBenchTailnet() throws -> Never {
    let bench = try BenchTailnet()
    let text = "config: \(bench.config.path)\ndevices: \(bench.tailnet.baseURL)/api/v2/tailnet/-/devices (bearer \(bench.tailnet.apiKey))\n"
    FileHandle.standardOutput.write(Data(text.utf8))
    while true { sleep(3600) }
}

/// `run --dry-run` and `run --once` against 10,000 devices: wall time, peak RSS, requests.
func onceBenchmark(binary: String) throws {
    let resolverCount = 20
    // Enough runs that the ratio's median holds still from one benchmark to the next (with
    // 15, four benchmarks within minutes gave 2.15 to 2.51).
    let runs = 31
    let bench = try BenchTailnet(resolverCount: resolverCount)
    let (tailnet, devices, directory, keyFile, config) = (bench.tailnet, bench.devices, bench.directory, bench.keyFile, bench.config)
    let deviceCount = devices.count
    defer { try? FileManager.default.removeItem(at: directory) }

    print("tsdns-bench: \(binary)")
    print("simulated tailnet: \(deviceCount) devices, \(resolverCount) tagged resolvers, all listed (idle)")

    // The baseline: curl fetching the same two GETs from the same server, interleaved with
    // the dry runs so that both see the machine at the same speed.
    let curlArguments = [
        "-s", "-o", "/dev/null", "-o", "/dev/null", "-H", "Authorization: Bearer \(tailnet.apiKey)",
        tailnet.baseURL + "/api/v2/tailnet/-/devices", tailnet.baseURL + "/api/v2/tailnet/-/dns/nameservers",
    ]
    let hasCurl = FileManager.default.isExecutableFile(atPath: "/usr/bin/curl")
    let dryArguments = ["run", "--dry-run", "--config", config.path]
    // Warm-up: page cache and the simulator's first JSON encoding.
    _ = measure(binary, dryArguments)
    if hasCurl { _ = measure("/usr/bin/curl", curlArguments) }
    var fetches: [Double] = []
    var dryRuns: [Measurement] = []
    for _ in 0..<runs {
        if hasCurl { fetches.append(measure("/usr/bin/curl", curlArguments).seconds) }
        dryRuns.append(measure(binary, dryArguments))
    }
    if hasCurl {
        print(String(format: "curl, the same two GETs: wall median %.3f s (min %.3f, max %.3f)", median(fetches), fetches.min()!, fetches.max()!))
    }
    let dryWall = dryRuns.map(\.seconds)
    print(String(format: "run --dry-run (idle):  wall median %.3f s (min %.3f, max %.3f), exit %d, ", median(dryWall), dryWall.min()!, dryWall.max()!, dryRuns[0].status)
          + "peak RSS \(mebibytes(peakResidentKiB(binary, dryArguments))) (target ≤ 40 MB)")
    if hasCurl {
        print(String(format: "  ratio to curl: %.2f× (target ≤ 2.5×)", median(dryWall) / median(fetches)))
    }

    // Start-up: commands that read no API.
    for arguments in [["--version"], ["--help"], ["validate", "--config", config.path]] {
        _ = measure(binary, arguments)
        let walls = (0..<21).map { _ in measure(binary, arguments).seconds }
        print("\(arguments[0]): " + String(format: "wall median %.1f ms (min %.1f), ", median(walls) * 1000, walls.min()! * 1000)
              + "peak RSS \(mebibytes(peakResidentKiB(binary, arguments))) (target < 10 ms)")
    }

    tailnet.clearLog()
    let idle = measure(binary, ["run", "--once", "--config", config.path])
    let requests = tailnet.requests
    let devicesGETs = requests.filter { $0.method == "GET" && $0.path.hasSuffix("/devices") }.count
    let listGETs = requests.filter { $0.method == "GET" && !$0.path.hasSuffix("/devices") }.count
    print(String(format: "run --once (idle):     wall %.3f s, exit %d", idle.seconds, idle.status))
    print("  API requests: \(requests.count) total = \(devicesGETs) devices GET + \(listGETs) nameserver-list GET + \(tailnet.mutatingRequests.count) writes")

    try pullModeBenchmark(binary: binary, tailnet: tailnet, directory: directory, keyFile: keyFile, baseline: idle.seconds)

    // One resolver goes down: a run with a real change, for comparison.
    tailnet.updateDevice(nodeId: devices[0].nodeId) { $0.connectedToControl = false }
    tailnet.clearLog()
    let changed = measure(binary, ["run", "--once", "--config", config.path])
    print(String(format: "run --once (1 removal): wall %.3f s, exit %d, %d requests (%d writes)",
                 changed.seconds, changed.status, tailnet.requests.count, tailnet.mutatingRequests.count))
    tailnet.stop()
}

/// Pull mode: an idle `run --once` that also lists two clusters of 500 Services each (10
/// annotated per cluster, naming listed resolvers; the rest other apps' Services).
func pullModeBenchmark(binary: String, tailnet: SimulatedTailnet, directory: URL, keyFile: URL, baseline: Double) throws {
    let clusters = try (0..<2).map { _ in try SimulatedCluster() }
    defer { clusters.forEach { $0.stop() } }
    var clusterYAML = "kubernetes:\n  clusters:\n"
    for (index, cluster) in clusters.enumerated() {
        let name = index == 0 ? "prod" : "staging"
        for n in 0..<500 {
            let resolver = n < 10
            cluster.apply(.tailscale(
                namespace: "dns", name: "svc-\(n)", annotation: ("tailscale.com/tags", resolver ? "tag:k8s,tag:dns" : "tag:k8s"),
                hostname: resolver ? "dns-\(index * 10 + n + 1)" : "app-\(name)-\(n)"
            ))
        }
        let kubeconfig = directory.appendingPathComponent("\(name).kubeconfig")
        try cluster.kubeconfig(user: [("token", cluster.token)], context: name).write(to: kubeconfig, atomically: true, encoding: .utf8)
        clusterYAML += "    - name: \(name)\n      kubeconfig: \(kubeconfig.path)\n      namespace: dns\n"
    }
    let config = directory.appendingPathComponent("pull.yaml")
    try """
    tailscale:
      apiURL: \(tailnet.baseURL)
      apiKeyFile: \(keyFile.path)
    \(clusterYAML)
    """.write(to: config, atomically: true, encoding: .utf8)
    _ = measure(binary, ["run", "--once", "--config", config.path, "--log-level", "error"])
    var walls: [Double] = []
    var requests: (tailscale: Int, kubernetes: Int, writes: Int) = (0, 0, 0)
    var status: Int32 = 0
    for _ in 0..<5 {
        tailnet.clearLog()
        clusters.forEach { $0.clearRequests() }
        let run = measure(binary, ["run", "--once", "--config", config.path, "--log-level", "error"])
        walls.append(run.seconds)
        status = run.status
        requests = (tailnet.requests.count, clusters.reduce(0) { $0 + $1.requests.count }, tailnet.mutatingRequests.count)
    }
    // The same two LISTs by curl: what the simulated API servers themselves cost.
    if FileManager.default.isExecutableFile(atPath: "/usr/bin/curl") {
        var arguments = ["-s", "-H", "Authorization: Bearer \(clusters[0].token)"]
        for cluster in clusters { arguments += ["-o", "/dev/null", cluster.baseURL + "/api/v1/namespaces/dns/services?limit=500"] }
        let fetches = (0..<5).map { _ in measure("/usr/bin/curl", arguments).seconds }
        print(String(format: "curl, the same two Kubernetes LISTs: wall median %.3f s", median(fetches)))
    }
    print(String(format: "run --once, pull mode (2 clusters × 500 Services, idle): wall median %.3f s (min %.3f, max %.3f; %+.3f s over no clusters), exit %d",
                 median(walls), walls.min()!, walls.max()!, median(walls) - baseline, status))
    print("  API requests: \(requests.tailscale) Tailscale + \(requests.kubernetes) Kubernetes LISTs (one page of 500 per cluster), \(requests.writes) writes")
}
