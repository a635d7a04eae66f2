import Foundation
import Testing
@testable import TSDNSCore

@Suite("Untrusted text reaches no terminal raw")
struct UntrustedTextTests {
    @Test func controlCharactersAreEscaped() {
        #expect(TerminalText.escape("evil\u{1b}[31mRED\u{1b}[0m\nline2") == #"evil\x1b[31mRED\x1b[0m\nline2"#)
        #expect(TerminalText.escape("tab\there\r") == #"tab\there\r"#)
        #expect(TerminalText.escape("\u{7f}\u{9b}") == #"\x7f\x9b"#)
        #expect(TerminalText.escape("right\u{202E}left") == #"right\u{202e}left"#)
        #expect(TerminalText.escape("dns-prod-1.tail0.ts.net") == "dns-prod-1.tail0.ts.net")
        #expect(TerminalText.escape("ünïcödé") == "ünïcödé", "printable text is left alone")
    }

    func evilPlan() -> Plan {
        let now = Date(timeIntervalSince1970: 1_795_000_000)
        let evil = Device(
            id: "1", nodeId: "n1", name: "evil.ts.net", hostname: "evil\u{1b}[31mRED\u{1b}[0m\nline2",
            addresses: ["100.64.0.1"], tags: ["tag:dns"], connectedToControl: true
        )
        let inventory = ResolverInventory(devices: [evil], now: now, staleAfter: .seconds(300), resolverTags: ["tag:dns"])
        let target = Planner.plan(target: .global, current: ["1.1.1.1"], inventory: inventory, settings: PlanSettings())
        return Plan(tailnet: "example.com", mode: .sync, dryRun: true, targets: [target])
    }

    @Test func textAndMarkdownPlansEscapeHostnames() {
        for output in [PlanRenderer.text(evilPlan()), PlanRenderer.markdown(evilPlan())] {
            #expect(!output.contains("\u{1b}"))
            #expect(output.contains(#"evil\x1b[31mRED\x1b[0m\nline2"#))
            #expect(!output.contains("\nline2"), "one entry is one line")
        }
    }

    @Test func jsonPlansEscapeAsJSONDoes() throws {
        let json = PlanRenderer.json(evilPlan())
        #expect(!json.contains("\u{1b}"))
        let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
        let add = ((object?["targets"] as? [[String: Any]])?.first?["add"] as? [[String: Any]])?.first
        #expect(add?["node"] as? String == "evil\u{1b}[31mRED\u{1b}[0m\nline2", "JSON carries the exact name")
    }

    @Test func subSecondDurationsDoNotPrintAsZero() {
        #expect(DurationText.format(.nanoseconds(1)) == "1ns")
        #expect(DurationText.format(.milliseconds(250)) == "250ms")
        #expect(DurationText.format(.seconds(90)) == "1m30s")
        #expect(DurationText.brief(.milliseconds(126.87263355227557)) == "127ms")
        #expect(DurationText.brief(.milliseconds(1500)) == "1.5s")
    }
}

@Suite("IP addresses")
struct IPAddressTests {
    @Test func tailscaleRangesToTheirEdges() {
        for (text, inside) in [
            ("100.63.255.255", false), ("100.64.0.0", true), ("100.100.100.100", true), ("100.127.255.255", true),
            ("100.128.0.0", false), ("10.0.0.1", false), ("fd7a:115c:a1e0::", true), ("fd7a:115c:a1e0:ffff::1", true),
            ("fd7a:115c:a1e1::", false), ("fd7a:115c:a0e0::1", false), ("::ffff:100.64.0.1", false),
        ] {
            #expect(IPAddress(text)?.isTailscaleRange == inside, "\(text)")
        }
    }

    @Test func everyFormOfOneAddressIsEqualAndPrintsCanonically() {
        #expect(IPAddress("fd7a:115c:a1e0:0:0::1") == IPAddress("FD7A:115C:A1E0::1"))
        #expect(IPAddress("FD7A:115C:A1E0::1")?.description == "fd7a:115c:a1e0::1")
        #expect(IPAddress("100.64.0.7")?.description == "100.64.0.7")
        #expect(IPAddress("100.64.0.7")?.bytes == [100, 64, 0, 7])
        #expect(IPAddress("fd7a:115c:a1e0::1")?.bytes == [0xFD, 0x7A, 0x11, 0x5C, 0xA1, 0xE0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
        #expect(IPAddress("100.64.0.256") == nil && IPAddress("dns-1") == nil)
        #expect(Set([IPAddress("100.64.0.1")!, IPAddress("100.64.0.1")!]).count == 1)
    }

    @Test func orderIsIPv4FirstThenNumeric() {
        let sorted = ["fd7a:115c:a1e0::2", "100.64.0.10", "fd7a:115c:a1e0::1:0", "100.64.0.9", "1.1.1.1", "::1"]
            .compactMap(IPAddress.init).sorted().map(\.description)
        #expect(sorted == ["1.1.1.1", "100.64.0.9", "100.64.0.10", "::1", "fd7a:115c:a1e0::2", "fd7a:115c:a1e0::1:0"])
    }
}

@Suite("A path segment is percent-encoded as Foundation encodes it")
struct PathSegmentTests {
    static let allowed = CharacterSet.urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))

    @Test func everyASCIICharacterAndSomeOthers() {
        var samples = (0..<128).map { String(UnicodeScalar(UInt8($0))) }
        samples += ["example.com", "user@example.com", "-", "a/b", "a b", "100%", "é", "日本", "😀", "a?b#c", "[::1]", "\u{7F}\u{80}"]
        for sample in samples {
            #expect(PathSegment.encode(sample) == sample.addingPercentEncoding(withAllowedCharacters: Self.allowed), "\(sample.debugDescription)")
        }
    }

    @Test func randomText() {
        var generator = SplitMix(seed: 0x5EED_0F_9A7)
        let pool: [Character] = Array("az09-._~!$&'()*+,;=:@/?#[] %\"<>\\^`{|}\t\ré😀日")
        for _ in 0..<2_000 {
            let text = String((0..<Int(generator.next() % 12)).map { _ in pool[Int(generator.next() % UInt64(pool.count))] })
            #expect(PathSegment.encode(text) == text.addingPercentEncoding(withAllowedCharacters: Self.allowed), "\(text.debugDescription)")
        }
    }
}
