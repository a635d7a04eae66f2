import ArgumentParser
import Foundation
import Synchronization
import UnixSignals
import Logging

enum LogFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// `--log-level` and `--log-format`, accepted before the subcommand or after it. Logs go to
/// standard error; standard output carries only the command's result.
struct GlobalOptions: ParsableArguments {
    @Option(help: "trace, debug, info, notice, warning, error or critical (default: info).")
    var logLevel: Logger.Level?

    @Option(help: "text or json, one JSON object per line (default: text).")
    var logFormat: LogFormat?

    /// Bootstraps logging once; a value given after the subcommand wins over one before it.
    func bootstrap(_ root: TSDNSReconcile, defaultLevel: Logger.Level = .info) -> Logger {
        let level = logLevel ?? root.global.logLevel ?? defaultLevel
        let format = logFormat ?? root.global.logFormat ?? .text
        LoggingSystem.bootstrap { label in
            var handler = LineLogHandler(label: label, format: format)
            handler.logLevel = level
            return handler
        }
        return Logger(label: "tsdns")
    }
}

/// Exit codes (README "Exit codes").
enum Exit {
    static let failure = ExitCode(1)
    static let changesPending = ExitCode(2)
    static let configError = ExitCode(78)
}

/// What a one-shot command leaves to the process's exit instead of freeing it: a dry run
/// of 10,000 devices spent about 2 ms releasing them (strings, lists) right before exiting.
enum KeptUntilExit {
    private static let kept = Mutex<[any Sendable]>([])

    static func keep(_ value: any Sendable) { kept.withLock { $0.append(value) } }
}

func printError(_ message: String) {
    FileHandle.standardError.write(Data((message.hasSuffix("\n") ? message : message + "\n").utf8))
}

/// A parent (a container runtime, a test harness) may have left the stop signals
/// blocked; the graceful stop depends on receiving them.
func unblockStopSignals() {
    var signals = sigset_t()
    sigemptyset(&signals)
    for signal in [SIGTERM, SIGINT, SIGHUP, SIGQUIT] { sigaddset(&signals, signal) }
    pthread_sigmask(SIG_UNBLOCK, &signals, nil)
}

/// Runs a long-lived service group (the loop, the watcher) until it stops; SIGHUP meanwhile
/// is logged and ignored: a config reload is not supported.
func runIgnoringHangups(logger: Logger, _ run: @escaping @Sendable () async throws -> Void) async throws {
    let hangups = await UnixSignalsSequence(trapping: .sighup)
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask {
            for await _ in hangups {
                logger.notice("SIGHUP ignored: the config is not reloaded; restart to apply a new one")
            }
        }
        try await run()
        group.cancelAll()
    }
}
