import Foundation
import Testing
import TSDNSConfig
import TSDNSCore
import TSDNSSimulator

/// The loop with `probe: dns` against real DNS servers (see ProbeLab).
@Suite("DNS probe in the loop", .timeLimit(.minutes(1)))
struct ProbeLoopTests {
    func device(_ n: Int, _ hostname: String, _ address: String, tags: [String]? = ["tag:dns"]) -> Device {
        var device = SimulatedDevices.device(n, hostname: hostname, tags: tags)
        device.addresses = [address]
        return device
    }

    func configure(_ lab: ProbeLab, failures: Int, passes: Int) -> (inout Config) -> Void {
        { config in
            config.healthcheck.probe = .dns
            config.healthcheck.dns.name = "a.probe.test"
            config.healthcheck.dns.type = .A
            config.healthcheck.dns.port = lab.port
            config.healthcheck.dns.timeout = .milliseconds(500)
            config.healthcheck.failureThreshold = failures
            config.healthcheck.successThreshold = passes
        }
    }

    func entry(_ plan: [String: Any], _ address: String) -> [String: Any]? {
        let target = (plan["targets"] as? [[String: Any]])?.first
        return (["add", "remove", "blocked"].flatMap { target?[$0] as? [[String: Any]] ?? [] }).first { $0["address"] as? String == address }
    }

    @Test func aResolverThatStopsAnsweringLeavesAfterTheThresholdAndReturnsAfterPasses() async throws {
        let lab = try await ProbeLab.make()
        defer { lab.teardown() }
        let a = try await lab.start(.dnsmasq), b = try await lab.start(.dnsmasq)
        let (addressA, addressB) = (lab.tailnetAddress(a), lab.tailnetAddress(b))
        let tailnet = try SimulatedTailnet()
        tailnet.setDevices([device(1, "dns-a", addressA), device(2, "dns-b", addressB)])
        tailnet.setNameservers(["1.1.1.1", addressA, addressB])
        let loop = try await LoopHarness.start(tailnet: tailnet, probes: ProbeEndpoint(map: lab.endpoint), configure: configure(lab, failures: 2, passes: 2))
        try await loop.synced()
        #expect(tailnet.mutatingRequests.isEmpty, "both answer: nothing to do")

        // dns-a's DNS server dies; its node stays connected.
        lab.stop(a)
        let first = try await loop.request("POST", "/v1/healthcheck")
        #expect(tailnet.nameservers == ["1.1.1.1", addressA, addressB], "one failed check of two keeps it")
        #expect((first.json["text"] as? String)?.contains("dns probe: connection refused (failed check 1 of 2)") == true, "\(first.json["text"] ?? "")")
        let second = try await loop.request("POST", "/v1/healthcheck")
        #expect(tailnet.nameservers == ["1.1.1.1", addressB])
        #expect(entry(second.json, addressA)?["reason"] as? String == "dns probe: connection refused")

        // It answers again: listed only after two passing checks.
        try await lab.restart(.dnsmasq, at: a)
        _ = try await loop.request("POST", "/v1/sync")
        #expect(tailnet.nameservers == ["1.1.1.1", addressB], "one pass of two")
        _ = try await loop.request("POST", "/v1/sync")
        #expect(tailnet.nameservers == ["1.1.1.1", addressB, addressA])

        let inventory = try await loop.request("GET", "/v1/inventory").json
        let resolverB = (inventory["resolvers"] as? [[String: Any]])?.first { $0["address"] as? String == addressB }
        let probe = resolverB?["probe"] as? [String: Any]
        #expect(probe?["result"] as? String == "ok")
        #expect(probe?["roundTripMs"] is Double)
        let metrics = try await loop.metrics()
        #expect(metricValue(metrics, #"tsdns_probe_total{result="ok"}"#) >= 6)
        #expect(metricValue(metrics, #"tsdns_probe_total{result="refused"}"#) == 2)
        #expect(metricValue(metrics, #"tsdns_probe_total{result="timeout"}"#) == 0, "exported at 0")
        #expect(metrics.contains("tsdns_probe_duration_seconds_bucket"))
        try await loop.stop()
    }

