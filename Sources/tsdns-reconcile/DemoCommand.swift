import ArgumentParser
import Foundation
import TSDNSRuntime

struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run the reconciler against a simulated tailnet that ships with the program."
    )

    @OptionGroup var global: GlobalOptions

    @Option(help: "Upper bound on the demo's running time, in seconds.")
    var seconds: Int = 20

    func validate() throws {
        guard seconds > 0 else { throw ValidationError("--seconds must be positive") }
    }

    func run() async throws {
        let logger = global.bootstrap()
        let demo = Demo(logger: logger) { text in
            FileHandle.standardOutput.write(Data(text.utf8))
        }
        let limit = seconds
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await demo.run() }
            group.addTask {
                try await Task.sleep(for: .seconds(limit))
                throw CancellationError()
            }
            try await group.next()
            group.cancelAll()
        }
    }
}
