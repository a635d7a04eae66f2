import Foundation
import Testing
@testable import TSDNSCore

@Suite("Addresses and durations")
struct ValueTests {
    @Test func parsesAndCanonicalizes() {
        #expect(IPAddress("100.64.0.7")?.description == "100.64.0.7")
        #expect(IPAddress("FD7A:115C:A1E0:0:0:0:0:1")?.description == "fd7a:115c:a1e0::1")
        #expect(IPAddress("100.64.0.256") == nil)
        #expect(IPAddress("dns.example") == nil)
        #expect(IPAddress("") == nil)
    }

    /// IPv4 is parsed in Swift: on random text it must agree with the C library's inet_pton.
    @Test func ipv4AgreesWithInetPton() {
        var state: UInt64 = 0x1F2E_3D4C
        func next(_ bound: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((state >> 33) % UInt64(bound))
        }
        // Dotted parts of 0-4 digits, 2-6 of them, sometimes with a stray byte.
        let stray = Array("x -+/".utf8)
        var disagreements: [String] = []
        var valid = 0
        for _ in 0..<100_000 {
            var bytes: [UInt8] = []
            for part in 0..<(2 + next(5)) {
                if part > 0 { bytes.append(UInt8(ascii: ".")) }
                for _ in 0..<next(5) { bytes.append(UInt8(ascii: "0") + UInt8(next(10) < 7 ? next(3) : next(10))) }
                if next(40) == 0 { bytes.append(stray[next(stray.count)]) }
            }
            let text = String(decoding: bytes, as: UTF8.self)
            var v4 = in_addr()
            let expected = inet_pton(AF_INET, text, &v4) == 1 ? UInt32(bigEndian: v4.s_addr) : nil
            let parsed = IPAddress(text)
            let actual = parsed.flatMap { $0.isIPv4 ? UInt32($0.bytes.reduce(0) { $0 << 8 | UInt32($1) }) : nil }
            if actual != expected { disagreements.append(text) }
            if expected != nil { valid += 1 }
        }
        #expect(valid > 300, "the generator makes some valid addresses: \(valid)")
        for text in ["1.2.3.4", "255.255.255.255", "0.0.0.0", "01.2.3.4", "1.2.3", "1.2.3.4.", "1..2.3", "256.1.1.1", "1.2.3.4.5", " 1.2.3.4"] {
            var v4 = in_addr()
            let expected = inet_pton(AF_INET, text, &v4) == 1
            if (IPAddress(text) != nil) != expected { disagreements.append(text) }
        }
        #expect(disagreements.isEmpty, "\(disagreements.prefix(10))")
    }

