import Foundation
import Testing
import TSDNSSimulator
import TSDNSSimulatorTLS

/// The simulated API server is believable: the real kubectl (1.32 preinstalled on this machine
/// kind, or 1.37 that `make deps` installs where there is none) lists, pages and watches
/// Services through it with the kubeconfig it writes.
@Suite("kubectl against the simulated API server", .timeLimit(.minutes(1)))
struct KubectlTests {
    /// `$TSDNS_KUBECTL`, else the first on the usual paths (`make deps` makes sure there is one).
    static let kubectl = ([ProcessInfo.processInfo.environment["TSDNS_KUBECTL"]].compactMap { $0 } + ["/usr/bin/kubectl", "/usr/local/bin/kubectl"])
        .first { FileManager.default.isExecutableFile(atPath: $0) }

    struct Lab {
        let cluster: SimulatedCluster
        let directory: URL
        var kubeconfig: String { directory.appendingPathComponent("kubeconfig").path }

        static func make() async throws -> Lab {
            let tls = try await TLSFixture.make()
            let cluster = try SimulatedCluster(tls: try ServerTLS(certificateChainFile: tls.path("server.pem"), keyFile: tls.path("server.key")))
            let directory = try scratchDirectory()
            try write(cluster.kubeconfig(user: [("token", cluster.token)], caFile: tls.path("ca.pem"), namespace: "dns"), to: directory.appendingPathComponent("kubeconfig"))
            return Lab(cluster: cluster, directory: directory)
        }

        func kubectl(_ arguments: [String], output: String) throws -> Spawned {
            try Spawned([try #require(KubectlTests.kubectl), "--kubeconfig", kubeconfig, "--cache-dir", directory.appendingPathComponent("cache").path] + arguments, stdout: output)
        }

        func stop() {
            cluster.stop()
            try? FileManager.default.removeItem(at: directory)
        }
    }

    @Test func getsAndPagesServicesAsJSON() async throws {
        let lab = try await Lab.make()
        defer { lab.stop() }
        lab.cluster.apply(.tailscale(namespace: "dns", name: "coredns", hostname: "dns-coredns", address: "100.64.0.7"))
        lab.cluster.apply(.tailscale(namespace: "dns", name: "unbound"))
        lab.cluster.apply(.tailscale(namespace: "dns", name: "zone-sync"))
        lab.cluster.apply(.tailscale(namespace: "other", name: "elsewhere"))
        let output = lab.directory.appendingPathComponent("out.json").path
        let get = try lab.kubectl(["get", "services", "-n", "dns", "-o", "json", "--chunk-size=2"], output: output)
        #expect(await get.exitStatus() == 0)
        let list = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: output))) as? [String: Any])
        let items = try #require(list["items"] as? [[String: Any]])
        #expect(items.compactMap { ($0["metadata"] as? [String: Any])?["name"] as? String } == ["coredns", "unbound", "zone-sync"])
        let ingress = ((items[0]["status"] as? [String: Any])?["loadBalancer"] as? [String: Any])?["ingress"] as? [[String: Any]]
        #expect(ingress?.contains { $0["ip"] as? String == "100.64.0.7" } == true)
        // kubectl followed the continue token: two pages.
        let lists = lab.cluster.requests.filter { $0.path.hasPrefix("/api/v1/namespaces/dns/services") }
        #expect(lists.count == 2)
        #expect(lists.allSatisfy { $0.status == 200 && $0.path.contains("limit=2") })
        #expect(lists.last?.path.contains("continue=") == true)
    }

    @Test func watchesServicesAsTheyCome() async throws {
        let lab = try await Lab.make()
        defer { lab.stop() }
        lab.cluster.apply(.tailscale(namespace: "dns", name: "coredns"))
        let output = lab.directory.appendingPathComponent("watch.json").path
        let watch = try lab.kubectl(["get", "services", "-n", "dns", "--watch", "-o", "json"], output: output)
        defer { watch.kill() }
        func seen() -> String { (try? String(contentsOfFile: output, encoding: .utf8)) ?? "" }
        try await eventually("kubectl prints the existing Service") { seen().contains("\"coredns\"") }
        try await eventually("kubectl's watch is open") { lab.cluster.openWatches == 1 }
        lab.cluster.apply(.tailscale(namespace: "dns", name: "created-later"))
        try await eventually("kubectl prints the new Service") { seen().contains("\"created-later\"") }
        let watchRequest = try #require(lab.cluster.requests.first { $0.path.contains("watch=") })
        // kubectl watches from the list's resourceVersion.
        #expect(watchRequest.path.contains("resourceVersion="))
    }
}
