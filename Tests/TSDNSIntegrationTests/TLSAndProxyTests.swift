import Foundation
import Synchronization
import Testing
import TSDNSHTTP
import TSDNSSimulator

/// A throw-away CA, a server certificate for 127.0.0.1 and a client certificate, made with
/// the openssl command, and `openssl s_server` as a real TLS peer on loopback.
struct TLSFixture {
    let directory: URL
    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }
    func pem(_ name: String) throws -> Data { try Data(contentsOf: directory.appendingPathComponent(name)) }

    /// One set for the whole test run, made once on a thread of its own: key generation
    /// and process waits must not hold the test runner's two cooperative threads.
    static func make() async throws -> TLSFixture {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread { continuation.resume(with: shared) }
            thread.start()
        }
    }

    private static let shared: Result<TLSFixture, Error> = Result { try generate() }

    private static func generate() throws -> TLSFixture {
        let fixture = TLSFixture(directory: try scratchDirectory())
        try write("subjectAltName=IP:127.0.0.1\n", to: fixture.directory.appendingPathComponent("san.ext"))
        let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        let steps: [[String]] = [
            ["req", "-x509"] + key + ["-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=tsdns test CA"],
            ["req"] + key + ["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"],
            ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem", "-days", "1", "-extfile", "san.ext"],
            ["req"] + key + ["-keyout", "client.key", "-out", "client.csr", "-subj", "/CN=tsdns client"],
            ["x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "client.pem", "-days", "1"],
        ]
        for step in steps {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
            process.arguments = step
            process.currentDirectoryURL = fixture.directory
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else { throw HarnessError.timedOut("openssl \(step[0]) failed") }
        }
        return fixture
    }

    /// `openssl s_server -www` on a free port; `requireClientCertificate` adds `-Verify 1`.
    func server(requireClientCertificate: Bool) async throws -> (Process, Int) {
        let probe = try LoopbackHTTPServer { _ in ServerResponse(status: 404) }
        let port = probe.port
        probe.stop()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = ["s_server", "-accept", "127.0.0.1:\(port)", "-cert", path("server.pem"), "-key", path("server.key"), "-www", "-quiet"]
            + (requireClientCertificate ? ["-Verify", "1", "-CAfile", path("ca.pem")] : [])
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        try await eventually("s_server listens") {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            return withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
            }
        }
        return (process, port)
    }
}

@Suite("TLS and proxies", .timeLimit(.minutes(1)))
struct TLSAndProxyTests {
    @Test func verifiesAgainstACAFileOrAnInMemoryCA() async throws {
        let fixture = try await TLSFixture.make()
        let (server, port) = try await fixture.server(requireClientCertificate: false)
        defer { kill(server.processIdentifier, SIGKILL) }
        let url = "https://127.0.0.1:\(port)/"

        // Verification is on by default: an unknown CA is refused.
        await #expect(throws: HTTPClientError.self) { try await HTTPClient().send(HTTPRequest(url: url)) }

        let byFile = try await HTTPClient(options: HTTPClientOptions(tls: TLSOptions(caFile: fixture.path("ca.pem")))).send(HTTPRequest(url: url))
        #expect(byFile.status == 200)
        let byPEM = try await HTTPClient(options: HTTPClientOptions(tls: TLSOptions(caPEM: try fixture.pem("ca.pem")))).send(HTTPRequest(url: url))
        #expect(byPEM.status == 200)
    }

    @Test func presentsAClientCertificateFromMemory() async throws {
        let fixture = try await TLSFixture.make()
        let (server, port) = try await fixture.server(requireClientCertificate: true)
        defer { kill(server.processIdentifier, SIGKILL) }
        let url = "https://127.0.0.1:\(port)/"
        let ca = try fixture.pem("ca.pem")

        await #expect(throws: HTTPClientError.self) {
            try await HTTPClient(options: HTTPClientOptions(tls: TLSOptions(caPEM: ca))).send(HTTPRequest(url: url))
        }
        let tls = TLSOptions(caPEM: ca, clientCertificatePEM: try fixture.pem("client.pem"), clientKeyPEM: try fixture.pem("client.key"))
        let response = try await HTTPClient(options: HTTPClientOptions(tls: tls)).send(HTTPRequest(url: url))
        #expect(response.status == 200)
    }

    @Test func usesTheProxyFromTheEnvironment() async throws {
        let tailnet = try makeTailnet()
        defer { tailnet.stop() }
        let seen = Mutex<[String]>([])
        let proxy = try LoopbackHTTPServer { request in
            seen.withLock { $0.append(request.path) }
            return .json(503, ["message": "proxy says no"])
        }
        defer { proxy.stop() }
        let dir = try ConfigDirectory(tailnet: tailnet)
        defer { dir.remove() }
        let result = try await Binary.run(["run", "--dry-run", "--config", dir.config], environment: ["http_proxy": proxy.baseURL])
        #expect(result.status == 1)
        #expect(seen.withLock { $0 }.contains { $0 == "\(tailnet.baseURL)/api/v2/tailnet/-/devices" }, "absolute URI through the proxy")
        #expect(tailnet.requests.isEmpty, "nothing went around the proxy")
    }
}