    /// IPv6 is parsed in Swift too: on random text shaped like addresses (groups of 0-5 hex
    /// digits in both cases, `::` and `:::`, a dotted tail, a stray byte, Tailscale's
    /// prefix) and on every short string over the bytes that matter, it must agree with the
    /// C library's inet_pton.
    @Test func ipv6AgreesWithInetPton() {
        var state: UInt64 = 0x5A5A_1234
        func next(_ bound: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((state >> 33) % UInt64(bound))
        }
        var disagreements: [String] = []
        var valid = 0
        func check(_ text: String) {
            var v6 = in6_addr()
            let expected: [UInt8]? = inet_pton(AF_INET6, text, &v6) == 1 ? withUnsafeBytes(of: v6) { Array($0) } : nil
            let parsed = IPAddress(text)
            let actual = parsed.flatMap { $0.isIPv4 ? nil : $0.bytes }
            if actual != expected { disagreements.append(text) }
            if expected != nil { valid += 1 }
        }
        let hex = Array("0123456789abcdefABCDEF".utf8)
        let stray = Array("xg -/.:".utf8)
        for _ in 0..<100_000 {
            var bytes: [UInt8] = []
            let groups = 1 + next(10)
            for group in 0..<groups {
                if group > 0 { bytes += Array(String(repeating: ":", count: next(12) == 0 ? 2 + next(2) : 1).utf8) }
                for _ in 0..<(next(8) == 0 ? 0 : 1 + next(next(6) == 0 ? 5 : 4)) { bytes.append(hex[next(next(4) == 0 ? hex.count : 10)]) }
            }
            if next(6) == 0 {
                bytes += Array(":\(next(300)).\(next(300)).\(next(300)).\(next(300))".utf8)
            }
            // Tailscale's prefix, which is read at once, before a third of them.
            if next(3) == 0 { bytes = Array("fd7a:115c:a1e0:".utf8) + bytes }
            if next(5) == 0 { bytes.insert(UInt8(ascii: ":"), at: 0) }
            if next(5) == 0 { bytes.append(UInt8(ascii: ":")) }
            if next(30) == 0 { bytes.insert(stray[next(stray.count)], at: next(bytes.count + 1)) }
            check(String(decoding: bytes, as: UTF8.self))
        }
        #expect(valid > 5_000, "the generator makes many valid addresses: \(valid)")
        // Every string of up to 6 bytes over these.
        let alphabet = Array("0f:.1".utf8)
        var texts: [[UInt8]] = [[]]
        for _ in 0..<6 {
            texts = texts.flatMap { text in alphabet.map { text + [$0] } }
            for text in texts { check(String(decoding: text, as: UTF8.self)) }
        }
        for text in ["::", "::1", "1::", ":", ":::", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7::", "::1:2:3:4:5:6:7",
                     "::1:2:3:4:5:6:7:8", "1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:7:1.2.3.4", "::1.2.3.4", "::ffff:1.2.3.04", "12345::",
                     "fd7a:115c:a1e0::1", "FD7A:115C:A1E0:0:0:0:0:1", "1::2::3", "1:2", "1.2.3.4::", "::1.2.3.4:5",
                     "fd7a:115c:a1e0:", "fd7a:115c:a1e0::", "fd7a:115c:a1e0:1", "fd7a:115c:a1e0:1:2:3:4:5", "fd7a:115c:a1e0:1:2:3:4:5:6",
                     "fd7a:115c:a1e0:::1", "fd7a:115c:a1e0::1.2.3.4", "fd7a:115c:a1e0:1:2:3:1.2.3.4", "fd7a:115c:a1e0:1.2.3.4"] {
            check(text)
        }
        #expect(disagreements.isEmpty, "\(disagreements.prefix(10))")
    }

    /// A NUL inside the text ends nothing early (the C library, given a C string, would stop
    /// there), and text longer than any address form is not one.
    @Test func hostileTextIsNotAnAddress() {
        #expect(IPAddress("100.64.0.1\u{0}junk") == nil)
        #expect(IPAddress("\u{0}100.64.0.1") == nil)
        #expect(IPAddress("::1\u{0}") == nil)
        #expect(IPAddress("fd7a:115c:a1e0::1\u{0}") == nil)
        #expect(IPAddress("::ffff:1.2.3.4\u{0}") == nil)
        #expect(IPAddress("::ffff:100.64.0.1")?.description == "::ffff:100.64.0.1")
        #expect(IPAddress("0000:0000:0000:0000:0000:ffff:100.064.000.001") == nil, "leading zeros in the IPv4 part")
        #expect(IPAddress("0000:0000:0000:0000:0000:ffff:100.64.0.1")?.description == "::ffff:100.64.0.1", "45 bytes, the longest form")
        #expect(IPAddress(String(repeating: "0", count: 60) + "::1") == nil)
        #expect(IPAddress("100.64.0.1 ") == nil)
    }

    @Test func tailscaleRanges() {
        #expect(IPAddress("100.64.0.1")!.isTailscaleRange)
        #expect(IPAddress("100.127.255.254")!.isTailscaleRange)
        #expect(!IPAddress("100.128.0.1")!.isTailscaleRange)
        #expect(!IPAddress("100.63.255.255")!.isTailscaleRange)
        #expect(IPAddress("fd7a:115c:a1e0:ab12::1")!.isTailscaleRange)
        #expect(!IPAddress("fd7a:115c:a1e1::1")!.isTailscaleRange)
        #expect(!IPAddress("1.1.1.1")!.isTailscaleRange)
    }

    @Test func ordersIPv4BeforeIPv6Numerically() {
        let sorted = ["fd7a:115c:a1e0::2", "100.64.0.10", "fd7a:115c:a1e0::1", "100.64.0.9"].compactMap(IPAddress.init).sorted()
        #expect(sorted.map(\.description) == ["100.64.0.9", "100.64.0.10", "fd7a:115c:a1e0::1", "fd7a:115c:a1e0::2"])
    }

