import Foundation
import Synchronization
import Testing
import TSDNSConfig
import TSDNSHTTP
import TSDNSKubernetes
import TSDNSSimulator
import TSDNSSimulatorTLS

/// A cluster entry whose kubeconfig (written into `directory`) points at `cluster`.
func clusterConfig(
    _ cluster: SimulatedCluster, name: String = "prod", user: [(String, String)]? = nil, caFile: String? = nil,
    namespace: String? = "dns", annotation: (String, String) = ("tailscale.com/tags", "tag:dns"), directory: URL
) throws -> Config.Cluster {
    let file = directory.appendingPathComponent("\(name).kubeconfig")
    try write(cluster.kubeconfig(user: user ?? [("token", cluster.token)], caFile: caFile), to: file)
    var entry = Config.Cluster(name: name)
    entry.kubeconfig = file.path
    entry.namespace = namespace
    entry.annotationKey = annotation.0
    entry.annotationValue = annotation.1
    return entry
}

func makeClusterSource(_ entry: Config.Cluster, options: KubernetesClient.Options = fastKubernetes, now: @escaping @Sendable () -> Date = Date.init) throws -> ClusterSource {
    let access = try ClusterAccess.resolve(entry, key: "kubernetes.clusters[0]")
    return ClusterSource(
        name: entry.name, namespace: entry.namespace,
        selector: AnnotationSelector(key: entry.annotationKey, value: entry.annotationValue),
        client: KubernetesClient(access: access, options: options, logger: quietLogger, now: now)
    )
}

let fastKubernetes = KubernetesClient.Options(requestTimeout: .seconds(3), execTimeout: .seconds(10), retries: 1)

@Suite("Kubernetes client against the simulated API server", .timeLimit(.minutes(1)))
struct KubernetesClientTests {
    func services(_ count: Int, namespace: String = "dns") -> [SimulatedService] {
        (0..<count).map { SimulatedService.tailscale(namespace: namespace, name: String(format: "svc-%04d", $0)) }
    }

    @Test func listsEveryPageAndFiltersByAnnotation() async throws {
        let cluster = try SimulatedCluster()
        defer { cluster.stop() }
        for service in services(1203) { cluster.apply(service) }
        cluster.apply(SimulatedService(namespace: "dns", name: "not-annotated"))
        cluster.apply(SimulatedService.tailscale(namespace: "dns", name: "other-tag", annotation: ("tailscale.com/tags", "tag:k8s")))
        cluster.apply(SimulatedService.tailscale(namespace: "elsewhere", name: "svc-in-other-namespace"))
        var deleting = SimulatedService.tailscale(namespace: "dns", name: "deleting")
        deleting.deletionTimestamp = "2026-12-01T10:00:00Z"
        cluster.apply(deleting)
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let source = try makeClusterSource(try clusterConfig(cluster, directory: directory))
        let read = try await source.read()
        #expect(read.listed == 1206)  // the other namespace's Service is not listed
        #expect(read.services.count == 1203)
        #expect(read.services.map(\.metadata.name) == (0..<1203).map { String(format: "svc-%04d", $0) })
        #expect(read.resourceVersion == cluster.resourceVersion)
        // 500 a page: three LISTs, the second and third with the continue token.
        let lists = cluster.requests.map(\.path)
        #expect(lists.count == 3)
        #expect(lists.allSatisfy { $0.hasPrefix("/api/v1/namespaces/dns/services?") && $0.contains("limit=500") })
        #expect(lists.filter { $0.contains("continue=") }.count == 2)
    }

    @Test func allNamespacesWhenNoneIsConfigured() async throws {
        let cluster = try SimulatedCluster()
        defer { cluster.stop() }
        for service in services(2) + services(1, namespace: "kube-system") { cluster.apply(service) }
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let read = try await makeClusterSource(try clusterConfig(cluster, namespace: nil, directory: directory)).read()
        #expect(read.services.map(\.key) == ["dns/svc-0000", "dns/svc-0001", "kube-system/svc-0000"])
        #expect(cluster.requests.map(\.path) == ["/api/v1/services?limit=500"])
    }

