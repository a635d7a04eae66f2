import Foundation
import Testing
import TSDNSCore
import TSDNSProbe

/// The DNS probe against real servers (see ProbeLab).
@Suite("DNS probe", .timeLimit(.minutes(1)))
struct DNSProbeTests {
    func prober(_ lab: ProbeLab, name: String = "a.probe.test", type: DNSMessage.QueryType = .A, transport: ProbeSettings.Transport = .udp,
                timeout: Duration = .seconds(1), proxy: SOCKS5Proxy? = nil, concurrency: Int = 32) -> DNSProber {
        DNSProber(settings: ProbeSettings(name: name, type: type, port: lab.port, timeout: timeout, transport: transport, proxy: proxy, concurrency: concurrency))
    }

    @Test func answersPassAndFailuresSayWhy() async throws {
        let lab = try await ProbeLab.make()
        defer { lab.teardown() }
        let dnsmasq = try await lab.start(.dnsmasq)
        let servfail = try await lab.start(.stub("servfail"))
        let silent = try await lab.start(.stub("silent"))
        let nothing = try await lab.unusedAddress()

        for transport in [ProbeSettings.Transport.udp, .tcp] {
            let results = await prober(lab, transport: transport).probe([dnsmasq, servfail, silent])
            #expect(results.map(\.outcome) == [.ok, .servfail, .timeout], "\(transport)")
            #expect(results[0].roundTrip.map { $0 < .seconds(1) } == true)
            #expect(results[1].reason == "dns probe: SERVFAIL")
            #expect(results[2].reason == "dns probe: timeout after 1s")
        }
        // NXDOMAIN is an answer: the resolver works. REFUSED is not.
        #expect(await prober(lab, name: "x.nx.test").probe([dnsmasq]).map(\.outcome) == [.ok])
        let refused = await prober(lab, name: "example.org").probe([dnsmasq])
        #expect(refused.map(\.outcome) == [.refused("REFUSED")])
        #expect(refused.first?.outcome.label == "refused")

        // Nothing listens: over TCP a refused connection; over UDP the ICMP port-unreachable
        // (in a namespace the address exists; on loopback too).
        #expect(await prober(lab, transport: .tcp).probe([nothing]).first?.outcome == .refused("connection refused"))
        #expect(await prober(lab).probe([nothing]).first?.outcome == .refused("connection refused"))
    }

    @Test func aWrongIdIsIgnoredAndTheRightOneAccepted() async throws {
        let lab = try await ProbeLab.make()
        defer { lab.teardown() }
        let wrongID = try await lab.start(.stub("wrongid"))
        let result = try #require(await prober(lab).probe([wrongID]).first)
        #expect(result.outcome == .ok, "a stray SERVFAIL with another ID, then noise, then our answer")
    }

    @Test func aTruncatedAnswerIsAskedAgainOverTCP() async throws {
        let lab = try await ProbeLab.make()
        defer { lab.teardown() }
        let truncating = try await lab.start(.stub("truncate"))
        // Over UDP it sends TC=1 with SERVFAIL; only the TCP answer says NOERROR.
        #expect(await prober(lab).probe([truncating]).first?.outcome == .ok)
    }

    @Test func aBatchWithSilentResolversTakesAboutOneTimeout() async throws {
        let lab = try await ProbeLab.make()
        defer { lab.teardown() }
        let dnsmasq = try await lab.start(.dnsmasq)
        let silent = try await lab.start(.stub("silent"))
        let targets = (0..<200).map { $0 % 4 == 0 ? silent : dnsmasq }
        let clock = ContinuousClock()
        let start = clock.now
        let results = await prober(lab, timeout: .seconds(2), concurrency: 32).probe(targets)
        let took = clock.now - start
        #expect(results.count == 200)
        #expect(results.filter(\.passed).count == 150, "no answering resolver is failed for the silent ones")
        let silentResults = results.enumerated().filter { $0.offset % 4 == 0 }.map(\.element)
        #expect(silentResults.allSatisfy { $0.outcome == .timeout })
        // 32 of the 50 got their whole timeout; the 18 the deadline cut short get no verdict.
        #expect(silentResults.filter { !$0.cutShort }.count >= 32)
        #expect(results.filter { $0.cutShort && $0.address == dnsmasq }.isEmpty)
        // One timeout is 2.2 s with the margin; two rounds of 32 would be 4 s, and 50 in a row 100 s.
        #expect(took < .milliseconds(3500), "50 silent resolvers, 32 at a time, cost one timeout: \(took)")
    }

