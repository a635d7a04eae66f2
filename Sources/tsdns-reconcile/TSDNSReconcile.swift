import ArgumentParser
import Foundation
import TSDNSHTTP

@main
struct TSDNSReconcile: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tsdns-reconcile",
        abstract: "Keeps a tailnet's DNS nameserver lists equal to its healthy resolver nodes.",
        version: "tsdns-reconcile \(TSDNSReconcile.version)",
        subcommands: [RunCommand.self, WatchCommand.self, ValidateCommand.self, CtlCommand.self, DemoCommand.self]
    )

    /// The release; `make release VERSION=...` does not change it: it is edited on release.
    static let version = "0.3.0"

    @OptionGroup var global: GlobalOptions

    static func main() async {
        await parseAndRun()
    }

    /// Off the main thread first: while libcurl loads, glibc holds back every new thread, so
    /// the thread this runs on must exist before.
    nonisolated static func parseAndRun() async {
        // Every command but `validate` sends requests: libcurl loads on the second core
        // while the arguments and the config are read. A hint only: a wrong guess loads it
        // for nothing, or on first use as before.
        if loadsLibcurlEarly(Array(CommandLine.arguments.dropFirst())) { HTTPClient.loadInBackground() }
        // ArgumentParser's `main`, except that a command's end and its exit codes leave by
        // `_exit`: no destructor runs, so a load still under way (a config error exits within
        // its milliseconds) need not be waited for. Messages still go through
        // `exit(withError:)`, whose exit() must wait for it.
        let code: Int32
        do {
            var command = try await asyncParseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
            code = 0
        } catch let exitCode as ExitCode {
            // ArgumentParser prints nothing for an exit code: only the code is left to give.
            code = exitCode.rawValue
        } catch {
            HTTPClient.settleBackgroundLoad()
            exit(withError: error)
        }
        exitSkippingTeardown(code)
    }

    /// Ends the process once its output is out, without exit's handlers: after a command
    /// they only free what the kernel takes back anyway (OpenSSL's tables, the finalisers of
    /// libcurl's 30 libraries), about 0.5 ms of a dry run's last milliseconds. Nothing of
    /// ours waits for them: logs and files are written when they are made, and stdout (the
    /// plan) is flushed here.
    static func exitSkippingTeardown(_ code: Int32) -> Never {
        fflush(nil)
        _exit(code)
    }

    /// A command that will send requests, unless it is only asked for help or the version.
    /// Plain comparisons, as the load waits for this: a `Set<String>` cost its storage's
    /// metadata and a hash, an array literal per word an allocation.
    static func loadsLibcurlEarly(_ arguments: [String]) -> Bool {
        switch subcommandName(arguments) {
        case "run", "watch", "ctl", "demo": break
        default: return false
        }
        return !arguments.contains { argument in
            switch argument {
            case "-h", "--help", "--version", "help": true
            default: false
            }
        }
    }

    /// The first word after the global options, before ArgumentParser has read them.
    static func subcommandName(_ arguments: [String]) -> String? {
        var rest = arguments[...]
        while let argument = rest.popFirst() {
            if argument == "--log-level" || argument == "--log-format" {
                _ = rest.popFirst()
            } else if !argument.hasPrefix("-") {
                return argument
            }
        }
        return nil
    }
}
