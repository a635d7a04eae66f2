import Foundation
import Testing
import TSDNSConfig
import TSDNSHTTP
import TSDNSServer
import TSDNSSimulator

/// What ships cannot drift from the program: the man page and README name every
/// subcommand, option and config key; the dashboard and alerts query only series the
/// program exports.
@Suite("What ships matches the program", .timeLimit(.minutes(1)))
struct ShipTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The man page's text with roff's escaped hyphens as plain ones.
    static func manPage() throws -> String {
        try String(contentsOf: root.appendingPathComponent("man/tsdns-reconcile.1"), encoding: .utf8).replacingOccurrences(of: "\\-", with: "-")
    }

    /// Options (`--once`) and subcommand names in an ArgumentParser help text.
    static func parseHelp(_ text: String) -> (options: Set<String>, subcommands: [String]) {
        var options = Set<String>()
        var subcommands: [String] = []
        var inSubcommands = false
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("SUBCOMMANDS:") { inSubcommands = true; continue }
            if line.hasSuffix(":") && !line.hasPrefix(" ") { inSubcommands = false }
            if inSubcommands, line.hasPrefix("  "), !line.hasPrefix("   "), !line.hasPrefix("  See "), let name = line.split(separator: " ").first {
                subcommands.append(String(name))
            }
            if line.hasPrefix("  -") || line.hasPrefix("USAGE:") {
                for match in line.matches(of: /--[a-z][a-z-]*/) { options.insert(String(match.output)) }
            }
        }
        return (options, subcommands)
    }

    @Test func theManPageNamesEverySubcommandAndOptionOfHelp() async throws {
        let man = try Self.manPage()
        var commands: [[String]] = [[]]
        var checked = 0
        while !commands.isEmpty {
            let command = commands.removeFirst()
            let help = try await Binary.run(command + ["--help"], limit: .seconds(10))
            #expect(help.status == 0, "\(command)")
            let (options, subcommands) = Self.parseHelp(help.stdout)
            for option in options.subtracting(["--help"]) {
                #expect(man.contains(option), "the man page does not mention \(command.joined(separator: " ")) \(option)")
            }
            for subcommand in subcommands {
                #expect(man.contains(subcommand), "the man page does not mention the subcommand \(subcommand)")
                commands.append(command + [subcommand])
            }
            checked += 1
        }
        #expect(checked >= 12)  // the root, five commands, six ctl commands
    }

    @Test func theManPageAndTheReadmeDocumentEveryConfigKey() throws {
        let man = try Self.manPage()
        let readme = try String(contentsOf: Self.root.appendingPathComponent("README.md"), encoding: .utf8)
        #expect(ConfigKeys.leaves.count >= 40)
        for key in ConfigKeys.leaves {
            #expect(man.contains(key), "the man page does not document \(key)")
            #expect(readme.contains(key), "the README does not document \(key)")
        }
    }

    @Test func theDashboardAndTheAlertsQueryOnlyExportedSeries() async throws {
        // /metrics of the loop (with the probe's series) and of a watcher.
        let loop = try await LoopHarness.start { $0.healthcheck.probe = .dns }
        let loopMetrics = try await loop.metrics()
        try await loop.stop()
        let cluster = try SimulatedCluster()
        defer { cluster.stop() }
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        var config = Config()
        config.clusters = [try clusterConfig(cluster, directory: directory)]
        config.watch.server = "http://127.0.0.1:9"
        config.watch.listen = "127.0.0.1:0"
        let watcher = try WatchDaemon(config: config, logger: quietLogger, signals: false)
        let running = Task { try await watcher.run() }
        let port = try #require(await watcher.port())
        // A request makes the Kubernetes series exist.
        try await eventually("the watcher lists the cluster") { watcher.watcher.hasListed }
        let watchMetrics = String(decoding: try await HTTPClient().send(HTTPRequest(url: "http://127.0.0.1:\(port)/metrics")).body, as: UTF8.self)
        await watcher.shutdown()
        try await running.value

        var exported = Set<String>()
        for line in (loopMetrics + "\n" + watchMetrics).split(separator: "\n") where !line.hasPrefix("#") {
            if let name = line.split(whereSeparator: { $0 == "{" || $0 == " " }).first { exported.insert(String(name)) }
        }
        #expect(exported.contains("tsdns_sync_total") && exported.contains("tsdns_watch_sends_total"))
        let monitoring = Self.root.appendingPathComponent("deploy/monitoring")
        let files = (try? FileManager.default.contentsOfDirectory(atPath: monitoring.path)) ?? []
        #expect(files.contains { $0.hasSuffix(".json") } && files.contains { $0.hasSuffix(".yaml") }, "deploy/monitoring holds the dashboard and the alerts")
        var queried = 0
        for file in files {
            let text = try String(contentsOf: monitoring.appendingPathComponent(file), encoding: .utf8)
            if file.hasSuffix(".json") {
                #expect(throws: Never.self, "\(file) parses") { try JSONSerialization.jsonObject(with: Data(text.utf8)) }
            }
            for match in text.matches(of: /tsdns_[a-z_]+/) {
                let name = String(match.output)
                queried += 1
                #expect(exported.contains(name), "\(file) queries \(name), which the program does not export")
            }
        }
        #expect(queried >= 8)
    }
}
