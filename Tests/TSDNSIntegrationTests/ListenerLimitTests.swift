import Foundation
import Testing
import TSDNSConfig

/// A plain TCP connection to the listener, for what a well-behaved client never does.
final class RawConnection {
    private(set) var descriptor: Int32

    init(port: Int) throws {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else { throw HarnessError.timedOut("connect to \(port)") }
    }

    func send(_ text: String) {
        _ = text.withCString { Glibc.send(descriptor, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
    }

    /// Reads until the peer closes or `limit` passes; whether it closed, and what came.
    /// It polls without blocking: the listener's handlers share the test's few threads.
    func readUntilClosed(limit: Duration) async -> (closed: Bool, text: String) {
        let deadline = ContinuousClock.now + limit
        var received = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while ContinuousClock.now < deadline {
            var poller = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, 0)
            guard ready > 0 else {
                try? await Task.sleep(for: .milliseconds(20))
                continue
            }
            let count = recv(descriptor, &buffer, buffer.count, 0)
            if count <= 0 { return (true, String(decoding: received, as: UTF8.self)) }
            received += buffer[0..<count]
        }
        return (false, String(decoding: received, as: UTF8.self))
    }

    /// Closes once: a descriptor closed twice may by then belong to someone else.
    func close() {
        guard descriptor >= 0 else { return }
        Glibc.close(descriptor)
        descriptor = -1
    }

    deinit { close() }
}

@Suite("RPC listener limits", .timeLimit(.minutes(1)))
struct ListenerLimitTests {
    func port(_ loop: LoopHarness) -> Int { Int(loop.baseURL.split(separator: ":").last!)! }

    @Test func headersThatNeverFinishAreCutOff() async throws {
        let loop = try await LoopHarness.start()
        try await loop.synced()
        let slow = try RawConnection(port: port(loop))
        slow.send("GET /v1/inventory HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        let clock = ContinuousClock()
        let start = clock.now
        let (closed, _) = await slow.readUntilClosed(limit: .seconds(20))
        #expect(closed, "a half-sent request is not held forever")
        #expect(clock.now - start < .seconds(13))
        try await loop.stop()
    }

    @Test func pastTheLimitHealthzStillAnswersAndTheRestIs503() async throws {
        let loop = try await LoopHarness.start { $0.rpc.maxConnections = 4 }
        try await loop.synced()
        let idle = try (0..<6).map { _ in try RawConnection(port: port(loop)) }
        try await eventually("the idle connections are counted") {
            try await loop.request("GET", "/v1/inventory").status == 503
        }
        let clock = ContinuousClock()
        let start = clock.now
        let health = try await loop.request("GET", "/healthz")
        #expect(health.status == 200)
        #expect(clock.now - start < .seconds(2), "answered at once, not queued behind the flood")
        let busy = try await loop.request("GET", "/v1/inventory")
        #expect((busy.json["error"] as? String)?.contains("rpc.maxConnections=4") == true)
        for connection in idle { connection.close() }
        try await eventually("the listener serves again") { try await loop.request("GET", "/v1/inventory").status == 200 }
        try await loop.stop()
    }

    @Test func anOversizedBodyIsNotDrainedTheConnectionCloses() async throws {
        let loop = try await LoopHarness.start()
        try await loop.synced()
        let big = try RawConnection(port: port(loop))
        big.send("POST /v1/sync HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n{\"dryRun\": true, \"pad\": \"")
        let (closed, text) = await big.readUntilClosed(limit: .seconds(5))
        #expect(text.hasPrefix("HTTP/1.1 413"), "\(text)")
        #expect(closed, "closed after the 413 without reading 10 MB")
        try await loop.stop()
    }
}