    @Test(arguments: [("90s", 90.0), ("5m", 300), ("1h30m", 5400), ("1.5h", 5400), ("250ms", 0.25), ("2h0m5s", 7205), ("0", 0)])
    func durations(_ text: String, _ seconds: Double) {
        #expect(DurationText.parse(text)?.seconds == seconds)
    }

    @Test(arguments: ["5 minutes", "5", "m", "", "1x", "-5m", "5m ", "1h30"])
    func badDurations(_ text: String) {
        #expect(DurationText.parse(text) == nil)
    }
}

@Suite("Devices from a real tailnet")
struct RealDeviceTests {
    func fixture(_ name: String) throws -> Data {
        let url = try #require(Bundle.module.url(forResource: name, withExtension: "json", subdirectory: "Fixtures"))
        return try Data(contentsOf: url)
    }

    @Test func decodesTheRealDevicesList() throws {
        struct Body: Decodable { var devices: [Device] }
        let devices = try JSONDecoder().decode(Body.self, from: fixture("devices")).devices
        #expect(devices.count == 18)
        #expect(devices.allSatisfy { $0.tags == nil }, "the tags key is absent on untagged devices")
        #expect(Set(devices.map(\.name)).count == 18, "MagicDNS names are unique")
        #expect(Set(devices.map(\.hostname)).count < 18, "hostnames are not")
        #expect(devices.filter { $0.connectedToControl == true }.count == 4)
        #expect(devices.allSatisfy { $0.lastSeen != nil })
    }

    @Test func keyExpiryDisabledOverridesAPastExpiry() throws {
        struct Body: Decodable { var devices: [Device] }
        let devices = try JSONDecoder().decode(Body.self, from: fixture("devices")).devices
        // The latest lastSeen in the file; health is judged as of then.
        let then = try #require(Timestamp.parse("2024-01-14T11:40:00Z"))
        let disabled = devices.filter { $0.keyExpiryDisabled == true && $0.connectedToControl == true }
        #expect(disabled.count == 2)
        for device in disabled {
            #expect(device.expires! < then)
            #expect(device.health(now: then, staleAfter: .seconds(300)) == .healthy)
        }
        let expired = devices.filter { $0.keyExpiryDisabled == false && $0.connectedToControl == true && $0.expires! < then }
        #expect(!expired.isEmpty)
        for device in expired {
            guard case .unhealthy(let why) = device.health(now: then, staleAfter: .seconds(300)) else {
                Issue.record("an expired key must be unhealthy")
                continue
            }
            #expect(why.hasPrefix("key expired"))
        }
    }

