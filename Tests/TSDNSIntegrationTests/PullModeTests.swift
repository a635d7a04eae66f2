import Foundation
import Testing
import TSDNSConfig
import TSDNSCore
import TSDNSKubernetes
import TSDNSSimulator
@testable import TSDNSRuntime

/// A tailnet and a cluster whose annotated Services name devices in all three ways.
struct PullModeLab {
    let tailnet: SimulatedTailnet
    let cluster: SimulatedCluster
    let directory: URL

    /// Devices: dns-1 (tagged, listed), dns-coredns (by the hostname annotation),
    /// 100.64.0.11 (by the ingress address), dns-plain (by <namespace>-<name>), two devices
    /// called twin (an ambiguous hostname). The Service dns/later has no device yet.
    static func make() throws -> PullModeLab {
        let tailnet = try SimulatedTailnet()
        tailnet.setDevices([
            SimulatedDevices.device(1, hostname: "dns-1"),
            SimulatedDevices.device(10, hostname: "dns-coredns", tags: nil),
            SimulatedDevices.device(11, hostname: "ts-resolver-b-x7k2p", tags: nil),
            SimulatedDevices.device(12, hostname: "dns-plain", tags: nil),
            SimulatedDevices.device(13, hostname: "twin", tags: nil),
            SimulatedDevices.device(14, hostname: "twin", tags: nil),
        ])
        tailnet.setNameservers(["1.1.1.1", "100.64.0.1"])
        let cluster = try SimulatedCluster()
        cluster.apply(.tailscale(namespace: "dns", name: "coredns", hostname: "dns-coredns"))
        cluster.apply(.tailscale(namespace: "dns", name: "resolver-b", address: "100.64.0.11", magicDNSName: "resolver-b.tail0sim.ts.net"))
        cluster.apply(.tailscale(namespace: "dns", name: "plain"))
        cluster.apply(.tailscale(namespace: "dns", name: "twin", hostname: "twin"))
        cluster.apply(.tailscale(namespace: "dns", name: "later"))
        cluster.apply(SimulatedService(namespace: "dns", name: "not-annotated", annotations: ["tailscale.com/hostname": "dns-1"]))
        return PullModeLab(tailnet: tailnet, cluster: cluster, directory: try scratchDirectory())
    }

    func reconciler(_ config: Config = Config(), clusters: [ClusterSource]? = nil) throws -> Reconciler {
        let sources = try clusters ?? [makeClusterSource(try clusterConfig(cluster, directory: directory))]
        return Reconciler(client: makeClient(tailnet), config: config, tailnet: "-", logger: quietLogger, clusters: sources)
    }

    func stop() {
        tailnet.stop()
        cluster.stop()
        try? FileManager.default.removeItem(at: directory)
    }
}

@Suite("Pull mode: annotated Services of every cluster, read on each sync", .timeLimit(.minutes(1)))
struct PullModeTests {
    @Test func addsTheDevicesBehindAnnotatedServices() async throws {
        let lab = try PullModeLab.make()
        defer { lab.stop() }
        let result = try await lab.reconciler().run(onceRequest)
        let adds = result.plan.targets[0].entries(.add)
        #expect(adds.map(\.address) == ["100.64.0.10", "100.64.0.11", "100.64.0.12"])
        #expect(adds.map(\.reason) == ["kubernetes:prod/dns/coredns", "kubernetes:prod/dns/resolver-b", "kubernetes:prod/dns/plain"])
        #expect(lab.tailnet.nameservers == ["1.1.1.1", "100.64.0.1", "100.64.0.10", "100.64.0.11", "100.64.0.12"])
        // The twins stay out (ambiguous), and so does dns/later (no device yet).
        #expect(!lab.tailnet.nameservers.contains("100.64.0.13") && !lab.tailnet.nameservers.contains("100.64.0.14"))

        // dns/later's device registers: the next sync adds it.
        lab.tailnet.addDevice(SimulatedDevices.device(15, hostname: "dns-later", tags: nil))
        let next = try await lab.reconciler().run(onceRequest)
        #expect(next.plan.targets[0].entries(.add).map(\.address) == ["100.64.0.15"])

        // One twin goes offline: the hostname names one healthy device now.
        lab.tailnet.updateDevice(nodeId: SimulatedDevices.device(14, hostname: "twin").nodeId) { $0.connectedToControl = false }
        let third = try await lab.reconciler().run(onceRequest)
        #expect(third.plan.targets[0].entries(.add).map(\.address) == ["100.64.0.13"])
    }

    @Test func anIdleSyncAddsOneListPerClusterToTheRequestFloor() async throws {
        let lab = try PullModeLab.make()
        defer { lab.stop() }
        let reconciler = try lab.reconciler()
        _ = try await reconciler.run(onceRequest)
        lab.tailnet.clearLog()
        lab.cluster.clearRequests()
        let idle = try await reconciler.run(onceRequest)
        #expect(!idle.plan.changed)
        #expect(lab.tailnet.requests.count == 2)
        #expect(lab.cluster.requests.map(\.path) == ["/api/v1/namespaces/dns/services?limit=500"])
        // A healthcheck reads no cluster: it never adds.
        lab.cluster.clearRequests()
        _ = try await reconciler.run(RunRequest(mode: .healthcheck, dryRun: false, failureThreshold: 1))
        #expect(lab.cluster.requests.isEmpty)
    }

