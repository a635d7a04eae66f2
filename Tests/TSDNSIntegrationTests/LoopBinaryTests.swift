import Foundation
import Testing
import TSDNSHTTP
import TSDNSSimulator

/// `tsdns-reconcile run` (the loop) started as a process; its RPC port is read from its log.
final class RunningBinary: @unchecked Sendable {
    let process = Process()
    let directory: URL
    var stderrPath: String { directory.appendingPathComponent("stderr").path }
    private(set) var port = 0

    var stdoutPath: String { directory.appendingPathComponent("stdout").path }

    /// The line that announces the listener and its `address=`.
    private let listenerLine: String

    /// `command`: `run` (the loop) or `watch`.
    init(config: String, command: String = "run", arguments: [String] = [], environment: [String: String] = [:]) throws {
        listenerLine = command == "watch" ? "watch listener ready" : "RPC listener ready"
        directory = try scratchDirectory()
        _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
        _ = FileManager.default.createFile(atPath: stdoutPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: Binary.path)
        process.arguments = [command, "--config", config, "--log-level", "debug"] + arguments
        process.environment = ["PATH": "/usr/bin:/bin", "HOME": directory.path].merging(environment) { $1 }
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: stdoutPath))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: stderrPath))
    }

    var log: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }
    var output: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }

    /// Starts it without waiting for a listener (`run --once`).
    func launch() throws {
        try process.run()
    }

    func start() async throws {
        try process.run()
        try await eventually("the listener is ready") {
            guard let line = self.log.split(separator: "\n").first(where: { $0.contains(self.listenerLine) }),
                  let range = line.range(of: #"address=127\.0\.0\.1:(\d+)"#, options: .regularExpression) else { return false }
            port = Int(line[range].split(separator: ":").last!)!
            return true
        }
    }

    var server: String { "http://127.0.0.1:\(port)" }

    /// Sends a signal and waits for the exit; returns the status and how long it took.
    func stop(_ signal: Int32 = SIGTERM) async throws -> (status: Int32, took: Duration) {
        let clock = ContinuousClock()
        let start = clock.now
        Foundation.kill(process.processIdentifier, signal)
        try await eventually("the process exits", limit: .seconds(10)) { !self.process.isRunning }
        return (process.terminationStatus, clock.now - start)
    }

    func terminate() {
        if process.isRunning { Foundation.kill(process.processIdentifier, SIGKILL) }
        try? FileManager.default.removeItem(at: directory)
    }
}

@Suite("tsdns-reconcile run (the loop) as a process", .timeLimit(.minutes(1)))
struct LoopBinaryTests {
    func start(_ tailnet: SimulatedTailnet) async throws -> (RunningBinary, ConfigDirectory) {
        let dir = try ConfigDirectory(tailnet: tailnet, extra: "rpc:\n  listen: 127.0.0.1:0\n")
        let binary = try RunningBinary(config: dir.config)
        try await binary.start()
        return (binary, dir)
    }

    @Test func servesReconcilesAndStopsOnSIGTERM() async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        let (binary, dir) = try await start(tailnet)
        defer { binary.terminate(); dir.remove() }
        try await eventually("the start-up sync applied") { tailnet.nameservers == ["1.1.1.1", "100.64.0.1", "100.64.0.3"] }

        let status = try await Binary.run(["ctl", "--server", binary.server, "status"])
        #expect(status.status == 0, "\(status.stderr)")
        #expect(status.stdout.contains("100.64.0.3"))
        #expect(status.stdout.contains("dns-3"))
        #expect(status.stdout.contains("healthy"))

        tailnet.addDevice(SimulatedDevices.device(40, hostname: "coredns-a", tags: nil))
        let add = try await Binary.run(["ctl", "add", "coredns-a", "--source", "kubernetes:prod/dns/coredns", "--server", binary.server])
        #expect(add.status == 0, "\(add.stderr)")
        #expect(add.stdout.contains("+ 100.64.0.40"))
        #expect(add.stdout.contains("kubernetes:prod/dns/coredns"))
        #expect(tailnet.nameservers.contains("100.64.0.40"))

        let pending = try await Binary.run(["ctl", "add", "not-yet", "--server", binary.server])
        #expect(pending.status == 0)
        #expect(pending.stdout.contains("pending"))

        let remove = try await Binary.run(["ctl", "remove", "100.64.0.40", "--server", binary.server, "--output", "json"])
        #expect(remove.status == 0)
        let plan = try JSONSerialization.jsonObject(with: Data(remove.stdout.utf8)) as? [String: Any]
        #expect(plan?["changed"] as? Bool == true)
        #expect(!tailnet.nameservers.contains("100.64.0.40"))

        let sync = try await Binary.run(["ctl", "sync", "--dry-run", "--server", binary.server])
        #expect(sync.status == 0)
        #expect(sync.stdout.contains("target global"))

