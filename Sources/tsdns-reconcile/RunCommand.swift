import ArgumentParser
import Foundation
import Logging
import TSDNSConfig
import TSDNSCore
import TSDNSRuntime
import TSDNSServer
import TSDNSTailscale

extension OutputFormat: ExpressibleByArgument {}

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Reconcile the tailnet's nameserver lists: once, as a dry run, or as a loop."
    )

    @OptionGroup var global: GlobalOptions
    @ParentCommand var root: TSDNSReconcile

    @Option(help: "Config file (default: $TSDNS_CONFIG, then /etc/tsdns-reconcile/config.yaml).")
    var config: String?

    @Flag(help: "One sync (which includes the healthcheck), apply, print the plan, exit.")
    var once = false

    @Flag(help: "Read everything and print the plan; write nothing. Exit 2 when changes are pending.")
    var dryRun = false

    @Option(help: "Plan format: text, json or markdown.")
    var output: OutputFormat = .text

    func run() async throws {
        let logger = global.bootstrap(root)
        let loader = ConfigLoader()
        let resolved: ResolvedConfig
        do {
            resolved = try loader.load(path: loader.path(config), for: .reconcile)
        } catch {
            printError(error.description)
            throw Exit.configError
        }
        if resolved.config.healthcheck.probe == .dns {
            logger.warning("healthcheck.probe: dns is not implemented in this build; health comes from the control plane only")
        }
        guard once || dryRun else {
            try await runLoop(resolved, logger: logger)
            return
        }
        let client = TailscaleClient(
            baseURL: resolved.apiURL, tailnet: resolved.tailnet, credential: resolved.credential!,
            logger: logger
        )
        let reconciler = Reconciler(client: client, config: resolved.config, tailnet: resolved.tailnet, logger: logger)
        let result: RunResult
        do {
            result = try await reconciler.run(RunRequest(mode: .sync, dryRun: dryRun, failureThreshold: 1))
        } catch {
            logger.error("run failed; nothing was written after the failure", metadata: ["error": "\(error)"])
            printError("error: \(error)")
            throw Exit.failure
        }
        print(PlanRenderer.render(result.plan, as: output), terminator: "")
        if dryRun && result.plan.changed { throw Exit.changesPending }
    }

    /// The long-running loop: until SIGTERM/SIGINT, then exit 0.
    private func runLoop(_ resolved: ResolvedConfig, logger: Logger) async throws {
        // A parent (a container runtime, a test harness) may have left SIGTERM/SIGINT
        // blocked; the graceful stop depends on receiving them.
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGTERM)
        sigaddset(&signals, SIGINT)
        pthread_sigmask(SIG_UNBLOCK, &signals, nil)
        let daemon = try Daemon(
            config: resolved.config, tailnet: resolved.tailnet, apiURL: resolved.apiURL,
            credential: resolved.credential!, logger: logger
        )
        logger.info("tsdns-reconcile running", metadata: [
            "healthcheck": "\(DurationText.format(resolved.config.healthcheck.interval))",
            "sync": "\(DurationText.format(resolved.config.sync.interval))",
            "rpc": "\(resolved.config.rpc.listen.isEmpty ? "disabled" : resolved.config.rpc.listen)",
        ])
        do {
            try await daemon.run()
        } catch {
            logger.critical("stopped", metadata: ["error": "\(error)"])
            throw Exit.failure
        }
        logger.info("stopped")
    }
}
