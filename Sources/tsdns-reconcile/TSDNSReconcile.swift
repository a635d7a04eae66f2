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
        if let name = subcommandName(CommandLine.arguments.dropFirst()), Self.sendsRequests.contains(name) {
            HTTPClient.loadInBackground()
        }
        await main(nil)
    }

    static let sendsRequests: Set<String> = ["run", "watch", "ctl", "demo"]

    /// The first word after the global options, before ArgumentParser has read them.
    static func subcommandName(_ arguments: ArraySlice<String>) -> String? {
        var rest = arguments
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
