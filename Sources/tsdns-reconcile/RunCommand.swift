import ArgumentParser
import Foundation
import Logging
import TSDNSConfig
import TSDNSCore
import TSDNSKubernetes
import TSDNSRuntime
import TSDNSServer
import TSDNSTailscale
import UnixSignals

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
            fail(error.description)
            throw Exit.configError
        }
        for warning in resolved.warnings { logger.warning("\(warning)") }
        guard once || dryRun else {
            try await runLoop(resolved, logger: logger)
            return
        }
        try await runOnce(resolved, logger: logger)
    }

    /// An error for whoever reads the output: `{"error": ...}` on stdout with `--output
    /// json` (a script parses it), one line on stderr otherwise.
    private func fail(_ message: String) {
        if output == .json {
            let data = (try? JSONEncoder().encode(["error": message])) ?? Data()
            print(String(decoding: data, as: UTF8.self))
        } else {
            printError("error: \(message)")
        }
    }

    private enum OnceOutcome: Sendable {
        case finished(RunResult)
        case failed(Error)
        case signal(String)
    }

    /// One sync. SIGTERM, SIGINT, SIGHUP or SIGQUIT stop it like the loop stops: a run still reading
    /// is abandoned (nothing written), a write in flight gets up to 3 s for its answer and
    /// its plan is printed; exit 0 either way.
    private func runOnce(_ resolved: ResolvedConfig, logger: Logger) async throws {
        let client = TailscaleClient(
            baseURL: resolved.apiURL, tailnet: resolved.tailnet, credential: resolved.credential!,
            logger: logger
        )
        let clusters: [ClusterSource]
        do {
            clusters = try resolved.config.clusters.enumerated().map { index, cluster throws(KubeconfigError) in
                try ClusterSource.make(cluster, index: index, logger: logger)
            }
        } catch {
            fail(error.description)
            throw Exit.configError
        }
        let reconciler = Reconciler(client: client, config: resolved.config, tailnet: resolved.tailnet, logger: logger, clusters: clusters)
        let request = RunRequest(mode: .sync, dryRun: dryRun, failureThreshold: 1)
        let progress = WriteProgress()
        unblockStopSignals()
        let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint, .sighup, .sigquit)
        var stoppedBy: String?
        let outcome: OnceOutcome = await withTaskGroup(of: OnceOutcome?.self) { group in
            group.addTask {
                do { return .finished(try await reconciler.run(request, progress: progress)) } catch { return .failed(error) }
            }
            group.addTask {
                for await signal in signals { return .signal("\(signal)") }
                return nil
            }
            var outcome: OnceOutcome = .failed(CancellationError())
            while let next = await group.next() {
                guard let next else { continue }
                if case .signal(let name) = next {
                    stoppedBy = name
                    let writeSent = progress.stop()
                    logger.notice("stopping", metadata: ["signal": "\(name)", "writeSent": .stringConvertible(writeSent)])
                    if !writeSent {
                        group.cancelAll()
                    } else if !(await progress.waitForFinish(upTo: .seconds(3))) {
                        group.cancelAll()
                    }
                    continue
                }
                outcome = next
                group.cancelAll()
            }
            return outcome
        }
        switch outcome {
        case .finished(let result):
            print(PlanRenderer.render(result.plan, as: output), terminator: "")
            KeptUntilExit.keep(result)
            if stoppedBy == nil && dryRun && result.plan.changed { throw Exit.changesPending }
        case .failed(let error):
            if let stoppedBy {
                let written = progress.writeSent ? "a write was sent; its outcome is unknown and the next run reads the lists again" : "nothing was written"
                logger.notice("stopped before the run finished", metadata: ["signal": "\(stoppedBy)", "outcome": "\(written)"])
                if output == .json { fail("stopped by \(stoppedBy): \(written)") }
                return
            }
            fail("\(error)")
            throw Exit.failure
        case .signal:
            return
        }
    }

    /// The long-running loop: until SIGTERM/SIGINT/SIGQUIT, then exit 0. SIGHUP is logged
    /// and ignored (a config reload is not supported).
    private func runLoop(_ resolved: ResolvedConfig, logger: Logger) async throws {
        unblockStopSignals()
        let daemon: Daemon
        do {
            daemon = try Daemon(
                config: resolved.config, tailnet: resolved.tailnet, apiURL: resolved.apiURL,
                credential: resolved.credential!, logger: logger
            )
        } catch {
            fail("\(error)")
            throw Exit.configError
        }
        logger.info("tsdns-reconcile running", metadata: [
            "healthcheck": "\(DurationText.format(resolved.config.healthcheck.interval))",
            "sync": "\(DurationText.format(resolved.config.sync.interval))",
            "rpc": "\(resolved.config.rpc.listen.isEmpty ? "disabled" : resolved.config.rpc.listen)",
            "stateFile": "\(resolved.config.state.file ?? "none")",
        ])
        do {
            try await runIgnoringHangups(logger: logger) { try await daemon.run() }
        } catch {
            fail("\(error)")
            throw Exit.failure
        }
        logger.info("stopped")
    }
}