    @Test func aCandidateThatFailsItsProbeIsNotAdded() async throws {
        let lab = try await ProbeLab.make()
        defer { lab.teardown() }
        let good = try await lab.start(.dnsmasq), servfail = try await lab.start(.stub("servfail")), silent = try await lab.start(.stub("silent"))
        let tailnet = try SimulatedTailnet()
        tailnet.setDevices([
            device(1, "dns-good", lab.tailnetAddress(good)), device(2, "dns-servfail", lab.tailnetAddress(servfail)),
            device(3, "dns-silent", lab.tailnetAddress(silent)),
        ])
        tailnet.setNameservers(["1.1.1.1"])
        let loop = try await LoopHarness.start(tailnet: tailnet, probes: ProbeEndpoint(map: lab.endpoint), configure: configure(lab, failures: 1, passes: 1))
        try await loop.synced()
        #expect(tailnet.nameservers == ["1.1.1.1", lab.tailnetAddress(good)])
        let inventory = try await loop.request("GET", "/v1/inventory").json
        let problems = Dictionary(uniqueKeysWithValues: (inventory["resolvers"] as? [[String: Any]] ?? []).map {
            ($0["node"] as? String ?? "", $0["problem"] as? String ?? "")
        })
        #expect(problems["dns-servfail"] == "dns probe: SERVFAIL")
        #expect(problems["dns-silent"] == "dns probe: timeout after 500ms")
        try await loop.stop()
    }

    @Test func anRPCAddWhoseProbeFailsIsPendingNotAdded() async throws {
        let lab = try await ProbeLab.make()
        defer { lab.teardown() }
        let good = try await lab.start(.dnsmasq), servfail = try await lab.start(.stub("servfail"))
        let tailnet = try SimulatedTailnet()
        tailnet.setDevices([device(1, "dns-good", lab.tailnetAddress(good)), device(2, "coredns-broken", lab.tailnetAddress(servfail), tags: nil)])
        tailnet.setNameservers(["1.1.1.1", lab.tailnetAddress(good)])
        let loop = try await LoopHarness.start(tailnet: tailnet, probes: ProbeEndpoint(map: lab.endpoint), configure: configure(lab, failures: 1, passes: 1))
        try await loop.synced()
        let answer = try await loop.request("POST", "/v1/resolvers", body: #"{"node": "coredns-broken"}"#)
        #expect(answer.status == 202, "connected, but its DNS fails: not added, so pending")
        #expect(!tailnet.nameservers.contains(lab.tailnetAddress(servfail)))
        let pending = try await loop.request("GET", "/v1/inventory").json["pending"] as? [[String: Any]]
        #expect(pending?.first?["node"] as? String == "coredns-broken")
        try await loop.stop()
    }

    @Test func probeFailuresNeverBreakASafetyRule() async throws {
        let lab = try await ProbeLab.make()
        defer { lab.teardown() }
        let silent = try await lab.start(.stub("silent"))
        let tailnet = try SimulatedTailnet()
        tailnet.setDevices([device(1, "dns-only", lab.tailnetAddress(silent))])
        tailnet.setNameservers([lab.tailnetAddress(silent)])
        let loop = try await LoopHarness.start(tailnet: tailnet, probes: ProbeEndpoint(map: lab.endpoint), configure: configure(lab, failures: 1, passes: 1))
        try await loop.synced()
        let check = try await loop.request("POST", "/v1/healthcheck")
        #expect(check.status == 200, "a probe failure is not a failed run")
        #expect(tailnet.nameservers == [lab.tailnetAddress(silent)], "the last resolver is kept: the global list is never emptied")
        #expect(entry(check.json, lab.tailnetAddress(silent))?["reason"] as? String == "safety.minResolvers")
        try await loop.stop()
    }
}
