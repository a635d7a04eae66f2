import ArgumentParser

@main
struct TSDNSReconcile: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tsdns-reconcile",
        abstract: "Keeps a tailnet's DNS nameserver lists equal to its healthy resolver nodes.",
        subcommands: [RunCommand.self, ValidateCommand.self, CtlCommand.self, DemoCommand.self]
    )

    @OptionGroup var global: GlobalOptions
}
