import Foundation
import TSDNSCore
import TSDNSProbe
#if canImport(Glibc)
import Glibc
#endif

/// A healthcheck's DNS probes: 100 resolvers, 10 of them silent, `timeout: 2s`, the default
/// concurrency of 32. The 90 answering ones are Debian's dnsmasq on a loopback address; the
/// silent ones are a UDP socket that never answers. Target: about one timeout in all.
func probeBenchmark() async throws {
    let port = 15_354
    let dnsmasq = spawn("/usr/sbin/dnsmasq", [
        "-k", "--no-resolv", "--no-hosts", "--conf-file=/dev/null", "--port", "\(port)", "--listen-address", "127.0.0.54",
        "--bind-interfaces", "--address=/probe.test/1.2.3.4", "--pid-file=",
    ])
    defer {
        kill(dnsmasq, SIGKILL)
        var status: Int32 = 0
        waitpid(dnsmasq, &status, 0)
    }
    // A resolver that receives and never answers.
    let silent = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
    defer { close(silent) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.55")
    _ = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(silent, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    let answering = IPAddress("127.0.0.54")!, quiet = IPAddress("127.0.0.55")!
    let settings = ProbeSettings(name: "a.probe.test", type: .A, port: port, timeout: .seconds(2))
    let prober = DNSProber(settings: settings)
    // Wait until dnsmasq answers.
    for _ in 0..<100 where await prober.probe([answering]).first?.passed != true {
        try await Task.sleep(for: .milliseconds(20))
    }
    let targets = (0..<100).map { $0 % 10 == 9 ? quiet : answering }
    var walls: [Double] = []
    var passed = 0
    for _ in 0..<3 {
        let start = ContinuousClock.now
        let results = await prober.probe(targets)
        walls.append((ContinuousClock.now - start).seconds)
        passed = results.filter(\.passed).count
    }
    print("dns probe: 100 resolvers, 10 silent, timeout 2s, concurrency 32")
    print(String(format: "  wall time median %.3f s (min %.3f, max %.3f) over 3 batches; %d passed, %d timed out",
                 median(walls), walls.min()!, walls.max()!, passed, 100 - passed))
    print(String(format: "  ratio to one timeout: %.2f (target: about 1)", median(walls) / 2))
}
