import Foundation
import Testing
import TSDNSConfig
import TSDNSCore
@testable import TSDNSRuntime

private func device(_ n: Int, _ hostname: String, tags: [String]? = nil, connected: Bool = true) -> Device {
    Device(
        id: "id\(n)", nodeId: "n\(n)", name: "\(hostname).tail0.ts.net", hostname: hostname,
        addresses: ["100.64.0.\(n)"], tags: tags, connectedToControl: connected
    )
}

private let healthy: @Sendable (Device) -> Bool = { $0.connectedToControl == true }

@Suite("Source sets in the loop state")
struct SourceSetStateTests {
    let devices = [device(1, "dns-1", tags: ["tag:dns"]), device(2, "dns-2"), device(3, "dns-3"), device(4, "dns-4", connected: false)]
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    func member(_ node: String, _ source: String = "kubernetes:prod/dns/x") -> SourceSet.Member {
        SourceSet.Member(node: node, source: source)
    }

    @Test func aSetNamesItsMembersAsSources() {
        var state = LoopState()
        state.replaceSourceSet("kubernetes:prod", members: [member("dns-2"), member("100.64.0.3", "kubernetes:prod/dns/y")], at: t0, devices: devices, isHealthy: healthy)
        let sources = state.extraSources(devices, isHealthy: healthy)
        #expect(sources == ["n2": ["kubernetes:prod/dns/x"], "n3": ["kubernetes:prod/dns/y"]])
        #expect(state.withdrawn.isEmpty)
    }

    @Test func replacingWithdrawsWhatItNoLongerNames() {
        var state = LoopState()
        state.replaceSourceSet("kubernetes:prod", members: [member("dns-1"), member("dns-2")], at: t0, devices: devices, isHealthy: healthy)
        state.replaceSourceSet("kubernetes:prod", members: [member("dns-3")], at: t0, devices: devices, isHealthy: healthy)
        #expect(state.withdrawn == ["n1": "kubernetes:prod", "n2": "kubernetes:prod"])
        #expect(state.extraSources(devices, isHealthy: healthy) == ["n3": ["kubernetes:prod/dns/x"]])
    }

    @Test func namingAgainEndsTheWithdrawal() {
        var state = LoopState()
        state.replaceSourceSet("a", members: [member("dns-2")], at: t0, devices: devices, isHealthy: healthy)
        state.replaceSourceSet("a", members: [], at: t0, devices: devices, isHealthy: healthy)
        #expect(state.withdrawn == ["n2": "a"])
        state.replaceSourceSet("b", members: [member("dns-2")], at: t0, devices: devices, isHealthy: healthy)
        #expect(state.withdrawn.isEmpty)
    }

    @Test func withdrawalsSettleOnceNamedOrUnlisted() {
        var state = LoopState()
        state.withdrawn = ["n1": "a", "n2": "a", "n3": "a"]
        // n1 has a tag (a source), n2 is no longer listed, n3 is listed and unnamed.
        state.settleWithdrawals(before: state.withdrawn, sources: ["n1": ["tag:dns"]], listed: ["n1", "n3"])
        #expect(state.withdrawn == ["n3": "a"])
    }

    @Test func aWithdrawalMadeDuringARunIsNotSettledByIt() {
        var state = LoopState()
        let before = state.withdrawn
        // While the run applied, a PUT withdrew n2, which the run still saw named.
        state.withdrawn = ["n2": "a"]
        state.settleWithdrawals(before: before, sources: ["n2": ["a/dns/x"]], listed: ["n2"])
        #expect(state.withdrawn == ["n2": "a"], "the next run removes it")
    }

    @Test func onlyWhatWasKnownBeforeTheReadCanBeGone() {
        var state = LoopState()
        let readStart = t0
        state.manualSources = ["old": ["manual"], "new": ["manual"]]
        state.manualSince = ["old": t0 - 60, "new": t0 + 1]
        state.exclusions["new-x"] = Exclusion(nodeId: "new-x", hostname: "x", since: t0 + 1, until: t0 + 600)
        state.exclusions["old-x"] = Exclusion(nodeId: "old-x", hostname: "y", since: t0 - 60, until: t0 + 600)
        let snapshot = TailnetSnapshot(devices: devices, lists: [:], readAt: t0 + 2, startedAt: readStart)
        _ = state.housekeeping(snapshot, isHealthy: healthy)
        #expect(Set(state.manualSources.keys) == ["new"], "an add made during the read is newer than the snapshot")
        #expect(Set(state.exclusions.keys) == ["new-x"])
    }

    @Test func passesCountOnlyWhereTheCheckJudged() {
        var state = LoopState()
        state.recovering = ["n2": 0]
        let unjudged = state.recovering(after: devices, fails: { _ in false }, passes: { _ in false }, threshold: 2)
        #expect(unjudged["n2"] == 0, "not probed: no pass")
        state.recovering = unjudged
        let once = state.recovering(after: devices, fails: { _ in false }, passes: { _ in true }, threshold: 2)
        #expect(once["n2"] == 1)
        state.recovering = once
        #expect(state.recovering(after: devices, fails: { _ in false }, passes: { _ in true }, threshold: 2)["n2"] == nil, "released")
        #expect(state.recovering(after: devices, fails: { $0.nodeId == "n3" }, passes: { _ in true }, threshold: 2)["n3"] == 0)
    }

