import ArgumentParser
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
        // ArgumentParser's `main`, with the load settled before every exit (a usage or
        // config error exits within the load's milliseconds).
        do {
            var command = try await asyncParseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            HTTPClient.settleBackgroundLoad()
            exit(withError: error)
        }
        HTTPClient.settleBackgroundLoad()
    }

    /// A command that will send requests, unless it is only asked for help or the version.
    static func loadsLibcurlEarly(_ arguments: [String]) -> Bool {
        guard let name = subcommandName(arguments), sendsRequests.contains(name) else { return false }
        return !arguments.contains { ["-h", "--help", "--version", "help"].contains($0) }
    }

    static let sendsRequests: Set<String> = ["run", "watch", "ctl", "demo"]

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
