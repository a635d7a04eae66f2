import Foundation
import Synchronization
import Testing
@testable import TSDNSHTTP
import TSDNSSimulator

@Suite("libcurl HTTP client", .timeLimit(.minutes(1)))
struct HTTPClientTests {
    @Test func aBodyOverTheCapIsAnErrorNotAnAllocation() async throws {
        let big = Data(repeating: 0x61, count: 3 << 20)
        let server = try LoopbackHTTPServer { _ in ServerResponse(status: 200, body: big) }
        defer { server.stop() }
        let client = HTTPClient(options: HTTPClientOptions(maxBodySize: 1 << 20))
        let error = try #require(await #expect(throws: HTTPClientError.self) { try await client.send(HTTPRequest(url: server.baseURL + "/big")) })
        #expect(error.description.contains("larger than 1 MiB"))
        // Under the cap it arrives whole.
        let whole = try await HTTPClient(options: HTTPClientOptions(maxBodySize: 4 << 20)).send(HTTPRequest(url: server.baseURL + "/big"))
        #expect(whole.body.count == big.count)
    }

    /// A sink takes a 2xx body as it arrives (told its length first) and the response holds
    /// none; any other answer's body is collected as usual, for its error message. The cap
    /// counts what the sink took.
    @Test func aSinkTakesSuccessfulBodiesOnly() async throws {
        final class Collector: HTTPBodySink, @unchecked Sendable {
            var expected: Int?
            var bytes = Data()
            var pieces = 0
            func begin(expectedLength: Int?) { expected = expectedLength }
            func consume(_ chunk: UnsafeRawBufferPointer) {
                bytes.append(contentsOf: chunk)
                pieces += 1
            }
        }
        let big = Data((0..<500_000).map { UInt8($0 % 251) })
        let server = try LoopbackHTTPServer { request in
            request.path == "/missing" ? ServerResponse(status: 404, body: Data("no such thing".utf8)) : ServerResponse(status: 200, body: big)
        }
        defer { server.stop() }
        let collector = Collector()
        var request = HTTPRequest(url: server.baseURL + "/big")
        request.bodySink = collector
        let response = try await HTTPClient().send(request)
        #expect(response.status == 200)
        #expect(response.body.isEmpty)
        #expect(collector.bytes == big)
        #expect(collector.expected == big.count)
        #expect(collector.pieces > 1, "the body arrives in pieces: \(collector.pieces)")

        let untouched = Collector()
        var missing = HTTPRequest(url: server.baseURL + "/missing")
        missing.bodySink = untouched
        let answer = try await HTTPClient().send(missing)
        #expect(answer.status == 404)
        #expect(String(decoding: answer.body, as: UTF8.self) == "no such thing")
        #expect(untouched.bytes.isEmpty && untouched.expected == nil)

        var capped = HTTPRequest(url: server.baseURL + "/big")
        capped.bodySink = Collector()
        await #expect(throws: HTTPClientError.self) { try await HTTPClient(options: HTTPClientOptions(maxBodySize: 100_000)).send(capped) }
    }

