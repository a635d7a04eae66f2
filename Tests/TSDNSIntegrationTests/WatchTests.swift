import Foundation
import Testing
import TSDNSCore
import TSDNSHTTP
import TSDNSSimulator

/// `run` (the loop) and `watch` as two processes, against the simulated tailnet and the
/// simulated cluster: the whole design of CONTRACT §1 *watch*.
final class WatchLab: @unchecked Sendable {
    let tailnet: SimulatedTailnet
    let cluster: SimulatedCluster
    let directory: URL
    let loopConfig: ConfigDirectory
    private(set) var loop: RunningBinary
    private(set) var watcher: RunningBinary?
    let token = "rpc-secret-token"

    /// Devices dns-1 (tagged, listed) and dns-coredns, dns-unbound (untagged: only a
    /// Service makes them resolvers).
    init() async throws {
        tailnet = try SimulatedTailnet()
        tailnet.setDevices([
            SimulatedDevices.device(1, hostname: "dns-1"),
            SimulatedDevices.device(10, hostname: "dns-coredns", tags: nil),
            SimulatedDevices.device(11, hostname: "dns-unbound", tags: nil),
        ])
        tailnet.setNameservers(["1.1.1.1", "100.64.0.1"])
        cluster = try SimulatedCluster()
        directory = try scratchDirectory()
        try write(token + "\n", to: directory.appendingPathComponent("rpc-token"))
        loopConfig = try ConfigDirectory(tailnet: tailnet, extra: "rpc:\n  listen: 127.0.0.1:0\n  tokenFile: \(directory.appendingPathComponent("rpc-token").path)\n")
        loop = try RunningBinary(config: loopConfig.config)
        try await loop.start()
    }

    func startWatcher(server: String? = nil, proxy: String? = nil, tokenFile: String? = nil) async throws {
        let kubeconfig = directory.appendingPathComponent("prod.kubeconfig")
        try write(cluster.kubeconfig(user: [("token", cluster.token)]), to: kubeconfig)
        let config = directory.appendingPathComponent("watch.yaml")
        try write("""
        kubernetes:
          clusters:
            - name: prod
              kubeconfig: \(kubeconfig.path)
              namespace: dns
        watch:
          cluster: prod
          server: \(server ?? loop.server)
          tokenFile: \(tokenFile ?? directory.appendingPathComponent("rpc-token").path)
          resyncInterval: 1s
          listen: 127.0.0.1:0
          proxy: "\(proxy ?? "")"
        """, to: config)
        let watcher = try RunningBinary(config: config.path, command: "watch")
        self.watcher = watcher
        try await watcher.start()
    }

    /// Stops the loop and starts a fresh one (no state file: it remembers nothing) on the same port.
    func restartLoop(whileDown: () async throws -> Void = {}) async throws {
        let port = loop.port
        _ = try await loop.stop()
        loop.terminate()
        try await whileDown()
        try write(try String(contentsOfFile: loopConfig.config, encoding: .utf8).replacingOccurrences(of: "127.0.0.1:0", with: "127.0.0.1:\(port)"), to: URL(fileURLWithPath: loopConfig.config))
        loop = try RunningBinary(config: loopConfig.config)
        try await loop.start()
    }

    func listed(_ address: String) -> Bool { tailnet.nameservers.contains(address) }

    func stop() {
        watcher?.terminate()
        loop.terminate()
        loopConfig.remove()
        tailnet.stop()
        cluster.stop()
        try? FileManager.default.removeItem(at: directory)
    }
}

