import Foundation
import Hummingbird
import Logging
import Prometheus
import ServiceLifecycle
import TSDNSConfig
import TSDNSCore
import TSDNSKubernetes
import TSDNSRuntime

/// A config that `watch` cannot run with.
public struct WatchConfigError: Error, CustomStringConvertible {
    public var description: String
}

/// `tsdns-reconcile watch`: the watcher of one cluster, its sender, the resync timer and
/// (with `watch.listen`) a listener for `/healthz`, `/readyz` and `/metrics`, as one
/// service group that stops on SIGTERM, SIGINT or SIGQUIT.
public final class WatchDaemon: Sendable {
    public let watcher: ClusterWatcher
    public let sender: SourceSender
    public let registry: PrometheusCollectorRegistry
    private let group: ServiceGroup
    private let listening: ListenSignal
    private let listenAddress: String

    /// - Throws: `WatchConfigError` when `watch.server` or the cluster is missing,
    ///   `KubeconfigError` when the cluster's credentials cannot be resolved.
    public init(
        config: Config, logger: Logger, signals: Bool = true,
        environment: ClusterAccess.Environment = ClusterAccess.Environment(),
        kubernetesOptions: KubernetesClient.Options = KubernetesClient.Options()
    ) throws {
        guard let server = config.watch.server else {
            throw WatchConfigError(description: "watch.server: is required for tsdns-reconcile watch (the reconciler's RPC URL)")
        }
        let index: Int
        if let name = config.watch.cluster {
            guard let found = config.clusters.firstIndex(where: { $0.name == name }) else {
                throw WatchConfigError(description: "watch.cluster: \(ConfigIssue.quote(name)) is not a name in kubernetes.clusters")
            }
            index = found
        } else {
            guard config.clusters.count == 1 else {
                throw WatchConfigError(description: config.clusters.isEmpty
                    ? "kubernetes.clusters: watch needs the cluster to watch"
                    : "watch.cluster: is required when kubernetes.clusters names more than one cluster")
            }
            index = 0
        }
        let cluster = config.clusters[index]
        let registry = PrometheusCollectorRegistry()
        let factory = PrometheusMetricsFactory(registry: registry)
        let metrics = WatchMetrics(factory: factory, cluster: cluster.name)
        let apiMetrics = ReconcileMetrics(factory: factory)
        let source = try ClusterSource.make(cluster, index: index, logger: logger, options: kubernetesOptions, onResponse: { code in
            apiMetrics.recordAPIResponse(api: "kubernetes", code: code)
        })
        let proxy = config.watch.proxy.isEmpty ? nil : config.watch.proxy
        let sender = SourceSender(name: "kubernetes:\(cluster.name)", server: server, tokenFile: config.watch.tokenFile, proxy: proxy, logger: logger, metrics: metrics)
        let watcher = ClusterWatcher(source: source, sender: sender, metrics: metrics, logger: logger)
        let listening = ListenSignal()
        var services: [any Service] = []
        if let address = ListenAddress(config.watch.listen) {
            let app = Application(
                responder: CallbackResponder<BasicRequestContext> { request, _ in
                    Self.respond(request, watcher: watcher, sender: sender, registry: registry)
                },
                server: .http1(configuration: .init(additionalChannelHandlers: [CloseAfterResponseHandler()], idleTimeout: .seconds(10))),
                configuration: ApplicationConfiguration(address: .hostname(address.host, port: address.port), serverName: "tsdns-reconcile-watch"),
                onServerRunning: listening.announce("watch listener ready", address, logger),
                logger: logger
            )
            services.append(app)
        } else {
            listening.set(nil)
        }
        services.append(WatchService(watcher: watcher, sender: sender, resync: config.watch.resyncInterval, logger: logger))
        group = commandGroup(services, signals: signals, logger: logger)
        self.watcher = watcher
        self.sender = sender
        self.registry = registry
        self.listening = listening
        listenAddress = config.watch.listen
        logger.info("watching", metadata: [
            "cluster": "\(cluster.name)", "namespace": "\(cluster.namespace.flatMap { $0.isEmpty ? nil : $0 } ?? "(all)")",
            "annotation": "\(cluster.annotationKey)=\(cluster.annotationValue)", "server": "\(server)",
            "via": "\(source.client.access.origin)", "proxy": "\(proxy ?? "environment")",
        ])
    }

    public func run() async throws {
        try await runCommandGroup(group, listening: listening, address: listenAddress)
    }

    public func port() async -> Int? { await listening.wait() }
    public func shutdown() async { await group.triggerGracefulShutdown() }

    /// Ready once the cluster has been listed and the reconciler has taken a set.
    static func respond(_ request: Request, watcher: ClusterWatcher, sender: SourceSender, registry: PrometheusCollectorRegistry) -> Response {
        guard request.method == .get || request.method == .head else { return RPCError(405, "only GET").response }
        switch request.uri.path {
        case "/healthz":
            return raw(200, Data(#"{"status":"ok"}"#.utf8))
        case "/readyz":
            let ready = watcher.hasListed && sender.hasSent
            let reason = !watcher.hasListed ? "the cluster has not been listed yet" : sender.lastError ?? "no set has been sent yet"
            let body = RPCWire.Status(ready ? "ready" : "not ready", error: ready ? sender.lastError : reason)
            return raw(ready ? 200 : 503, (try? JSONEncoder().encode(body)) ?? Data())
        case "/metrics":
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
            return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: registry.emitToString())))
        default:
            return RPCError(404, "no such endpoint: \(TerminalText.escape(request.uri.path))").response
        }
    }
}

/// The watcher, the sender and the resync timer, inside one `run()`.
struct WatchService: Service {
    let watcher: ClusterWatcher
    let sender: SourceSender
    let resync: Duration
    let logger: Logger

    func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await watcher.run() }
            group.addTask { await sender.run() }
            group.addTask {
                while !Task.isCancelled {
                    do { try await Task.sleep(for: resync) } catch { return }
                    sender.resend()
                }
            }
            try? await gracefulShutdown()
            group.cancelAll()
        }
        logger.info("watch stopped")
    }
}