        let (exit, took) = try await binary.stop(SIGTERM)
        #expect(exit == 0, "\(binary.log)")
        #expect(took < .seconds(5))
        let refused = try await Binary.run(["ctl", "status", "--server", binary.server])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("cannot reach tsdns-reconcile"))
    }

    @Test func sigtermDuringAnApplyLetsTheWriteFinish() async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        tailnet.setNameservers(["1.1.1.1", "100.64.0.1", "100.64.0.3"])
        let (binary, dir) = try await start(tailnet)
        defer { binary.terminate(); dir.remove() }
        try await eventually("the start-up sync ran") { tailnet.requests.count >= 2 }
        // The next write takes 1.5 s to answer; SIGTERM arrives while it is in flight.
        tailnet.inject(.init(.delay(.milliseconds(1500)), method: "POST"))
        tailnet.addDevice(SimulatedDevices.device(41, hostname: "dns-41"))
        // SIGTERM the moment the write arrives (from the simulator's thread, not by polling).
        let pid = binary.process.processIdentifier
        tailnet.onWriteArrival { _ in kill(pid, SIGTERM) }
        let sync = Task { try await Binary.run(["ctl", "sync", "--server", binary.server]) }
        try await eventually("the process exits", limit: .seconds(15)) { !binary.process.isRunning }
        #expect(binary.process.terminationStatus == 0, "\(binary.log)")
        #expect(tailnet.requests.last { $0.method == "POST" }?.status == 200, "the write got its answer")
        #expect(tailnet.nameservers == ["1.1.1.1", "100.64.0.1", "100.64.0.3", "100.64.0.41"])
        let answer = try await sync.value
        #expect(answer.status == 0, "the caller got the completed plan: \(answer.stderr)")
    }

    @Test func sigtermWhileAReadHangsExitsWithinFiveSeconds() async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        tailnet.inject(.init(.delay(.seconds(30)), path: "/devices"))
        let (binary, dir) = try await start(tailnet)
        defer { binary.terminate(); dir.remove() }
        try await eventually("the start-up read is in flight") { tailnet.requests.contains { $0.path.hasSuffix("/devices") } }
        let (exit, took) = try await binary.stop(SIGTERM)
        #expect(exit == 0, "\(binary.log)")
        #expect(took < .seconds(5))
        #expect(tailnet.mutatingRequests.isEmpty)
    }

    @Test func sigintStopsLikeSigterm() async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        let (binary, dir) = try await start(tailnet)
        defer { binary.terminate(); dir.remove() }
        let (exit, took) = try await binary.stop(SIGINT)
        #expect(exit == 0)
        #expect(took < .seconds(5))
    }

    @Test func ctlReportsARejectedToken() async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        let tokenDir = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: tokenDir) }
        let serverToken = tokenDir.appendingPathComponent("server-token")
        let clientToken = tokenDir.appendingPathComponent("client-token")
        try write("right\n", to: serverToken)
        try write("wrong\n", to: clientToken)
        let dir = try ConfigDirectory(tailnet: tailnet, extra: "rpc:\n  listen: 127.0.0.1:0\n  tokenFile: \(serverToken.path)\n")
        let binary = try RunningBinary(config: dir.config)
        defer { binary.terminate(); dir.remove() }
        try await binary.start()
        let refused = try await Binary.run(["ctl", "status", "--server", binary.server, "--token-file", clientToken.path])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("refused the token"))
        let accepted = try await Binary.run(["ctl", "status"], environment: ["TSDNS_SERVER": binary.server, "TSDNS_TOKEN_FILE": serverToken.path])
        #expect(accepted.status == 0, "\(accepted.stderr)")
        _ = try await binary.stop()
    }

    @Test func nonLoopbackListenWithoutTokenIsAConfigError() async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        let dir = try ConfigDirectory(tailnet: tailnet, extra: "rpc:\n  listen: 0.0.0.0:0\n")
        defer { dir.remove() }
        let result = try await Binary.run(["run", "--config", dir.config])
        #expect(result.status == 78)
        #expect(result.stderr.contains("rpc.tokenFile: is required"))
    }

    @Test func aSecondLoopOnTheSamePortFailsBeforeAnyRequest() async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        let (first, dir) = try await start(tailnet)
        defer { first.terminate(); dir.remove() }
        try await eventually("the first loop synced") { tailnet.nameservers == ["1.1.1.1", "100.64.0.1", "100.64.0.3"] }
        let requests = tailnet.requests.count
        let busy = try ConfigDirectory(tailnet: tailnet, extra: "rpc:\n  listen: 127.0.0.1:\(first.port)\n")
        defer { busy.remove() }
        let second = try await Binary.run(["run", "--config", busy.config], limit: .seconds(20))
        #expect(second.status == 1, "\(second.stderr)")
        #expect(second.stderr.contains("cannot listen on 127.0.0.1:\(first.port)"))
        #expect(second.stderr.contains("Address already in use"))
        #expect(tailnet.requests.count == requests, "the second one made no API request")
        _ = try await first.stop()
    }

    @Test func sighupIsLoggedAndIgnoredSigquitStops() async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        let (binary, dir) = try await start(tailnet)
        defer { binary.terminate(); dir.remove() }
        Foundation.kill(binary.process.processIdentifier, SIGHUP)
        try await eventually("SIGHUP is logged") { binary.log.contains("SIGHUP ignored") }
        #expect(binary.process.isRunning)
        #expect(try await Binary.run(["ctl", "status", "--server", "127.0.0.1:\(binary.port)"]).status == 0, "still serving; a scheme-less --server means http")
        let (exit, took) = try await binary.stop(SIGQUIT)
        #expect(exit == 0, "\(binary.log)")
        #expect(took < .seconds(5))
        #expect(!binary.log.contains("Backtrace"), "SIGQUIT is not a crash report")
    }

    @Test func onceStoppedMidWriteLetsItLandAndPrintsThePlan() async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        // Long enough to be seen in flight by a busy test run, within the 3 s write grace.
        tailnet.inject(.init(.delay(.milliseconds(2500)), method: "POST"))
        let dir = try ConfigDirectory(tailnet: tailnet)
        defer { dir.remove() }
        let once = try RunningBinary(config: dir.config, arguments: ["--once"])
        defer { once.terminate() }
        try once.launch()
        // SIGTERM the moment the write arrives (from the simulator's thread, not by polling).
        let pid = once.process.processIdentifier
        let signalled = ContinuousClock.now
        tailnet.onWriteArrival { _ in kill(pid, SIGTERM) }
        try await eventually("the process exits", limit: .seconds(15)) { !once.process.isRunning }
        let exit = once.process.terminationStatus
        let took = ContinuousClock.now - signalled
        #expect(tailnet.requests.contains { $0.method == "POST" }, "the signal came with the write")
        #expect(exit == 0, "\(once.log)")
        #expect(took < .seconds(10), "it started well before; it stopped within the write's 2.5 s answer")
        #expect(once.log.contains("stopping"), "the signal reached it mid-write: \(once.log)")
        #expect(tailnet.nameservers == ["1.1.1.1", "100.64.0.1", "100.64.0.3"], "the write landed")
        #expect(once.output.contains("+ 100.64.0.3"), "the plan of what it wrote: \(once.output)")
    }

    @Test func onceStoppedWhileReadingWritesNothingAndSaysSo() async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        tailnet.inject(.init(.delay(.seconds(30)), path: "/devices"))
        let dir = try ConfigDirectory(tailnet: tailnet)
        defer { dir.remove() }
        let once = try RunningBinary(config: dir.config, arguments: ["--once"])
        defer { once.terminate() }
        try once.launch()
        try await eventually("the read is in flight") { tailnet.requests.contains { $0.path.hasSuffix("/devices") } }
        let (exit, took) = try await once.stop(SIGINT)
        #expect(exit == 0, "\(once.log)")
        #expect(took < .seconds(5))
        #expect(tailnet.mutatingRequests.isEmpty)
        #expect(once.log.contains("nothing was written"))
    }

    @Test func ctlSourcesListsWhatAWatcherSent() async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        tailnet.addDevice(SimulatedDevices.device(40, hostname: "coredns-a", tags: nil))
        let (binary, dir) = try await start(tailnet)
        defer { binary.terminate(); dir.remove() }
        let empty = try await Binary.run(["ctl", "sources", "--server", binary.server])
        #expect(empty.status == 0, "\(empty.stderr)")
        #expect(empty.stdout == "no source sets\n")
        let body = #"{"resolvers": [{"node": "coredns-a", "source": "kubernetes:prod/dns/coredns-a"}, {"node": "coredns-later"}]}"#
        let put = try await HTTPClient().send(HTTPRequest(
            method: "PUT", url: binary.server + "/v1/sources/kubernetes:prod",
            headers: [HTTPHeader("Content-Type", "application/json")], body: Data(body.utf8)
        ))
        #expect(put.status == 200)
        #expect(tailnet.nameservers.contains("100.64.0.40"))
        let listed = try await Binary.run(["ctl", "sources", "--server", binary.server])
        #expect(listed.stdout.contains("kubernetes:prod (updated "))
        #expect(listed.stdout.contains("2 resolvers, 1 listed, 1 pending"))
        #expect(listed.stdout.contains("listed    coredns-a  kubernetes:prod/dns/coredns-a"))
        #expect(listed.stdout.contains("pending   coredns-later  kubernetes:prod"))
        let json = try await Binary.run(["ctl", "sources", "--server", binary.server, "--output", "json"])
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        #expect((object?["sources"] as? [[String: Any]])?.first?["name"] as? String == "kubernetes:prod")
        _ = try await binary.stop()
    }
}
