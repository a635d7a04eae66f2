import Foundation
import TSDNSConfig
import TSDNSCore
import TSDNSSimulator
#if canImport(Glibc)
import Glibc
#endif
struct Measurement {
    var status: Int32
    var seconds: Double
}

/// Runs the binary to its end with output discarded: its exit status and wall time.
func measure(_ binary: String, _ arguments: [String]) -> Measurement {
    let start = ContinuousClock.now
    let pid = spawn(binary, arguments)
    var status: Int32 = 0
    _ = waitpid(pid, &status, 0)
    let elapsed = ContinuousClock.now - start
    return Measurement(status: (status >> 8) & 0xFF, seconds: elapsed.seconds)
}

/// Peak RSS in KiB of one run, as GNU time reports it. Not wait4's ru_maxrss of our own
/// child: posix_spawn starts it in this process's address space (vfork), and the kernel
/// counts that (the benchmark's own tens of MiB) into the child's peak at exec.
func peakResidentKiB(_ binary: String, _ arguments: [String]) -> Int? {
    let report = FileManager.default.temporaryDirectory.appendingPathComponent("tsdns-bench-rss-\(getpid())").path
    defer { unlink(report) }
    guard FileManager.default.isExecutableFile(atPath: "/usr/bin/time") else { return nil }
    var status: Int32 = 0
    _ = waitpid(spawn("/usr/bin/time", ["-f", "%M", "-o", report, binary] + arguments), &status, 0)
    guard let text = try? String(contentsOfFile: report, encoding: .utf8) else { return nil }
    return text.split(separator: "\n").last.flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }
}

/// "12.3 MiB", or why there is no figure.
func mebibytes(_ kibibytes: Int?) -> String {
    kibibytes.map { String(format: "%.1f MiB", Double($0) / 1024) } ?? "(no /usr/bin/time)"
}

func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

/// Starts the binary in the background with output discarded; returns its pid.
func spawn(_ binary: String, _ arguments: [String]) -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    defer { posix_spawn_file_actions_destroy(&actions) }
    let argv = ([binary] + arguments).map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var pid: pid_t = 0
    guard posix_spawn(&pid, binary, &actions, nil, argv, environ) == 0 else { fatalError("cannot start \(binary)") }
    return pid
}

/// Resident set size of a running process, from /proc.
func residentKiB(_ pid: pid_t) -> Int {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return 0 }
    return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
}

func percentile(_ values: [Double], _ p: Double) -> Double {
    let sorted = values.sorted()
    return sorted[min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)]
}

/// A free loopback port: bind to 0, read it, let go.
func freePort() throws -> Int {
    let probe = try LoopbackHTTPServer { _ in ServerResponse(status: 404) }
    defer { probe.stop() }
    return probe.port
}
