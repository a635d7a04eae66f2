import Foundation
import Synchronization
import Hummingbird
import Logging
import NIOCore
import Prometheus
import ServiceLifecycle
import TSDNSConfig
import TSDNSHTTP
import TSDNSKubernetes
import TSDNSCore
import TSDNSRuntime
import TSDNSTailscale

public enum DaemonError: Error, CustomStringConvertible {
    /// The RPC listener could not be opened (port in use, not permitted): nothing was read
    /// or written.
    case listen(address: String, reason: String)

    public var description: String {
        switch self {
        case .listen(let address, let reason):
            return "cannot listen on \(address) (rpc.listen): \(reason); is another tsdns-reconcile running? Nothing was read or written."
        }
    }
}

/// `tsdns-reconcile run` without `--once`: the reconcile loop and the RPC listener in one
/// ServiceGroup. The listener opens first; the loop's first API request waits for it. On
/// SIGTERM/SIGINT/SIGQUIT the loop stops first (a write in flight gets its answer), then
/// the listener closes.
public final class Daemon: Sendable {
    public let controller: Controller
    public let registry: PrometheusCollectorRegistry
    private let group: ServiceGroup
    private let listening: ListenSignal
    private let listenAddress: String

    /// - Parameters:
    ///   - signals: whether SIGTERM/SIGINT/SIGQUIT stop it (the CLI) or only `shutdown()` (tests).
    ///   - minimumGap: the least time between two event-triggered runs.
    /// - Throws: `StateFileError` when `state.file` was written by a newer release;
    ///   `KubeconfigError` when a cluster's credentials cannot be resolved.
    public init(
        config: Config, tailnet: String, apiURL: String, credential: Credential,
        logger: Logger, signals: Bool = true, retry: RetryPolicy = RetryPolicy(),
        minimumGap: Duration = .milliseconds(200), maxRetryDelay: Duration = .seconds(3), maxPending: Int = 10_000,
        now: @escaping @Sendable () -> Date = Date.init,
        probeEndpoint: (@Sendable (IPAddress) -> (IPAddress, Int))? = nil,
        kubernetesOptions: KubernetesClient.Options = KubernetesClient.Options(requestTimeout: .seconds(5)),
        onRun: (@Sendable (Plan) -> Void)? = nil
    ) throws {
        let registry = PrometheusCollectorRegistry()
        let metrics = ReconcileMetrics(factory: PrometheusMetricsFactory(registry: registry))
        metrics.exportZeros(targets: config.resolvers.targets, probes: config.healthcheck.probe == .dns)
        // Short attempts: a hung API is retried soon, so the loop notices an outage's end.
        let client = TailscaleClient(
            baseURL: apiURL, tailnet: tailnet, credential: credential,
            http: HTTPClient(options: HTTPClientOptions(totalTimeout: .seconds(5))), retry: retry, logger: logger,
            onResponse: { metrics.recordAPIResponse(api: "tailscale", code: $0) }
        )
        var clusters: [ClusterSource] = []
        for (index, cluster) in config.clusters.enumerated() {
            clusters.append(try ClusterSource.make(
                cluster, index: index, logger: logger, options: kubernetesOptions,
                onResponse: { metrics.recordAPIResponse(api: "kubernetes", code: $0) }
            ))
        }
        let reconciler = Reconciler(
            client: client, config: config, tailnet: tailnet, logger: logger, now: now, probeEndpoint: probeEndpoint, clusters: clusters
        )
        let controller = try Controller(reconciler: reconciler, metrics: metrics, logger: logger, minimumGap: minimumGap, maxPending: maxPending, now: now, onRun: onRun)
        let listening = ListenSignal()
        var services: [any Service] = []
        if let address = ListenAddress(config.rpc.listen) {
            let connections = ConnectionCount(limit: config.rpc.maxConnections)
            let handler = RPCHandler(
                controller: controller, registry: registry,
                token: config.rpc.tokenFile.map(TokenFile.init), allowedHosts: config.rpc.allowedHosts, logger: logger
            )
            // A connection whose headers (or body) stall for 10 s is closed; so is an idle
            // keep-alive one after 10 s (Hummingbird has one idle timer for both).
            let app = Application(
                responder: CallbackResponder<BasicRequestContext> { request, _ in await handler.respond(request) },
                server: .http1(configuration: .init(
                    additionalChannelHandlers: [CloseAfterResponseHandler(), ConnectionLimitGate(connections)], idleTimeout: .seconds(10)
                )),
                configuration: ApplicationConfiguration(
                    address: .hostname(address.host, port: address.port), serverName: "tsdns-reconcile",
                    availableConnectionsDelegate: connections.delegate
                ),
                onServerRunning: listening.announce("RPC listener ready", address, logger),
                logger: logger
            )
            services.append(app)
        } else {
            listening.set(nil)
        }
        // Graceful shutdown runs in reverse order: the loop first, then the listener.
        services.append(ReconcileLoop(
            controller: controller, logger: logger, maxRetryDelay: maxRetryDelay,
            listenerReady: { [listening] in _ = await listening.wait() }
        ))
        self.group = commandGroup(services, signals: signals, logger: logger)
        self.controller = controller
        self.registry = registry
        self.listening = listening
        self.listenAddress = config.rpc.listen
    }

