import ArgumentParser
import Foundation
import TSDNSCore
import TSDNSRuntime

/// `tsdns-reconcile ctl`: the operator's client for the RPC API of a running loop.
struct CtlCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ctl",
        abstract: "Talk to a running `tsdns-reconcile run` over its RPC API.",
        subcommands: [Status.self, Sources.self, Sync.self, Healthcheck.self, Add.self, Remove.self]
    )

    enum Output: String, ExpressibleByArgument, CaseIterable {
        case text, json
    }

    /// Accepted before the subcommand (`ctl --server URL status`) or after it.
    struct Options: ParsableArguments {
        @Option(help: "RPC address (default: $TSDNS_SERVER, then http://127.0.0.1:8053).")
        var server: String?

        @Option(help: "File holding the RPC bearer token (default: $TSDNS_TOKEN_FILE).")
        var tokenFile: String?

        @Option(help: "text or json (default: text).")
        var output: Output?
    }

    @OptionGroup var options: Options

    /// What every ctl subcommand has: its own options, ctl's, and the global ones.
    struct Leaf: ParsableArguments {
        @OptionGroup var options: Options
        @OptionGroup var global: GlobalOptions

        /// Runs one call and prints its answer; failures print what to do and exit 1.
        func perform(
            _ root: TSDNSReconcile, _ ctl: CtlCommand, _ method: String, _ path: String, body: (any Encodable & Sendable)? = nil,
            text: (RPCClient.Answer) -> String
        ) async throws {
            _ = global.bootstrap(root)
            let environment = ProcessInfo.processInfo.environment
            func setting(_ value: String?, _ variable: String) -> String? {
                value ?? environment[variable].flatMap { $0.isEmpty ? nil : $0 }
            }
            let server = setting(options.server ?? ctl.options.server, "TSDNS_SERVER") ?? RPCClient.defaultServer
            var token: String?
            if let path = setting(options.tokenFile ?? ctl.options.tokenFile, "TSDNS_TOKEN_FILE") {
                guard let data = FileManager.default.contents(atPath: path) else {
                    printError("ctl: cannot read the token file \(path)")
                    throw Exit.configError
                }
                token = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            }
            let output = options.output ?? ctl.options.output ?? .text
            do {
                let answer = try await RPCClient(server: server, token: token).call(method, path, body: body)
                if output == .json {
                    print(String(decoding: answer.body, as: UTF8.self))
                } else {
                    print(text(answer), terminator: "")
                }
            } catch let error as CtlError {
                printError("ctl: \(error)")
                throw Exit.failure
            }
        }
    }

    static func planText(_ answer: RPCClient.Answer) -> String {
        guard let plan = try? JSONDecoder().decode(RPCWire.PlanAnswer.self, from: answer.body) else {
            return String(decoding: answer.body, as: UTF8.self) + "\n"
        }
        return plan.plan.dryRun ? "dry run: nothing was written\n" + plan.text : plan.text
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "status", abstract: "Show the inventory: resolvers, health, pending, excluded.")
        @OptionGroup var leaf: Leaf
        @ParentCommand var ctl: CtlCommand
        @ParentCommand var root: TSDNSReconcile

        func run() async throws {
            try await leaf.perform(root, ctl, "GET", "/v1/inventory") { InventoryTable.render($0.object ?? [:]) }
        }
    }

    struct Sources: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "sources", abstract: "List the source sets (PUT /v1/sources) and how each member stands.")
        @OptionGroup var leaf: Leaf
        @ParentCommand var ctl: CtlCommand
        @ParentCommand var root: TSDNSReconcile

        func run() async throws {
            try await leaf.perform(root, ctl, "GET", "/v1/sources") { SourcesTable.render($0.body) }
        }
    }

    struct Sync: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "sync", abstract: "Run a sync now and print its plan.")
        @OptionGroup var leaf: Leaf
        @ParentCommand var ctl: CtlCommand
        @ParentCommand var root: TSDNSReconcile
        @Flag(help: "Plan only; write nothing.") var dryRun = false

        func run() async throws {
            try await leaf.perform(root, ctl, "POST", "/v1/sync", body: RPCWire.RunBody(dryRun: dryRun), text: CtlCommand.planText)
        }
    }

    struct Healthcheck: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "healthcheck", abstract: "Run a healthcheck now and print its plan.")
        @OptionGroup var leaf: Leaf
        @ParentCommand var ctl: CtlCommand
        @ParentCommand var root: TSDNSReconcile
        @Flag(help: "Plan only; write nothing.") var dryRun = false

        func run() async throws {
            try await leaf.perform(root, ctl, "POST", "/v1/healthcheck", body: RPCWire.RunBody(dryRun: dryRun), text: CtlCommand.planText)
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "add", abstract: "Add a resolver node (IP, hostname, MagicDNS name, nodeId or id).")
        @OptionGroup var leaf: Leaf
        @ParentCommand var ctl: CtlCommand
        @ParentCommand var root: TSDNSReconcile
        @Argument(help: "The node: an IP address, hostname, MagicDNS name, nodeId or id.") var node: String
        @Option(help: "Why it is a resolver, shown in plans (default: manual), e.g. kubernetes:prod/dns/coredns.") var source: String?

        func run() async throws {
            let node = node
            try await leaf.perform(root, ctl, "POST", "/v1/resolvers", body: RPCWire.AddBody(node: node, source: source)) { answer in
                answer.status == 202
                    ? "\(node) is pending: it is added once it is in the tailnet and healthy (retried until sync.pendingTTL)\n"
                    : CtlCommand.planText(answer)
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "remove", abstract: "Remove a resolver node and keep it out (until added again or sync.exclusionTTL).")
        @OptionGroup var leaf: Leaf
        @ParentCommand var ctl: CtlCommand
        @ParentCommand var root: TSDNSReconcile
        @Argument(help: "The node: an IP address, hostname, MagicDNS name, nodeId or id.") var node: String

        func run() async throws {
            try await leaf.perform(root, ctl, "DELETE", "/v1/resolvers/\(PathSegment.encode(node))", text: CtlCommand.planText)
        }
    }
}
