import ArgumentParser
import TSDNSConfig

struct ValidateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Check the config file and the files it references; print `config OK` or the errors."
    )

    @OptionGroup var global: GlobalOptions
    @ParentCommand var root: TSDNSReconcile

    @Option(help: "Config file (default: $TSDNS_CONFIG, then /etc/tsdns-reconcile/config.yaml).")
    var config: String?

    func run() async throws {
        _ = global.bootstrap(root)
        let loader = ConfigLoader()
        let resolved: ResolvedConfig
        do {
            resolved = try loader.load(path: loader.path(config), for: .validate)
        } catch {
            printError(error.description)
            throw Exit.configError
        }
        for warning in resolved.warnings { printError("warning: \(warning)") }
        print("config OK")
    }
}