    /// The parsed addresses follow the list however it is set: at init, when decoded, when
    /// changed; in order, Tailscale's ranges only, however many.
    @Test func parsedAddressesFollowTheList() throws {
        var device = Device(id: "1", nodeId: "n1", name: "a.ts.net", hostname: "a", addresses: ["100.64.0.1", "8.8.8.8", "fd7a:115c:a1e0::1"])
        #expect(device.ipAddresses.map(\.description) == ["100.64.0.1", "fd7a:115c:a1e0::1"])
        device.addresses = ["fd7a:115c:a1e0::9", "100.64.0.9", "100.64.0.10", "::ffff:100.64.0.1", "fd7a:115c:a1e0:0::a", "not an address"]
        #expect(device.ipAddresses.map(\.description) == ["fd7a:115c:a1e0::9", "100.64.0.9", "100.64.0.10", "fd7a:115c:a1e0::a"])
        device.addresses.removeAll()
        #expect(Array(device.ipAddresses).isEmpty)
        let decoded = try JSONDecoder().decode(Device.self, from: Data(#"{"nodeId":"n2","name":"b","hostname":"b","addresses":["100.64.0.2"]}"#.utf8))
        #expect(decoded.ipAddresses.map(\.description) == ["100.64.0.2"])
    }

    /// `isHealthy` is the verdict of `health` without its text, in every case the rule has.
    @Test func isHealthyIsHealthsVerdict() throws {
        let now = try #require(Timestamp.parse("2026-11-26T10:00:00Z"))
        let recent = now.addingTimeInterval(-60), stale = now.addingTimeInterval(-3600)
        var cases: [(Device, Health)] = []
        func device(_ change: (inout Device) -> Void) -> Device {
            var device = Device(id: "1", nodeId: "n1", name: "a.ts.net", hostname: "a", addresses: ["100.64.0.1"], expires: now.addingTimeInterval(86400))
            change(&device)
            return device
        }
        cases.append((device { _ in }, .healthy))
        cases.append((device { $0.authorized = false }, .unhealthy("not authorized")))
        cases.append((device { $0.expires = stale }, .unhealthy("key expired at 2026-11-26T09:00:00Z")))
        cases.append((device { $0.expires = stale; $0.keyExpiryDisabled = true }, .healthy))
        cases.append((device { $0.connectedToControl = false; $0.lastSeen = stale }, .unhealthy("not connected since 2026-11-26T09:00:00Z")))
        cases.append((device { $0.connectedToControl = false }, .unhealthy("not connected")))
        cases.append((device { $0.connectedToControl = nil }, .unhealthy("never seen")))
        cases.append((device { $0.connectedToControl = nil; $0.lastSeen = stale }, .unhealthy("not seen since 2026-11-26T09:00:00Z")))
        cases.append((device { $0.connectedToControl = nil; $0.lastSeen = recent }, .healthy))
        for (device, expected) in cases {
            #expect(device.health(now: now, staleAfter: .seconds(300)) == expected)
            #expect(device.isHealthy(now: now, staleAfter: .seconds(300)) == expected.isHealthy)
        }
    }

    @Test func singleDeviceMatchesTheList() throws {
        struct Body: Decodable { var devices: [Device] }
        let single = try JSONDecoder().decode(Device.self, from: fixture("device"))
        let list = try JSONDecoder().decode(Body.self, from: fixture("devices")).devices
        #expect(single == list[0])
        #expect(single.ipAddresses.map(\.description) == ["100.64.0.1", "fd7a:115c:a1e0::1"])
    }

    @Test func rejectsABadTimestamp() {
        let json = #"{"nodeId":"n1","name":"a.ts.net","hostname":"a","addresses":[],"lastSeen":"yesterday"}"#
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(Device.self, from: Data(json.utf8)) }
    }

    @Test func emptyTimestampMeansAbsent() throws {
        let json = #"{"nodeId":"n1","name":"a.ts.net","hostname":"a","addresses":["100.64.0.1"],"expires":"","extra":{"x":1}}"#
        let device = try JSONDecoder().decode(Device.self, from: Data(json.utf8))
        #expect(device.expires == nil)
        #expect(device.id == "n1")
    }
}

@Suite("Plan output")
struct PlanRendererTests {
    /// The README's example plan, rebuilt from devices.
    func contractPlan() -> Plan {
        let now = Date(timeIntervalSince1970: 1_795_000_000)
        func dev(_ n: Int, _ host: String, connected: Bool = true, lastSeen: String? = nil) -> Device {
            Device(id: "\(n)", nodeId: "n\(n)", name: "\(host).ts.net", hostname: host, addresses: ["100.64.0.\(n)"],
                   tags: ["tag:dns"], connectedToControl: connected, lastSeen: lastSeen.flatMap(Timestamp.parse),
                   expires: now.addingTimeInterval(3600))
        }
        let devices = [
            dev(7, "dns-prod-2"), dev(3, "dns-old", connected: false, lastSeen: "2026-11-26T10:00:00Z"),
            dev(4, "dns-b", connected: false, lastSeen: "2026-11-26T10:00:00Z"), dev(5, "dns-prod-1"),
        ]
        let inventory = ResolverInventory(
            index: DeviceIndex(devices: devices, now: now, staleAfter: .seconds(300), resolverTags: ["tag:dns"]),
            extraSources: ["n7": ["kubernetes:prod/dns/coredns"]]
        )
        var settings = PlanSettings(minResolvers: 1, maxRemovals: 1)
        settings.mode = .sync
        let target = Planner.plan(target: .global, current: ["1.1.1.1", "100.64.0.3", "100.64.0.4", "100.64.0.5"], inventory: inventory, settings: settings)
        return Plan(tailnet: "example.com", mode: .sync, dryRun: true, targets: [target])
    }

    @Test func textMatchesTheContract() {
        let expected = """
        target global (tailnet example.com)
          + 100.64.0.7   dns-prod-2        healthy, tag:dns, kubernetes:prod/dns/coredns
          - 100.64.0.3   dns-old           not connected since 2026-11-26T10:00:00Z
          ! 100.64.0.4   dns-b             kept: safety.maxRemovals=1
          = 100.64.0.5   dns-prod-1
          · 1.1.1.1                        unmanaged
        2 changes: 1 to add, 1 to remove, 1 blocked

        """
        #expect(PlanRenderer.text(contractPlan()) == expected)
    }