    @Test func memberStates() {
        var state = LoopState()
        state.replaceSourceSet("a", members: [member("dns-2"), member("dns-4"), member("not-yet"), member("dns-3")], at: t0, devices: devices, isHealthy: healthy)
        state.exclusions["n3"] = Exclusion(nodeId: "n3", hostname: "dns-3", since: t0, until: t0 + 600)
        #expect(state.states(of: state.sourceSets["a"]!, devices: devices, isHealthy: healthy) == [.listed, .pending, .pending, .excluded])
    }

    @Test func anAmbiguousHostnameNamesNothingYet() {
        let twins = [device(5, "twin", connected: false), device(6, "twin", connected: false)]
        #expect(LoopState.resolve([member("twin")], in: twins, isHealthy: healthy).isEmpty)
    }
}

@Suite("state.file")
struct StateFileTests {
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    func scratch() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("tsdns-state-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    func sample() -> LoopState {
        var state = LoopState()
        state.exclusions["n1"] = Exclusion(nodeId: "n1", hostname: "dns-1", since: t0, until: t0 + 600)
        state.manualSources["n2"] = ["manual", "kubernetes:prod/dns/a"]
        state.pending = [PendingAdd(query: "not-yet", source: "manual", since: t0, expires: t0 + 600)]
        state.sourceSets["kubernetes:prod"] = SourceSet(name: "kubernetes:prod", members: [.init(node: "dns-3", source: "kubernetes:prod/dns/c")], updated: t0)
        state.withdrawn["n4"] = "kubernetes:prod"
        state.failedChecks["n9"] = 2
        return state
    }

    @Test func roundTripKeepsEverythingButFailureCounts() throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = StateFile(path: dir.appendingPathComponent("state.json").path)
        try file.save(sample().durable, now: t0)
        let (loaded, warning) = try file.load(now: t0 + 1)
        #expect(warning == nil)
        #expect(loaded == sample().durable)
        #expect(loaded.failedChecks.isEmpty)
    }

    @Test func noFileIsAnEmptyState() throws {
        let file = StateFile(path: "/nonexistent-\(UUID().uuidString)/state.json")
        let (loaded, warning) = try file.load(now: t0)
        #expect(loaded == LoopState())
        #expect(warning == nil)
    }

    @Test func whatExpiredWhileStoppedIsDropped() throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = StateFile(path: dir.appendingPathComponent("state.json").path)
        try file.save(sample(), now: t0)
        let (loaded, _) = try file.load(now: t0 + 601)
        #expect(loaded.exclusions.isEmpty)
        #expect(loaded.pending.isEmpty)
        #expect(loaded.sourceSets.count == 1, "source sets have no TTL")
        #expect(loaded.manualSources.count == 1)
    }

    @Test func aCorruptFileIsSetAsideNotFatal() throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("state.json").path
        try Data("{\"version\": 1, \"exclusions\": [tru".utf8).write(to: URL(fileURLWithPath: path))
        let (loaded, warning) = try StateFile(path: path).load(now: t0)
        #expect(loaded == LoopState())
        let message = try #require(warning)
        #expect(message.contains("state.json.corrupt-"))
        let kept = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        #expect(kept.contains { $0.hasPrefix("state.json.corrupt-") }, "the bad file is kept for the operator")
        #expect(!kept.contains("state.json"))
    }

    @Test func aFileThatCannotBeReadIsRefusedNotReplaced() throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("state.json").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        #expect(throws: StateFileError.self) { try StateFile(path: path).load(now: t0) }
        #expect(FileManager.default.fileExists(atPath: path))
        #expect(throws: StateFileError.self) { try StateFile(path: "/nonexistent-\(UUID().uuidString)/state.json").save(LoopState(), now: t0) }
    }

    @Test func aNewerFormatIsRefused() throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("state.json").path
        try Data("{\"version\": 2, \"whatever\": []}".utf8).write(to: URL(fileURLWithPath: path))
        #expect(throws: StateFileError.self) { try StateFile(path: path).load(now: t0) }
        #expect(FileManager.default.fileExists(atPath: path), "a newer file is left alone")
    }

    @Test func aCrashBeforeTheRenameLeavesTheOldFileValid() throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("state.json").path
        let file = StateFile(path: path)
        try file.save(sample(), now: t0)
        // A crash after writing the temporary file and before the rename leaves this behind.
        try Data("{\"version\": 1, \"half-writ".utf8).write(to: URL(fileURLWithPath: path + ".tmp"))
        let (loaded, warning) = try file.load(now: t0 + 1)
        #expect(warning == nil)
        #expect(loaded == sample().durable)
        // The next save replaces the leftover and the file.
        var next = sample()
        next.exclusions = [:]
        try file.save(next, now: t0 + 2)
        #expect(try file.load(now: t0 + 3).state.exclusions.isEmpty)
    }

    @Test func savingIsAtomicAndPrivate() throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("state.json").path
        try StateFile(path: path).save(sample(), now: t0)
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        #expect(!FileManager.default.fileExists(atPath: path + ".tmp"))
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any]
        #expect(object?["version"] as? Int == 1)
    }
}