    @Test(arguments: ["500", "401", "timeout", "malformed"])
    func aFailedListWritesNothing(_ failure: String) async throws {
        let lab = try PullModeLab.make()
        defer { lab.stop() }
        var options = fastKubernetes
        options.requestTimeout = .milliseconds(400)
        let cluster = try makeClusterSource(try clusterConfig(lab.cluster, directory: lab.directory), options: options)
        // Something to write if the run went ahead: a tagged device that is not listed.
        lab.tailnet.addDevice(SimulatedDevices.device(20, hostname: "dns-20"))
        switch failure {
        case "500": lab.cluster.inject(.init(.status(500)))
        case "401": lab.cluster.inject(.init(.status(401)))
        case "timeout": lab.cluster.inject(.init(.delay(.seconds(2))))
        default: lab.cluster.inject(.init(.malformedBody))
        }
        await #expect { try await lab.reconciler(clusters: [cluster]).run(onceRequest) } throws: { error in
            guard let read = error as? ClusterReadError else { return false }
            return read.cluster == "prod"
        }
        #expect(lab.tailnet.mutatingRequests.isEmpty)
        #expect(lab.tailnet.nameservers == ["1.1.1.1", "100.64.0.1"])
    }

    @Test func twoClustersOneFailingWritesNothing() async throws {
        let lab = try PullModeLab.make()
        defer { lab.stop() }
        let second = try SimulatedCluster()
        defer { second.stop() }
        second.apply(.tailscale(namespace: "dns", name: "coredns", hostname: "dns-1"))
        second.inject(.init(.status(503)))
        let clusters = [
            try makeClusterSource(try clusterConfig(lab.cluster, directory: lab.directory)),
            try makeClusterSource(try clusterConfig(second, name: "staging", directory: lab.directory)),
        ]
        await #expect { try await lab.reconciler(clusters: clusters).run(onceRequest) } throws: { error in
            (error as? ClusterReadError)?.cluster == "staging"
        }
        #expect(lab.tailnet.mutatingRequests.isEmpty)
        // Both healthy: both clusters' Services count, each under its own name.
        second.clearFaults()
        let result = try await lab.reconciler(clusters: clusters).run(onceRequest)
        #expect(result.inventory.sources[SimulatedDevices.device(1, hostname: "dns-1").nodeId] == ["tag:dns", "kubernetes:staging/dns/coredns"])
    }

    @Test func unsourcedEntriesAreKeptByDefaultAndRemovedWithRemove() async throws {
        let lab = try PullModeLab.make()
        defer { lab.stop() }
        _ = try await lab.reconciler().run(onceRequest)
        #expect(lab.tailnet.nameservers.contains("100.64.0.10"))
        // The Service goes; its device still runs.
        lab.cluster.delete(namespace: "dns", name: "coredns")
        let kept = try await lab.reconciler().run(onceRequest)
        #expect(!kept.plan.changed)
        #expect(lab.tailnet.nameservers.contains("100.64.0.10"))

        var config = Config()
        config.resolvers.unsourced = .remove
        let removed = try await lab.reconciler(config).run(onceRequest)
        let removal = try #require(removed.plan.targets[0].entries(.remove).first)
        #expect(removal.address == "100.64.0.10")
        #expect(removal.reason.contains("resolvers.unsourced=remove"))
        #expect(!lab.tailnet.nameservers.contains("100.64.0.10"))
        // Everything a source still names stays.
        #expect(lab.tailnet.nameservers == ["1.1.1.1", "100.64.0.1", "100.64.0.11", "100.64.0.12"])
    }

    @Test func rejectedClusterCredentialsAreTheOperatorsToFix() {
        let status = { (code: Int) in KubernetesError.status(code: code, reason: "", message: "", retryAfter: nil) }
        #expect(ClusterReadError(cluster: "prod", underlying: status(401)).isCredentialRejected)
        #expect(ClusterReadError(cluster: "prod", underlying: status(403)).isCredentialRejected)
        #expect(ClusterReadError(cluster: "prod", underlying: KubernetesError.credential("plugin failed")).isCredentialRejected)
        #expect(!ClusterReadError(cluster: "prod", underlying: status(500)).isCredentialRejected)
        #expect(!ClusterReadError(cluster: "prod", underlying: KubernetesError.transport("refused", timedOut: false)).isCredentialRejected)
    }

    @Test func aServiceBeingDeletedCountsAsGone() async throws {
        let lab = try PullModeLab.make()
        defer { lab.stop() }
        var deleting = SimulatedService.tailscale(namespace: "dns", name: "plain")
        deleting.deletionTimestamp = "2026-12-01T10:00:00Z"
        lab.cluster.apply(deleting)
        let result = try await lab.reconciler().run(dryRunRequest)
        #expect(!result.plan.targets[0].desired.contains("100.64.0.12"))
    }
}