    @Test func jsonHasTheContractKeys() throws {
        let data = Data(PlanRenderer.json(contractPlan()).utf8)
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(object["changed"] as? Bool == true)
        let target = try #require((object["targets"] as? [[String: Any]])?.first)
        #expect(target["target"] as? String == "global")
        #expect(target["current"] as? [String] == ["1.1.1.1", "100.64.0.3", "100.64.0.4", "100.64.0.5"])
        #expect(target["desired"] as? [String] == ["1.1.1.1", "100.64.0.4", "100.64.0.5", "100.64.0.7"])
        let add = try #require((target["add"] as? [[String: Any]])?.first)
        #expect(add["address"] as? String == "100.64.0.7")
        #expect(add["node"] as? String == "dns-prod-2")
        #expect(add["reason"] as? String == "tag:dns, kubernetes:prod/dns/coredns")
        let remove = try #require((target["remove"] as? [[String: Any]])?.first)
        #expect(remove["node"] as? String == "dns-old")
        let blocked = try #require((target["blocked"] as? [[String: Any]])?.first)
        #expect(blocked["reason"] as? String == "safety.maxRemovals")
        #expect((blocked["detail"] as? String)?.hasPrefix("not connected since") == true)
    }

    @Test func jsonNodeIsNullWithoutADevice() throws {
        let inventory = ResolverInventory(devices: [], now: Date(), staleAfter: .seconds(300), resolverTags: [])
        let target = Planner.plan(target: .global, current: ["1.1.1.1", "100.64.9.9"], inventory: inventory, settings: PlanSettings(minResolvers: 0))
        let json = PlanRenderer.json(Plan(tailnet: "-", mode: .sync, dryRun: false, targets: [target]))
        #expect(json.contains(#""remove":[{"address":"100.64.9.9","node":null,"#))
    }

    @Test func blockedOnlyPlanIsNotChanged() throws {
        let dead = Device(id: "1", nodeId: "n1", name: "a.ts.net", hostname: "a", addresses: ["100.64.0.1"], tags: ["tag:dns"], connectedToControl: false)
        let inventory = ResolverInventory(devices: [dead], now: Date(), staleAfter: .seconds(300), resolverTags: ["tag:dns"])
        let target = Planner.plan(target: .global, current: ["100.64.0.1"], inventory: inventory, settings: PlanSettings(minResolvers: 1))
        let plan = Plan(tailnet: "-", mode: .sync, dryRun: true, targets: [target])
        #expect(!plan.changed)
        #expect(PlanRenderer.json(plan).hasPrefix(#"{"changed":false"#))
        #expect(PlanRenderer.text(plan).contains("0 changes: 0 to add, 0 to remove, 1 blocked"))
    }

    @Test func markdownIsATable() {
        let markdown = PlanRenderer.markdown(contractPlan())
        #expect(markdown.contains("### target global (tailnet example.com)"))
        #expect(markdown.contains("| + | 100.64.0.7 | dns-prod-2 | healthy, tag:dns, kubernetes:prod/dns/coredns |"))
        #expect(markdown.contains("| · | 1.1.1.1 |  | unmanaged |"))
    }
}

@Suite("Address owners")
struct AddressOwnersTests {
    /// Devices drawn from a small pool of addresses, so that many share one and some list
    /// one twice: every address's owners are the devices that claim it, in list order, each once.
    @Test(arguments: [0, 1, 5, 11, 300, 3_000])
    func ownersAreTheClaimantsInListOrder(count: Int) {
        var random = SplitMix(seed: UInt64(count))
        let pool = (1...40).flatMap { n in ["100.64.0.\(n)", "fd7a:115c:a1e0::\(n)"] }
        let devices = (0..<count).map { n in
            let addresses = (0..<Int(random.next() % 4)).map { _ in pool[Int(random.next() % UInt64(pool.count))] }
            return Device(id: "\(n)", nodeId: "n\(n)", name: "d\(n).ts.net", hostname: "d\(n)", addresses: addresses)
        }
        var expected: [IPAddress: [Int]] = [:]
        for (index, device) in devices.enumerated() {
            for address in device.ipAddresses where expected[address]?.last != index { expected[address, default: []].append(index) }
        }
        // Also with every address in one fingerprint and one run of slots that wraps around
        // the end: only the check against the device tells them apart, and every growth
        // reorders the run (quadratic: not for the largest list).
        // Sized for every address, and grown from the smallest table.
        func filled(expected: Int, collides: Bool = false) -> AddressOwners {
            var owners = AddressOwners(expected: expected, everyAddressCollides: collides)
            for index in devices.indices {
                for address in devices[index].ipAddresses { owners.insert(address, position: index) }
            }
            return owners
        }
        var tables = [filled(expected: 2 * count), filled(expected: 0)]
        if count <= 300 { tables.append(filled(expected: 0, collides: true)) }
        for owners in tables {
            for text in pool + ["100.64.1.1", "fd7a:115c:a1e0::1:0", "100.100.100.100"] {
                let address = IPAddress(text)!
                #expect(owners.owners(of: address, in: devices) == expected[address, default: []], "\(text)")
            }
        }
    }

