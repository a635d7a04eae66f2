import ArgumentParser
import Foundation
import TSDNSDemo

struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run the reconciler against a simulated tailnet that ships with the program."
    )

    @OptionGroup var global: GlobalOptions
    @ParentCommand var root: TSDNSReconcile

    @Option(help: "Upper bound on the demo's running time, in seconds.")
    var seconds: Int = 20

    func validate() throws {
        guard seconds > 0 else { throw ValidationError("--seconds must be positive") }
    }

    func run() async throws {
        // The story is on standard output; only warnings interrupt it unless asked otherwise.
        let logger = global.bootstrap(root, defaultLevel: .warning)
        let demo = Demo(logger: logger, limit: .seconds(seconds)) { text in
            FileHandle.standardOutput.write(Data(text.utf8))
        }
        try await demo.run()
    }
}