@Suite("Pull mode as a process and in the loop", .timeLimit(.minutes(1)))
struct PullModeProcessTests {
    func clustersYAML(_ entries: [Config.Cluster]) -> String {
        "kubernetes:\n  clusters:\n" + entries.map { entry in
            "    - name: \(entry.name)\n      kubeconfig: \(entry.kubeconfig!)\n      namespace: dns\n"
        }.joined()
    }

    @Test func onceWithTwoClustersAddsBothAndAFailingOneExitsOneWritingNothing() async throws {
        let lab = try PullModeLab.make()
        defer { lab.stop() }
        let staging = try SimulatedCluster()
        defer { staging.stop() }
        staging.apply(.tailscale(namespace: "dns", name: "coredns", hostname: "dns-coredns"))
        let entries = [try clusterConfig(lab.cluster, directory: lab.directory), try clusterConfig(staging, name: "staging", directory: lab.directory)]
        let directory = try ConfigDirectory(tailnet: lab.tailnet, extra: clustersYAML(entries))
        defer { directory.remove() }

        staging.inject(.init(.status(401)))
        let failed = try await Binary.run(["run", "--once", "--config", directory.config])
        #expect(failed.status == 1)
        #expect(failed.stderr.contains("kubernetes cluster staging: the Kubernetes API rejected the credentials (HTTP 401 Unauthorized)"))
        #expect(lab.tailnet.mutatingRequests.isEmpty)

        staging.clearFaults()
        let once = try await Binary.run(["run", "--once", "--config", directory.config, "--output", "json"])
        #expect(once.status == 0, "\(once.stderr)")
        let plan = try #require(try JSONSerialization.jsonObject(with: Data(once.stdout.utf8)) as? [String: Any])
        let adds = ((plan["targets"] as? [[String: Any]])?.first?["add"] as? [[String: Any]]) ?? []
        #expect(adds.first { $0["address"] as? String == "100.64.0.10" }?["reason"] as? String == "kubernetes:prod/dns/coredns, kubernetes:staging/dns/coredns")
        #expect(lab.tailnet.nameservers.contains("100.64.0.10"))
    }

    @Test func aBrokenKubeconfigIsAConfigErrorNamingItsLine() async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        let scratch = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let kubeconfig = scratch.appendingPathComponent("prod.kubeconfig")
        try write("apiVersion: v1\nclusters:\n- name: a\n  cluster:\n    server: {not: a string}\n", to: kubeconfig)
        let directory = try ConfigDirectory(tailnet: tailnet, extra: "kubernetes:\n  clusters:\n    - name: prod\n      kubeconfig: \(kubeconfig.path)\n")
        defer { directory.remove() }
        for command in [["validate"], ["run", "--once"], ["run", "--dry-run"], ["run"]] {
            let result = try await Binary.run(command + ["--config", directory.config])
            #expect(result.status == 78, "\(command)")
            #expect(result.stderr.contains("\(kubeconfig.path):5: clusters[0].cluster.server: must be a string"), "\(command): \(result.stderr)")
        }
        #expect(tailnet.requests.isEmpty)
    }

    @Test func theLoopCountsKubernetesRequestsAndReportsAFailedListInReadyz() async throws {
        let lab = try PullModeLab.make()
        defer { lab.cluster.stop() }
        let entry = try clusterConfig(lab.cluster, directory: lab.directory)
        let loop = try await LoopHarness.start(tailnet: lab.tailnet, directory: lab.directory) { $0.clusters = [entry] }
        try await loop.synced()
        #expect(lab.tailnet.nameservers.contains("100.64.0.10"))
        let metrics = try await loop.metrics()
        #expect(metricValue(metrics, #"tsdns_api_requests_total{api="kubernetes",code="200"}"#) >= 1)

        lab.cluster.inject(.init(.status(403)))
        let sync = try await loop.request("POST", "/v1/sync")
        #expect(sync.status == 503)
        #expect((sync.json["error"] as? String)?.contains("HTTP 403") == true)
        let ready = try await loop.request("GET", "/readyz")
        #expect((ready.json["error"] as? String)?.contains("kubernetes cluster prod") == true, "\(ready.json)")
        #expect(metricValue(try await loop.metrics(), #"tsdns_api_requests_total{api="kubernetes",code="403"}"#) >= 1)
        // A healthcheck reads no cluster: its success says nothing of the failing sync.
        #expect(try await loop.request("POST", "/v1/healthcheck").status == 200)
        #expect((try await loop.request("GET", "/readyz").json["error"] as? String)?.contains("kubernetes cluster prod") == true)
        // The cluster answers again: the next sync clears it.
        lab.cluster.clearFaults()
        #expect(try await loop.request("POST", "/v1/sync").status == 200)
        #expect(try await loop.request("GET", "/readyz").json["error"] == nil)
        try await loop.stop()
    }
}