@Suite("tsdns-reconcile watch with the loop, as two processes", .timeLimit(.minutes(2)))
struct WatchTests {
    @Test func existingCreatedDeletedAndUnannotatedServicesReachTheList() async throws {
        let lab = try await WatchLab()
        defer { lab.stop() }
        lab.cluster.apply(.tailscale(namespace: "dns", name: "coredns", hostname: "dns-coredns"))
        try await lab.startWatcher()
        try await eventually("the existing Service's device is listed") { lab.listed("100.64.0.10") }

        lab.cluster.apply(.tailscale(namespace: "dns", name: "unbound", hostname: "dns-unbound"))
        try await eventually("the created Service's device is listed") { lab.listed("100.64.0.11") }

        // The annotation goes: the set no longer names it; withdrawn, so removed.
        lab.cluster.apply(SimulatedService(namespace: "dns", name: "unbound", annotations: ["tailscale.com/hostname": "dns-unbound"]))
        try await eventually("the un-annotated Service's device is removed") { !lab.listed("100.64.0.11") }

        lab.cluster.delete(namespace: "dns", name: "coredns")
        try await eventually("the deleted Service's device is removed") { !lab.listed("100.64.0.10") }
        #expect(lab.tailnet.nameservers == ["1.1.1.1", "100.64.0.1"])
        let watcher = try #require(lab.watcher)
        #expect(watcher.log.contains("sent the cluster's resolvers"))

        // Ready, and its metrics say what happened.
        let metrics = String(decoding: try await HTTPProbe.get(watcher.server + "/metrics"), as: UTF8.self)
        #expect(metricValue(metrics, #"tsdns_watch_events_total{type="ADDED"}"#) >= 1)
        #expect(metricValue(metrics, #"tsdns_watch_events_total{type="DELETED"}"#) >= 1)
        #expect(metricValue(metrics, #"tsdns_watch_sends_total{result="ok"}"#) >= 3)
        #expect(metricValue(metrics, #"tsdns_watch_services{cluster="prod"}"#) == 0)
        #expect(metricValue(metrics, "tsdns_last_success_timestamp_seconds") > 0)
        #expect(try await HTTPProbe.status(watcher.server + "/readyz") == 200)
        #expect(try await HTTPProbe.status(watcher.server + "/healthz") == 200)

        // SIGTERM: exit 0 within 5 s.
        let (status, took) = try await watcher.stop()
        #expect(status == 0)
        #expect(took < .seconds(5))
    }

    @Test func aServiceWhoseDeviceRegistersLaterIsPendingThenAdded() async throws {
        let lab = try await WatchLab()
        defer { lab.stop() }
        lab.cluster.apply(.tailscale(namespace: "dns", name: "later"))
        try await lab.startWatcher()
        try await eventually("the loop holds the set") {
            let sources = try await Binary.run(["ctl", "--server", lab.loop.server, "--token-file", lab.directory.appendingPathComponent("rpc-token").path, "--output", "json", "sources"], limit: .seconds(10))
            return sources.stdout.contains("\"pending\"") && sources.stdout.contains("dns-later")
        }
        #expect(!lab.listed("100.64.0.12"))
        lab.tailnet.addDevice(SimulatedDevices.device(12, hostname: "dns-later", tags: nil))
        // The next resend (resyncInterval 1s) reads the devices afresh.
        try await eventually("the device that registered is added") { lab.listed("100.64.0.12") }
    }

    @Test func aReconcilerRestartedEmptyGetsTheWholeSetAgain() async throws {
        let lab = try await WatchLab()
        defer { lab.stop() }
        lab.cluster.apply(.tailscale(namespace: "dns", name: "coredns", hostname: "dns-coredns"))
        try await lab.startWatcher()
        try await eventually("the Service's device is listed") { lab.listed("100.64.0.10") }
        try await lab.restartLoop {
            // While it is down, a Service is created: the watcher's sends fail and are retried.
            lab.cluster.apply(.tailscale(namespace: "dns", name: "unbound", hostname: "dns-unbound"))
            try await eventually("the watcher retries") { lab.watcher?.log.contains("sending the cluster's resolvers failed; retrying") == true }
        }
        try await eventually("the Service created meanwhile is added") { lab.listed("100.64.0.11") }
        let sources = try await Binary.run(["ctl", "--server", lab.loop.server, "--token-file", lab.directory.appendingPathComponent("rpc-token").path, "--output", "json", "sources"], limit: .seconds(10))
        #expect(sources.stdout.contains("kubernetes:prod/dns/coredns") && sources.stdout.contains("kubernetes:prod/dns/unbound"))
    }

