import ArgumentParser
import Foundation
import Logging
import TSDNSConfig
import TSDNSServer

struct WatchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch",
        abstract: "Watch one cluster's annotated Services and send their whole set to the reconciler (PUT /v1/sources)."
    )

    @OptionGroup var global: GlobalOptions
    @ParentCommand var root: TSDNSReconcile

    @Option(help: "Config file (default: $TSDNS_CONFIG, then /etc/tsdns-reconcile/config.yaml).")
    var config: String?

    func run() async throws {
        let logger = global.bootstrap(root)
        let loader = ConfigLoader()
        let resolved: ResolvedConfig
        do {
            resolved = try loader.load(path: loader.path(config), for: .watch)
        } catch {
            printError(error.description)
            throw Exit.configError
        }
        for warning in resolved.warnings { logger.warning("\(warning)") }
        unblockStopSignals()
        let daemon: WatchDaemon
        do {
            daemon = try WatchDaemon(config: resolved.config, logger: logger)
        } catch {
            printError("error: \(error)")
            throw Exit.configError
        }
        do {
            try await runIgnoringHangups(logger: logger) { try await daemon.run() }
        } catch {
            printError("error: \(error)")
            throw Exit.failure
        }
        logger.info("stopped")
    }
}