    @Test func sendsMethodHeadersAndBody() async throws {
        let seen = Mutex<ServerRequest?>(nil)
        let server = try LoopbackHTTPServer { request in
            seen.withLock { $0 = request }
            return ServerResponse(status: 201, headers: [ServerHeader("X-Answer", "42")], body: Data("done".utf8))
        }
        defer { server.stop() }
        let response = try await HTTPClient().send(HTTPRequest(
            method: "PATCH", url: server.baseURL + "/thing?x=1",
            headers: [HTTPHeader("Authorization", "Bearer abc")], body: Data(#"{"a":1}"#.utf8)
        ))
        #expect(response.status == 201)
        #expect(response.header("x-answer") == "42")
        #expect(String(decoding: response.body, as: UTF8.self) == "done")
        let request = try #require(seen.withLock { $0 })
        #expect(request.method == "PATCH")
        #expect(request.path == "/thing")
        #expect(request.query == ["x": "1"])
        #expect(request.header("authorization") == "Bearer abc")
        #expect(String(decoding: request.body, as: UTF8.self) == #"{"a":1}"#)
    }

    @Test func largeBodiesArriveWhole() async throws {
        let big = Data((0..<300_000).map { UInt8($0 % 251) })
        let server = try LoopbackHTTPServer { request in ServerResponse(status: 200, body: request.body) }
        defer { server.stop() }
        let response = try await HTTPClient().send(HTTPRequest(method: "POST", url: server.baseURL, body: big))
        #expect(response.body == big)
    }

    @Test func timeoutIsATransportError() async throws {
        let server = try LoopbackHTTPServer { _ in ServerResponse(status: 200, delay: .seconds(3)) }
        defer { server.stop() }
        let client = HTTPClient(options: HTTPClientOptions(totalTimeout: .milliseconds(300)))
        let error = try #require(await #expect(throws: HTTPClientError.self) { try await client.send(HTTPRequest(url: server.baseURL)) })
        guard case .transport(_, _, let timedOut) = error else { Issue.record("\(error)"); return }
        #expect(timedOut)
    }

    @Test func streamsChunksAsTheyArrive() async throws {
        let release = Mutex(false)
        let server = try LoopbackHTTPServer { _ in
            ServerResponse(status: 200) { writer in
                writer.write(Data("first\n".utf8))
                // The second chunk waits until the client has seen the first.
                while !release.withLock({ $0 }) && writer.isOpen { usleep(1000) }
                writer.write(Data("second\n".utf8))
            }
        }
        defer { server.stop() }
        let (head, body) = try await HTTPClient(options: HTTPClientOptions(totalTimeout: nil)).stream(HTTPRequest(url: server.baseURL + "/watch"))
        #expect(head.status == 200)
        var chunks: [String] = []
        for try await chunk in body {
            chunks.append(String(decoding: chunk, as: UTF8.self))
            release.withLock { $0 = true }
        }
        #expect(chunks.joined() == "first\nsecond\n")
        #expect(chunks.first == "first\n", "the first chunk arrived before the stream ended")
    }

    @Test func endingAStreamAbortsTheTransfer() async throws {
        let server = try LoopbackHTTPServer { _ in
            ServerResponse(status: 200) { writer in
                // An endless watch: it ends only when the client goes away.
                while writer.write(Data("tick\n".utf8)) { usleep(20_000) }
            }
        }
        defer { server.stop() }
        let (_, body) = try await HTTPClient(options: HTTPClientOptions(totalTimeout: nil)).stream(HTTPRequest(url: server.baseURL))
        var count = 0
        for try await _ in body {
            count += 1
            if count == 3 { break }
        }
        #expect(count == 3)
    }

    @Test func streamHeadArrivesBeforeAnyBody() async throws {
        let release = Mutex(false)
        let server = try LoopbackHTTPServer { _ in
            ServerResponse(status: 200) { writer in
                // A quiet watch: no event until the client has its head.
                while !release.withLock({ $0 }) && writer.isOpen { usleep(1000) }
                writer.write(Data("event\n".utf8))
            }
        }
        defer { server.stop() }
        let (head, body) = try await HTTPClient(options: HTTPClientOptions(totalTimeout: nil)).stream(HTTPRequest(url: server.baseURL))
        #expect(head.status == 200)
        release.withLock { $0 = true }
        var text = ""
        for try await chunk in body { text += String(decoding: chunk, as: UTF8.self) }
        #expect(text == "event\n")
    }

    @Test func schemelessURLIsNeverPlainHTTP() async throws {
        let seen = Mutex(false)
        let server = try LoopbackHTTPServer { _ in
            seen.withLock { $0 = true }
            return ServerResponse(status: 200)
        }
        defer { server.stop() }
        // Without a scheme curl would guess http://; it must try TLS (and fail) instead.
        let client = HTTPClient(options: HTTPClientOptions(totalTimeout: .seconds(1)))
        await #expect(throws: HTTPClientError.self) {
            try await client.send(HTTPRequest(url: "127.0.0.1:\(server.port)/", headers: [HTTPHeader("Authorization", "Bearer secret")]))
        }
        #expect(!seen.withLock { $0 }, "a plain-text request reached the server")
    }

    @Test func streamReportsAnErrorStatusBeforeTheBody() async throws {
        let server = try LoopbackHTTPServer { _ in ServerResponse(status: 410, body: Data(#"{"reason":"Expired"}"#.utf8)) }
        defer { server.stop() }
        let (head, body) = try await HTTPClient().stream(HTTPRequest(url: server.baseURL))
        #expect(head.status == 410)
        var text = ""
        for try await chunk in body { text += String(decoding: chunk, as: UTF8.self) }
        #expect(text == #"{"reason":"Expired"}"#)
    }
}

@Suite("Response head lines, read as bytes")
struct HeaderLineTests {
    static func line(_ text: String) -> HeaderLine {
        Array(text.utf8).withUnsafeBytes { HeaderLine($0) }
    }

    @Test(arguments: [
        ("\r\n", HeaderLine.end),
        (" \t\r\n", .end),
        ("HTTP/1.1 200 OK\r\n", .status),
        ("HTTP/2 404\r\n", .status),
        ("Content-Length: 42\r\n", .field(name: "content-length", value: "42")),
        ("X-Thing \t:\t a  b \t\r\n", .field(name: "x-thing", value: "a  b")),
        ("Empty:\r\n", .field(name: "empty", value: "")),
        ("Location: http://a/b:c\r\n", .field(name: "location", value: "http://a/b:c")),
        ("Name: caf\u{E9}\r\n", .field(name: "name", value: "caf\u{E9}")),
        ("no colon here\r\n", .other),
    ])
    func aLine(_ text: String, _ expected: HeaderLine) {
        #expect(Self.line(text) == expected, "\(text.debugDescription)")
    }

    /// Only spaces and tabs are trimmed (RFC 9110's whitespace), not other Unicode spaces.
    @Test func aNoBreakSpaceIsPartOfTheValue() {
        #expect(Self.line("A: x\u{A0}\r\n") == .field(name: "a", value: "x\u{A0}"))
    }
}