    /// Runs until shut down. Never throws for API trouble (that is logged and retried);
    /// throws `DaemonError.listen` when the listener cannot be opened.
    public func run() async throws {
        try await runCommandGroup(group, listening: listening, address: listenAddress)
    }

    /// The RPC listener's port once it is bound (nil when `rpc.listen` is "").
    public func port() async -> Int? {
        await listening.wait()
    }

    public func shutdown() async {
        await group.triggerGracefulShutdown()
    }
}

/// The service group of a long-running command (`run`, `watch`): with `signals`, SIGTERM,
/// SIGINT and SIGQUIT stop it gracefully, within 4 s.
func commandGroup(_ services: [any Service], signals: Bool, logger: Logger) -> ServiceGroup {
    var configuration = ServiceGroupConfiguration(
        services: services, gracefulShutdownSignals: signals ? [.sigterm, .sigint, .sigquit] : [], logger: logger
    )
    configuration.maximumGracefulShutdownDuration = .seconds(4)
    return ServiceGroup(configuration: configuration)
}

/// Runs a command's group. Its services never throw for API trouble (that is logged and
/// retried): a failure of the group is its listener's, `DaemonError.listen`.
func runCommandGroup(_ group: ServiceGroup, listening: ListenSignal, address: String) async throws {
    // Whoever waits for the port is answered even if the listener never came up.
    defer { listening.set(nil) }
    do {
        try await group.run()
    } catch {
        let reason = "\(error)".replacingOccurrences(of: "bind(descriptor:ptr:bytes:): ", with: "")
        throw DaemonError.listen(address: address, reason: reason)
    }
}

/// Hands the bound port to whoever waits for it.
final class ListenSignal: Sendable {
    private let state = Mutex<(port: Int??, waiters: [CheckedContinuation<Int?, Never>])>((nil, []))

    /// A listener's `onServerRunning`: logs `message` with the bound address and hands the port over.
    func announce(_ message: String, _ address: ListenAddress, _ logger: Logger) -> @Sendable (any Channel) async -> Void {
        { [self] channel in
            let port = channel.localAddress?.port ?? address.port
            logger.info("\(message)", metadata: ["address": "\(address.host):\(port)"])
            set(port)
        }
    }

    /// The first value wins.
    func set(_ port: Int?) {
        let waiters = state.withLock { state in
            if state.port != nil { return [CheckedContinuation<Int?, Never>]() }
            state.port = .some(port)
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(returning: port) }
    }

    /// The port, or nil when there is none; cancelling the waiting task ends the wait.
    func wait() async -> Int? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let ready: Int?? = state.withLock { state in
                    if let port = state.port { return .some(port) }
                    state.waiters.append(continuation)
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            set(nil)
        }
    }
}