    @Test func throughASOCKS5Proxy() async throws {
        let lab = try await ProbeLab.make()
        defer { lab.teardown() }
        let dnsmasq = try await lab.start(.dnsmasq)
        let servfail = try await lab.start(.stub("servfail"))
        let nothing = try await lab.unusedAddress()
        let socks = try await Microsocks.start()
        defer { socks.stop() }
        let proxy = try #require(SOCKS5Proxy(url: "socks5://127.0.0.1:\(socks.port)"))
        let results = await prober(lab, proxy: proxy).probe([dnsmasq, servfail, nothing])
        #expect(results.map(\.outcome) == [.ok, .servfail, .refused("connection refused (via socks5)")])

        let authenticated = try await Microsocks.start(user: "probe", password: "s3cret")
        defer { authenticated.stop() }
        let withPassword = try #require(SOCKS5Proxy(url: "socks5://probe:s3cret@127.0.0.1:\(authenticated.port)"))
        #expect(await prober(lab, proxy: withPassword).probe([dnsmasq]).map(\.outcome) == [.ok])
        let wrong = try #require(SOCKS5Proxy(url: "socks5://probe:nope@127.0.0.1:\(authenticated.port)"))
        #expect(await prober(lab, proxy: wrong).probe([dnsmasq]).first?.outcome == .error("socks5 proxy refused the username and password"))
    }

    @Test func cancellingEndsABatchAtOnce() async throws {
        let lab = try await ProbeLab.make()
        defer { lab.teardown() }
        let silent = try await lab.start(.stub("silent"))
        let clock = ContinuousClock()
        let start = clock.now
        let batch = Task { await prober(lab, timeout: .seconds(5)).probe([silent, silent]) }
        batch.cancel()
        let results = await batch.value
        #expect(clock.now - start < .seconds(2), "a shutdown does not wait for a 5 s timeout")
        #expect(results.allSatisfy { $0.cutShort })
    }

    @Test func queriesAreWellFormed() throws {
        let name = try DNSMessage.encodeName("Example.COM.")
        #expect(name == [7] + Array("Example".utf8) + [3] + Array("COM".utf8) + [0])
        #expect(try DNSMessage.encodeName(".") == [0])
        #expect(throws: DNSMessage.EncodingError.self) { try DNSMessage.encodeName(String(repeating: "a", count: 64) + ".com") }
        let query = DNSMessage.query(id: 0xBEEF, name: name, type: .AAAA, edns: true)
        #expect(Array(query[0..<12]) == [0xBE, 0xEF, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1])
        // An answer to it, with the question's name in another case, matches.
        var answer = query
        answer[2] = 0x81
        answer[3] = 0x83  // NXDOMAIN
        answer[13] = UInt8(ascii: "e")
        let parsed = try DNSMessage.parseAnswer(answer)
        #expect(parsed.rcode == 3 && !parsed.truncated)
        #expect(DNSMessage.matches(parsed, id: 0xBEEF, name: name, type: .AAAA))
        #expect(!DNSMessage.matches(parsed, id: 0xBEEE, name: name, type: .AAAA))
        #expect(!DNSMessage.matches(parsed, id: 0xBEEF, name: name, type: .A))
        #expect(throws: DNSMessage.ParseError.tooShort) { try DNSMessage.parseAnswer(Array(answer.prefix(11))) }
        #expect(throws: DNSMessage.ParseError.notAResponse) { try DNSMessage.parseAnswer(query) }
        // A compression loop does not hang the parser.
        var loop = Array(answer.prefix(12))
        loop += [0xC0, 12, 0, 1, 0, 1]
        #expect(throws: DNSMessage.ParseError.badName) { try DNSMessage.parseAnswer(loop) }
    }

    @Test func proxyURLs() {
        #expect(SOCKS5Proxy(url: "socks5://127.0.0.1:1055") == SOCKS5Proxy(url: "socks5h://localhost:1055/"))
        #expect(SOCKS5Proxy(url: "socks5://u:p%40ss@[::1]:1080")?.password == "p@ss")
        #expect(SOCKS5Proxy(url: "http://127.0.0.1:1055") == nil)
        #expect(SOCKS5Proxy(url: "socks5://proxy.example:1055") == nil, "an address, not a name")
    }
}

/// Debian's microsocks on a loopback port.
struct Microsocks {
    let process: Spawned
    let port: Int

    /// `log`: a file for what it prints on stderr (one `connected to HOST:PORT` per connection).
    static func start(user: String? = nil, password: String? = nil, log: String? = nil) async throws -> Microsocks {
        let port = try freePort()
        let process = try Spawned(["/usr/bin/microsocks", "-i", "127.0.0.1", "-p", "\(port)"] + (user.map { ["-u", $0, "-P", password ?? ""] } ?? []), stderr: log)
        // Listening once a TCP connect succeeds.
        try await eventually("microsocks listens") {
            guard let probe = try? RawConnection(port: port) else { return false }
            probe.close()
            return true
        }
        return Microsocks(process: process, port: port)
    }

    func stop() { process.kill() }

    /// A port nothing listens on right now (bound to 0, read back, released).
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Int32 in
                _ = bind(fd, pointer, length)
                return getsockname(fd, pointer, &length)
            }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