    @Test func droppedWatchesAndACompactedHistoryRecover() async throws {
        let lab = try await WatchLab()
        defer { lab.stop() }
        try await lab.startWatcher()
        try await eventually("the watch is open") { lab.cluster.openWatches == 1 }
        // Every watch connection drops: the watcher watches again.
        lab.cluster.endWatches()
        lab.cluster.apply(.tailscale(namespace: "dns", name: "coredns", hostname: "dns-coredns"))
        try await eventually("a Service created around the drop is added") { lab.listed("100.64.0.10") }
        // The watch ends and its next attempt fails (the watcher backs off); meanwhile a
        // Service is created and the history compacted: the next watch, from the old
        // resourceVersion, gets an in-stream 410, and only a relist finds the Service.
        try await eventually("the watch is open again") { lab.cluster.openWatches == 1 }
        lab.cluster.inject(.init(.status(500), path: "watch=", times: 1))
        lab.cluster.endWatches()
        try await eventually("the failed watch attempt") { lab.cluster.requests.contains { $0.path.contains("watch=") && $0.status == 500 } }
        lab.cluster.apply(.tailscale(namespace: "dns", name: "unbound", hostname: "dns-unbound"))
        lab.cluster.compact()
        try await eventually("a Service created during the gap is added") { lab.listed("100.64.0.11") }
        let watcher = try #require(lab.watcher)
        let metrics = String(decoding: try await HTTPProbe.get(watcher.server + "/metrics"), as: UTF8.self)
        #expect(metricValue(metrics, "tsdns_watch_relists_total") >= 1)
        #expect(metricValue(metrics, #"tsdns_watch_events_total{type="ERROR"}"#) >= 1)
    }

    @Test func sendsThroughASOCKS5Proxy() async throws {
        let lab = try await WatchLab()
        defer { lab.stop() }
        let log = lab.directory.appendingPathComponent("microsocks.log").path
        let proxy = try await Microsocks.start(log: log)
        defer { proxy.stop() }
        let port = proxy.port
        lab.cluster.apply(.tailscale(namespace: "dns", name: "coredns", hostname: "dns-coredns"))
        try await lab.startWatcher(proxy: "socks5h://127.0.0.1:\(port)")
        try await eventually("the Service's device is listed") { lab.listed("100.64.0.10") }
        let seen = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(seen.contains("connected to 127.0.0.1:\(lab.loop.port)"), "\(seen)")
    }

    @Test func aWrongTokenIsLoggedClearlyAndRetried() async throws {
        let lab = try await WatchLab()
        defer { lab.stop() }
        let tokenFile = lab.directory.appendingPathComponent("watch-token")
        try write("wrong-token\n", to: tokenFile)
        lab.cluster.apply(.tailscale(namespace: "dns", name: "coredns", hostname: "dns-coredns"))
        try await lab.startWatcher(tokenFile: tokenFile.path)
        try await eventually("the rejection is logged") { lab.watcher?.log.contains("the reconciler rejects the watcher's token (watch.tokenFile); retrying") == true }
        #expect(try await HTTPProbe.status(try #require(lab.watcher).server + "/readyz") == 503)
        #expect(!lab.listed("100.64.0.10"))
        // The operator fixes the file: the next retry reads it and gets through.
        try write(lab.token + "\n", to: tokenFile)
        try await eventually("the set gets through", limit: .seconds(40)) { lab.listed("100.64.0.10") }
    }
}

/// Plain GETs for the watcher's listener.
enum HTTPProbe {
    static func get(_ url: String) async throws -> Data {
        try await HTTPClient().send(HTTPRequest(url: url)).body
    }

    static func status(_ url: String) async throws -> Int {
        try await HTTPClient().send(HTTPRequest(url: url)).status
    }
}
