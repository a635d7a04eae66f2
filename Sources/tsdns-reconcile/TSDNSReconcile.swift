import ArgumentParser

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
}
