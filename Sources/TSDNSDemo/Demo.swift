import Foundation
import Logging
import Synchronization
import TSDNSConfig
import TSDNSCore
import TSDNSRuntime
import TSDNSServer
import TSDNSSimulator

/// `tsdns-reconcile demo`: the real loop, with its RPC listener, against a simulated tailnet,
/// and a story a newcomer can follow: a resolver dies, a new one joins, a watched cluster's
/// Service waits for its node, a pulled cluster's Service is picked up, a resolver whose DNS server stops answering leaves and comes back, an
/// RPC remove keeps a node out. Every wait is for something the loop does.
public struct Demo: Sendable {
    public var write: @Sendable (String) -> Void
    public var logger: Logger
    public var limit: Duration

    public init(logger: Logger, limit: Duration, write: @escaping @Sendable (String) -> Void) {
        self.logger = logger
        self.limit = limit
        self.write = write
    }

    public func run() async throws {
        let clock = ContinuousClock()
        let start = clock.now
        let deadline = start + limit
        let tailnet = try SimulatedTailnet(tailnet: "demo.example.com")
        defer { tailnet.stop() }
        let prod1 = SimulatedDevices.device(1, hostname: "dns-prod-1")
        let prod2 = SimulatedDevices.device(2, hostname: "dns-prod-2")
        let prod3 = SimulatedDevices.device(3, hostname: "dns-prod-3")
        let coredns = SimulatedDevices.device(10, hostname: "coredns-prod", tags: nil)
        let unbound = SimulatedDevices.device(11, hostname: "dns-unbound", tags: nil)
        tailnet.setDevices([prod1, prod2, SimulatedDevices.device(20, hostname: "laptop", tags: nil)])
        tailnet.setNameservers(["1.1.1.1", prod1.addresses[0], prod2.addresses[0]])

        // Every resolver answers DNS on a local port of its own; the probe is pointed there.
        var resolvers: [IPAddress: SimulatedResolver] = [:]
        for device in [prod1, prod2, prod3, coredns, unbound] {
            resolvers[IPAddress(device.addresses[0])!] = try SimulatedResolver.start()
        }
        defer { resolvers.values.forEach { $0.stop() } }
        let ports = resolvers.mapValues(\.port)
        let loopback = IPAddress("127.0.0.1")!

        var config = Config()
        config.healthcheck.probe = .dns
        config.healthcheck.dns.timeout = .milliseconds(300)
        config.healthcheck.interval = .seconds(1)
        config.sync.interval = .seconds(3)
        config.sync.pendingTTL = .seconds(30)
        config.rpc.listen = "127.0.0.1:0"

        // Two simulated clusters, reached as through a local `kubectl proxy`: prod is watched
        // by `tsdns-reconcile watch` (here in-process), staging is read by the loop itself
        // on every sync (pull mode).
        let cluster = try SimulatedCluster()
        defer { cluster.stop() }
        cluster.allowAnonymous()
        let prodCluster = try SimulatedCluster()
        defer { prodCluster.stop() }
        prodCluster.allowAnonymous()
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("tsdns-demo-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let kubeconfig = scratch.appendingPathComponent("staging.kubeconfig")
        try cluster.kubeconfig(user: [], context: "staging").write(to: kubeconfig, atomically: true, encoding: .utf8)
        var staging = Config.Cluster(name: "staging")
        staging.kubeconfig = kubeconfig.path
        staging.namespace = "dns"
        config.clusters = [staging]
        let prodKubeconfig = scratch.appendingPathComponent("prod.kubeconfig")
        try prodCluster.kubeconfig(user: [], context: "prod").write(to: prodKubeconfig, atomically: true, encoding: .utf8)
        var prod = Config.Cluster(name: "prod")
        prod.kubeconfig = prodKubeconfig.path
        prod.namespace = "dns"
        let write = self.write
        // What the loop reported: the story moves on once the operator has seen it.
        let reported = Mutex<[String]>([])
        let elapsed = { @Sendable () -> String in
            let seconds = (clock.now - start).seconds
            return String(format: "[%5.1fs]", seconds)
        }
        let loopLogger = logger
        let makeDaemon = { @Sendable (config: Config) throws -> Daemon in
            try Daemon(
                config: config, tailnet: tailnet.tailnetName, apiURL: tailnet.baseURL, credential: .apiKey(tailnet.apiKey),
                logger: loopLogger, signals: false,
                probeEndpoint: { address in (loopback, ports[address] ?? 9) },
                onRun: { plan in
                    guard plan.changed else { return }
                    let text = PlanRenderer.text(plan)
                    write("\(elapsed()) the loop applied a \(plan.mode.rawValue):\n" + text.indented + "\n")
                    reported.withLock { $0.append(text) }
                }
            )
        }
        var daemon = try makeDaemon(config)
        let first = daemon
        var running = Task { try await first.run() }
        defer { running.cancel() }
        guard let port = await daemon.port() else { return }
        let rpc = RPCClient(server: "http://127.0.0.1:\(port)", token: nil)

        // The watcher of prod, as `tsdns-reconcile watch` runs it, sending to the loop's RPC port.
        var watchConfig = Config()
        watchConfig.clusters = [prod]
        watchConfig.watch.server = "http://127.0.0.1:\(port)"
        watchConfig.watch.resyncInterval = .seconds(2)
        let watcher = try WatchDaemon(config: watchConfig, logger: logger, signals: false)
        let watching = Task { try await watcher.run() }
        defer { watching.cancel() }

        write("""
        A simulated tailnet serves the Tailscale API on \(tailnet.baseURL); the real loop runs
        against it with a healthcheck every 1s and a sync every 3s, sends every resolver a DNS
        query (healthcheck.probe: dns), and its RPC API listens on http://127.0.0.1:\(port).
        A watcher (tsdns-reconcile watch) follows the cluster prod (\(prodCluster.baseURL)) and sends
        its whole set of annotated Services to the loop; every sync also lists the annotated
        Services of a second cluster, staging (\(cluster.baseURL)), itself (pull mode).
        Global nameservers: \(tailnet.nameservers.joined(separator: ", "))


        """)

        func until(_ what: String, _ condition: () async -> Bool) async throws -> Bool {
            while clock.now < deadline {
                if await condition() { return true }
                try await Task.sleep(for: .milliseconds(50))
            }
            write("\(elapsed()) time is up (--seconds) while waiting until \(what)\n")
            return false
        }
        func show(_ step: String) { write("\(elapsed()) \(step)\n") }
        func listed(_ device: Device) -> Bool { tailnet.nameservers.contains(device.addresses[0]) }
        func seen(_ line: String) -> Bool { reported.withLock { $0.contains { $0.contains(line) } } }

        story: do {
            guard try await until("the loop is ready", { tailnet.requests.count >= 2 }) else { break story }

            show("1. dns-prod-2 loses its connection to the control plane.")
            tailnet.updateDevice(nodeId: prod2.nodeId) { $0.connectedToControl = false }
            guard try await until("dns-prod-2 is removed", { !listed(prod2) && seen("- \(prod2.addresses[0])") }) else { break story }
            show("   → removed by the next run (every healthcheck and sync judges health).\n")

            show("2. A new resolver, dns-prod-3 (tag:dns), joins the tailnet.")
            tailnet.addDevice(prod3)
            guard try await until("dns-prod-3 is added", { listed(prod3) && seen("+ \(prod3.addresses[0])") }) else { break story }
            show("   → added by the next sync (a healthcheck never adds).\n")

            show("3. In the cluster prod, the Service dns/coredns is created (tailscale.com/tags: \"tag:k8s,tag:dns\",")
            show("   tailscale.com/hostname: coredns-prod). Its proxy's node has not registered yet.")
            prodCluster.apply(.tailscale(namespace: "dns", name: "coredns", hostname: "coredns-prod"))
            guard try await until("the watcher's set arrives", { ((try? await Self.sourceStates(rpc)) ?? "") != "" }) else { break story }
            show("   → the watcher sent PUT /v1/sources/kubernetes:prod; GET /v1/sources:")
            let sources = try await rpc.call("GET", "/v1/sources")
            write(SourcesTable.render(sources.body).indented + "\n")
            show("   The node registers and connects.")
            tailnet.addDevice(coredns)
            guard try await until("coredns-prod is added", { listed(coredns) && seen("+ \(coredns.addresses[0])") }) else { break story }
            show("   → pending for as long as the set names it, then added.\n")

            show("4. In the staging cluster, the Service dns/unbound is created with tailscale.com/tags: \"tag:k8s,tag:dns\";")
            show("   its proxy's device, dns-unbound, is in the tailnet (no resolver tag of its own).")
            tailnet.addDevice(unbound)
            cluster.apply(.tailscale(namespace: "dns", name: "unbound", hostname: "dns-unbound"))
            guard try await until("dns-unbound is added", { listed(unbound) && seen("+ \(unbound.addresses[0])") }) else { break story }
            show("   → added by the next sync, which lists the cluster (pull mode): kubernetes:staging/dns/unbound.\n")

            show("5. dns-prod-3's DNS server stops answering; its node stays connected to the control plane.")
            resolvers[IPAddress(prod3.addresses[0])!]?.answering = false
            guard try await until("dns-prod-3 is removed", { !listed(prod3) && seen("- \(prod3.addresses[0])") }) else { break story }
            show("   → removed by the next run: dns probe: timeout after 300ms.")
            resolvers[IPAddress(prod3.addresses[0])!]?.answering = true
            show("   It answers again.")
            guard try await until("dns-prod-3 is back", { listed(prod3) }) else { break story }
            show("   → listed again by the next sync.\n")

            show("6. The reconciler is stopped and started again with nothing in memory (no state.file).")
            await daemon.shutdown()
            _ = try? await running.value
            var restarted = config
            restarted.rpc.listen = "127.0.0.1:\(port)"
            daemon = try makeDaemon(restarted)
            let second = daemon
            running = Task { try await second.run() }
            _ = await daemon.port()
            guard try await until("the watcher's next send restores the set", { ((try? await Self.sourceStates(rpc)) ?? "") != "" }) else { break story }
            let restored = (try? await Self.sourceStates(rpc)) ?? ""
            show("   → the watcher's next send (watch.resyncInterval: 2s) told it the whole set again: \(restored).\n")

            show("7. The annotation is removed from dns/coredns: the watcher's next set no longer names it.")
            prodCluster.apply(SimulatedService(namespace: "dns", name: "coredns", annotations: ["tailscale.com/hostname": "coredns-prod"]))
            guard try await until("coredns-prod is removed", { !listed(coredns) && seen("- \(coredns.addresses[0])") }) else { break story }
            show("   → withdrawn by kubernetes:prod, removed at once.\n")

            show("8. An operator takes dns-prod-1 out: DELETE /v1/resolvers/dns-prod-1")
            let removed = try await rpc.call("DELETE", "/v1/resolvers/dns-prod-1")
            show("   → HTTP \(removed.status); it stays excluded until re-added, gone, or sync.exclusionTTL.\n")

            let inventory = try await rpc.call("GET", "/v1/inventory")
            show("What `tsdns-reconcile ctl status` shows now:\n")
            write(InventoryTable.render(inventory.object ?? [:]).indented + "\n")
            show("Global nameservers: \(tailnet.nameservers.joined(separator: ", ")) — 1.1.1.1 never moved.")
        }
        await watcher.shutdown()
        _ = try? await watching.value
        await daemon.shutdown()
        _ = try? await running.value
    }

    /// What `GET /v1/sources` says of each member: `coredns-prod pending`, ...; "" before any set.
    static func sourceStates(_ rpc: RPCClient) async throws -> String {
        let answer = try await rpc.call("GET", "/v1/sources")
        let sets = answer.object?["sources"] as? [[String: Any]] ?? []
        return sets.flatMap { $0["resolvers"] as? [[String: Any]] ?? [] }
            .map { "\($0["node"] as? String ?? "?") \($0["state"] as? String ?? "?")" }.joined(separator: ", ")
    }
}

extension String {
    var indented: String {
        split(separator: "\n", omittingEmptySubsequences: false).map { $0.isEmpty ? "" : "    " + $0 }.joined(separator: "\n")
    }
}