    @Test func anExpiredContinueTokenRestartsTheList() async throws {
        let cluster = try SimulatedCluster()
        defer { cluster.stop() }
        for service in services(700) { cluster.apply(service) }
        cluster.inject(.init(.status(410), path: "continue=", times: 1))
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let read = try await makeClusterSource(try clusterConfig(cluster, directory: directory)).read()
        #expect(read.services.count == 700)
        #expect(cluster.requests.map(\.status) == [200, 410, 200, 200])
        #expect(!cluster.requests[2].path.contains("continue="))
    }

    @Test func aListLargerThanTheCapIsAnError() async throws {
        let cluster = try SimulatedCluster()
        defer { cluster.stop() }
        for service in services(400) { cluster.apply(service) }
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        var options = fastKubernetes
        options.maxBodySize = 32 << 10
        let source = try makeClusterSource(try clusterConfig(cluster, directory: directory), options: options)
        await #expect { try await source.read() } throws: { error in
            guard case KubernetesError.malformed(let message) = error else { return false }
            return message.contains("larger than")
        }
    }

    @Test func aWrongTokenIsUnauthorizedAndNamedClearly() async throws {
        let cluster = try SimulatedCluster()
        defer { cluster.stop() }
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let source = try makeClusterSource(try clusterConfig(cluster, user: [("token", "wrong")], directory: directory))
        await #expect { try await source.read() } throws: { error in
            "\(error)" == "the Kubernetes API rejected the credentials (HTTP 401 Unauthorized)"
        }
        // A token written in the kubeconfig cannot change: no second try.
        #expect(cluster.requests.count == 1)
    }

    @Test func aRotatedTokenFileIsReadAgainAfterA401() async throws {
        let cluster = try SimulatedCluster(token: "token-a")
        defer { cluster.stop() }
        cluster.apply(SimulatedService.tailscale(namespace: "dns", name: "coredns"))
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let tokenFile = directory.appendingPathComponent("token")
        try write("token-a\n", to: tokenFile)
        let clock = TestDate()
        let source = try makeClusterSource(try clusterConfig(cluster, user: [("tokenFile", "token")], directory: directory), now: { clock.now })
        #expect(try await source.read().services.count == 1)
        // The kubelet rotates the token: the old one stops working at once.
        try write("token-b\n", to: tokenFile)
        cluster.acceptToken("token-b")
        cluster.revokeToken("token-a")
        #expect(try await source.read().services.count == 1)
        #expect(cluster.requests.map(\.status) == [200, 401, 200])
        // Without a 401, the file is read again after a minute: a removed file keeps the last good token.
        try FileManager.default.removeItem(at: tokenFile)
        clock.advance(by: 61)
        #expect(try await source.read().services.count == 1)
    }

    @Test func anExecPluginRunsAgainOnExpiryAndAfterA401() async throws {
        let cluster = try SimulatedCluster(token: "exec-1")
        defer { cluster.stop() }
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let runs = directory.appendingPathComponent("runs")
        // Run n prints the token exec-<n>, valid until 2026-12-01T12:<n>0:00Z.
        let script = directory.appendingPathComponent("get-token.sh")
        try write("""
        #!/bin/sh
        echo run >> \(runs.path)
        n=$(wc -l < \(runs.path) | tr -d ' ')
        echo "{\\"kind\\":\\"ExecCredential\\",\\"apiVersion\\":\\"client.authentication.k8s.io/v1\\",\\"status\\":{\\"token\\":\\"exec-$n\\",\\"expirationTimestamp\\":\\"2026-12-01T12:${n}0:00Z\\"}}"
        """, to: script)
        chmod(script.path, 0o755)
        let user = [("exec", "{apiVersion: client.authentication.k8s.io/v1, command: ./get-token.sh, interactiveMode: Never}")]
        let clock = TestDate()
        let start = ISO8601DateFormatter().date(from: "2026-12-01T12:00:00Z")!
        clock.advance(by: start.timeIntervalSince(clock.now))
        let source = try makeClusterSource(try clusterConfig(cluster, user: user, directory: directory), now: { clock.now })
        func runCount() -> Int { ((try? String(contentsOf: runs, encoding: .utf8)) ?? "").split(separator: "\n").count }
        _ = try await source.read()
        _ = try await source.read()
        #expect(runCount() == 1)
        // Past the expiry: the plugin runs again.
        clock.advance(by: 11 * 60)
        cluster.acceptToken("exec-2")
        _ = try await source.read()
        #expect(runCount() == 2)
        // The server stops taking exec-2: a 401 runs the plugin for a new one.
        cluster.acceptToken("exec-3")
        cluster.revokeToken("exec-2")
        _ = try await source.read()
        #expect(runCount() == 3)
        #expect(cluster.requests.map(\.status) == [200, 200, 200, 401, 200])
    }

    @Test func aFailingPluginIsAnErrorNamingTheCommand() async throws {
        let cluster = try SimulatedCluster()
        defer { cluster.stop() }
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let user = [("exec", "{apiVersion: client.authentication.k8s.io/v1beta1, command: /bin/false}")]
        let source = try makeClusterSource(try clusterConfig(cluster, user: user, directory: directory))
        await #expect { try await source.read() } throws: { error in
            "\(error)" == "no Kubernetes credential: exec credential plugin /bin/false: exited with status 1"
        }
        #expect(cluster.requests.isEmpty)
    }

    @Test func clientCertificatesOverTLS() async throws {
        let tls = try await TLSFixture.make()
        let cluster = try SimulatedCluster(tls: try ServerTLS(certificateChainFile: tls.path("server.pem"), keyFile: tls.path("server.key"), clientCAFile: tls.path("ca.pem")))
        defer { cluster.stop() }
        cluster.acceptCertificate(named: "tsdns client")
        cluster.apply(SimulatedService.tailscale(namespace: "dns", name: "coredns"))
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try FileManager.default.copyItem(atPath: tls.path("client.pem"), toPath: directory.appendingPathComponent("client.pem").path)
        try FileManager.default.copyItem(atPath: tls.path("client.key"), toPath: directory.appendingPathComponent("client.key").path)
        // Relative paths: next to the kubeconfig.
        let source = try makeClusterSource(try clusterConfig(
            cluster, user: [("client-certificate", "client.pem"), ("client-key", "client.key")], caFile: tls.path("ca.pem"), directory: directory
        ))
        #expect(try await source.read().services.count == 1)
        // Inline data works the same.
        let inline = try makeClusterSource(try clusterConfig(
            cluster, name: "inline",
            user: [("client-certificate-data", try tls.pem("client.pem").base64EncodedString()), ("client-key-data", try tls.pem("client.key").base64EncodedString())],
            caFile: tls.path("ca.pem"), directory: directory
        ))
        #expect(try await inline.read().services.count == 1)
        // No certificate, no token: 401.
        let anonymous = try makeClusterSource(try clusterConfig(cluster, name: "anon", user: [], caFile: tls.path("ca.pem"), directory: directory))
        await #expect(throws: KubernetesError.self) { try await anonymous.read() }
        // A server certificate the CA did not sign is refused.
        let unverified = try makeClusterSource(try clusterConfig(cluster, name: "noca", directory: directory))
        await #expect { try await unverified.read() } throws: { error in
            guard case KubernetesError.transport = error else { return false }
            return true
        }
    }

    @Test func a429IsRetriedAfterRetryAfterAndA500OutlastingTheRetriesFails() async throws {
        let cluster = try SimulatedCluster()
        defer { cluster.stop() }
        cluster.apply(SimulatedService.tailscale(namespace: "dns", name: "coredns"))
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let source = try makeClusterSource(try clusterConfig(cluster, directory: directory))
        cluster.inject(.init(.status(429, retryAfter: "0"), times: 1))
        #expect(try await source.read().services.count == 1)
        #expect(cluster.requests.map(\.status) == [429, 200])
        cluster.clearRequests()
        cluster.inject(.init(.status(500)))
        await #expect { try await source.read() } throws: { error in
            (error as? KubernetesError)?.isTransient == true && "\(error)".contains("HTTP 500")
        }
        #expect(cluster.requests.count == 2)  // one retry (fastKubernetes.retries)
    }
}
