import ArgumentParser
import TSDNSConfig
import TSDNSKubernetes

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
        // Kubeconfigs are checked as `run` and `watch` will read them. A cluster without
        // one depends on where the program runs (a pod, $KUBECONFIG): only a warning here.
        var failed = false
        for (index, cluster) in resolved.config.clusters.enumerated() {
            do {
                let access = try ClusterAccess.resolve(cluster, key: "kubernetes.clusters[\(index)]")
                for warning in access.warnings { printError("warning: \(warning)") }
            } catch {
                if cluster.kubeconfig == nil {
                    printError("warning: \(error.description)")
                } else {
                    printError(error.description)
                    failed = true
                }
            }
        }
        if failed { throw Exit.configError }
        print("config OK")
    }
}
