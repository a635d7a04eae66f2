// `make bench`: runs the built tsdns-reconcile against a simulated tailnet of 10,000 devices
// and prints wall time, peak RSS and the API requests it made. Not a test: numbers to read.
import Foundation
import TSDNSCore
import TSDNSSimulator
#if canImport(Glibc)
import Glibc
#endif

struct Measurement {
    var status: Int32
    var seconds: Double
    var peakRSSKiB: Int
}

/// Spawns the binary with output discarded and measures it with wait4's rusage.
func measure(_ binary: String, _ arguments: [String]) -> Measurement {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    defer { posix_spawn_file_actions_destroy(&actions) }
    let argv = ([binary] + arguments).map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var pid: pid_t = 0
    let start = ContinuousClock.now
    guard posix_spawn(&pid, binary, &actions, nil, argv, environ) == 0 else {
        fatalError("cannot start \(binary)")
    }
    var status: Int32 = 0
    var usage = rusage()
    _ = wait4(pid, &status, 0, &usage)
    let elapsed = ContinuousClock.now - start
    return Measurement(
        status: (status >> 8) & 0xFF,
        seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18,
        peakRSSKiB: usage.ru_maxrss
    )
}

func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

let arguments = CommandLine.arguments
let binary = arguments.count > 1 ? arguments[1]
    : URL(fileURLWithPath: arguments[0]).deletingLastPathComponent().appendingPathComponent("tsdns-reconcile").path
let deviceCount = 10_000
let resolverCount = 20
let runs = 5

let tailnet = try SimulatedTailnet()
var devices: [Device] = []
for n in 1...deviceCount {
    let isResolver = n <= resolverCount
    devices.append(SimulatedDevices.device(n, hostname: isResolver ? "dns-\(n)" : "host-\(n)", tags: isResolver ? ["tag:dns"] : nil))
}
tailnet.setDevices(devices)
let listed = devices.prefix(resolverCount).map { $0.addresses[0] }
tailnet.setNameservers(["1.1.1.1"] + listed)

let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tsdns-bench-\(getpid())")
try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(at: directory) }
let keyFile = directory.appendingPathComponent("api-key")
try tailnet.apiKey.write(to: keyFile, atomically: true, encoding: .utf8)
let config = directory.appendingPathComponent("config.yaml")
try """
tailscale:
  apiURL: \(tailnet.baseURL)
  apiKeyFile: \(keyFile.path)
""".write(to: config, atomically: true, encoding: .utf8)

print("tsdns-bench: \(binary)")
print("simulated tailnet: \(deviceCount) devices, \(resolverCount) tagged resolvers, all listed (idle)")

if FileManager.default.isExecutableFile(atPath: "/usr/bin/curl") {
    let fetch = measure("/usr/bin/curl", ["-s", "-o", "/dev/null", "-H", "Authorization: Bearer \(tailnet.apiKey)", tailnet.baseURL + "/api/v2/tailnet/-/devices"])
    print(String(format: "simulator alone (curl GET devices): %.3f s", fetch.seconds))
}

// Warm-up: page cache and the simulator's first JSON encoding.
_ = measure(binary, ["run", "--dry-run", "--config", config.path])

var dryRuns: [Measurement] = []
for _ in 0..<runs { dryRuns.append(measure(binary, ["run", "--dry-run", "--config", config.path])) }
let dryWall = dryRuns.map(\.seconds)
let dryRSS = dryRuns.map { Double($0.peakRSSKiB) / 1024 }
print(String(format: "run --dry-run (idle):  wall median %.3f s (min %.3f, max %.3f), peak RSS median %.1f MiB (max %.1f), exit %d",
             median(dryWall), dryWall.min()!, dryWall.max()!, median(dryRSS), dryRSS.max()!, dryRuns[0].status))

tailnet.clearLog()
let idle = measure(binary, ["run", "--once", "--config", config.path])
let requests = tailnet.requests
let devicesGETs = requests.filter { $0.method == "GET" && $0.path.hasSuffix("/devices") }.count
let listGETs = requests.filter { $0.method == "GET" && !$0.path.hasSuffix("/devices") }.count
print(String(format: "run --once (idle):     wall %.3f s, peak RSS %.1f MiB, exit %d", idle.seconds, Double(idle.peakRSSKiB) / 1024, idle.status))
print("  API requests: \(requests.count) total = \(devicesGETs) devices GET + \(listGETs) nameserver-list GET + \(tailnet.mutatingRequests.count) writes")

// One resolver goes down: a run with a real change, for comparison.
tailnet.updateDevice(nodeId: devices[0].nodeId) { $0.connectedToControl = false }
tailnet.clearLog()
let changed = measure(binary, ["run", "--once", "--config", config.path])
print(String(format: "run --once (1 removal): wall %.3f s, peak RSS %.1f MiB, exit %d, %d requests (%d writes)",
             changed.seconds, Double(changed.peakRSSKiB) / 1024, changed.status, tailnet.requests.count, tailnet.mutatingRequests.count))
tailnet.stop()