    /// A shared address answers with a healthy claimant wherever it stands in the list.
    @Test func aSharedAddressIsOwnedByAHealthyClaimant() {
        let now = Date(timeIntervalSince1970: 1_795_000_000)
        let offline = Device(id: "1", nodeId: "n1", name: "old.ts.net", hostname: "old", addresses: ["100.64.0.9"],
                             connectedToControl: false, lastSeen: now.addingTimeInterval(-3600))
        let online = Device(id: "2", nodeId: "n2", name: "new.ts.net", hostname: "new", addresses: ["100.64.0.9"])
        for devices in [[offline, online], [online, offline]] {
            let inventory = ResolverInventory(devices: devices, now: now, staleAfter: .seconds(300), resolverTags: [])
            #expect(inventory.owner(of: IPAddress("100.64.0.9")!)?.nodeId == "n2")
            #expect(inventory.owner(of: IPAddress("100.64.0.8")!) == nil)
        }
    }
}

/// SplitMix64: a seeded generator, so a failure names its input.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite("Candidates by nodeId")
struct NodeIdFilterTests {
    /// Never wrong when it says no: every key passes, and (what makes it worth having) all
    /// but a few strings that are not keys are turned away.
    @Test(arguments: [0, 1, 7, 40, 500])
    func everyKeyPassesAndMostOthersDoNot(count: Int) {
        var random = SplitMix(seed: UInt64(count) + 99)
        func nodeId() -> String { "n" + String(random.next() % 1_000_000_000, radix: 36) + "CNTRL" }
        let keys = Set((0..<count).map { _ in nodeId() })
        let filter = NodeIdFilter(keys)
        for key in keys { #expect(filter.mayContain(key), "\(key)") }
        let others = (0..<2_000).map { _ in nodeId() }.filter { !keys.contains($0) }
        #expect(others.filter(filter.mayContain).count <= others.count / 100)
    }

    /// Swift compares strings by canonical equivalence, and so does a dictionary of sources:
    /// the filter lets through whatever `==` could match.
    @Test func canonicallyEquivalentStringsPass() {
        let kelvin = "\u{212A}", k = "K", composed = "n\u{E9}", decomposed = "ne\u{301}"
        #expect(kelvin == k && composed == decomposed)
        #expect(NodeIdFilter([kelvin]).mayContain(k))
        #expect(NodeIdFilter([k]).mayContain(kelvin))
        #expect(NodeIdFilter([composed]).mayContain(decomposed))
        #expect(NodeIdFilter([decomposed, "n1"]).mayContain(composed))
        #expect(!NodeIdFilter(["n1"]).mayContain("n2"))
    }

    /// A device whose nodeId equals a source's only canonically is a candidate, as before.
    @Test func aCanonicallyEqualNodeIdIsACandidate() {
        let now = Date(timeIntervalSince1970: 1_795_000_000)
        let devices = [
            Device(id: "1", nodeId: "n\u{212A}", name: "a.ts.net", hostname: "a", addresses: ["100.64.0.1"]),
            Device(id: "2", nodeId: "n2", name: "b.ts.net", hostname: "b", addresses: ["100.64.0.2"]),
        ]
        let inventory = ResolverInventory(
            index: DeviceIndex(devices: devices, now: now, staleAfter: .seconds(300), resolverTags: []),
            extraSources: ["nK": ["manual"]]
        )
        #expect(inventory.candidates.map(\.device.id) == ["1"])
    }
}
