import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

public struct ServerRequest: Sendable {
    public var method: String
    public var path: String
    public var query: [String: String]
    /// Lower-cased header names.
    public var headers: [String: String]
    public var body: Data
    /// Over TLS: the common name of a client certificate the server's CA verified.
    public var clientCertificateName: String? = nil

    public func header(_ name: String) -> String? { headers[name.lowercased()] }
}

/// Writes the chunks of a streaming response; `write` returns false once the client is gone
/// or the server stops.
public final class ChunkWriter: Sendable {
    fileprivate let connection: ServerConnection
    fileprivate let server: LoopbackHTTPServer

    fileprivate init(connection: ServerConnection, server: LoopbackHTTPServer) {
        self.connection = connection
        self.server = server
    }

    public var isOpen: Bool { server.isRunning }

    @discardableResult
    public func write(_ data: Data) -> Bool {
        guard server.isRunning, !data.isEmpty else { return server.isRunning }
        var frame = Data(String(data.count, radix: 16).utf8)
        frame.append(contentsOf: Array("\r\n".utf8))
        frame.append(data)
        frame.append(contentsOf: Array("\r\n".utf8))
        return connection.sendAll(frame)
    }
}

public struct ServerResponse: Sendable {
    public enum Body: Sendable {
        case complete(Data)
        /// Chunked transfer encoding; the closure runs on the connection's thread.
        case streaming(@Sendable (ChunkWriter) -> Void)
    }

    /// Ways to misbehave, for fault injection.
    public enum Fault: Sendable, Equatable {
        /// Close the connection without answering.
        case dropConnection
        /// Announce the full Content-Length but send only half of the body.
        case truncateBody
    }

    public var status: Int
    public var headers: [ServerHeader]
    public var body: Body
    public var delay: Duration?
    public var fault: Fault?

    public init(status: Int, headers: [ServerHeader] = [], body: Data = Data(), delay: Duration? = nil, fault: Fault? = nil) {
        self.status = status
        self.headers = headers
        self.body = .complete(body)
        self.delay = delay
        self.fault = fault
    }

    public init(status: Int, headers: [ServerHeader] = [], streaming: @escaping @Sendable (ChunkWriter) -> Void) {
        self.status = status
        self.headers = headers
        self.body = .streaming(streaming)
    }

    public static func json(_ status: Int, _ object: Any) -> ServerResponse {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
        return ServerResponse(status: status, headers: [ServerHeader("Content-Type", "application/json")], body: data)
    }
}

/// A small HTTP/1.1 server on 127.0.0.1 with a thread per connection and one request per
/// connection. It exists so the simulators can misbehave at the byte level (drop, truncate,
/// stall), which a full server framework would not let them do.
public final class LoopbackHTTPServer: Sendable {
    public typealias Handler = @Sendable (ServerRequest) -> ServerResponse

    public let port: Int
    private let listener: Int32
    private let handler: Handler
    private let tls: (any ServerSecurity)?
    private let state = Mutex<(running: Bool, connections: Set<Int32>)>((true, []))
    private let accepted = Atomic<Int>(0)

    /// With `tls`, every connection is HTTPS (a real client such as kubectl sends
    /// credentials only over TLS).
    public init(port requestedPort: Int = 0, tls: (any ServerSecurity)? = nil, handler: @escaping Handler) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw SimulatorError.socket("socket: \(String(cString: strerror(errno)))") }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(requestedPort).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 256) == 0 else {
            let message = String(cString: strerror(errno))
            close(fd)
            throw SimulatorError.socket("bind 127.0.0.1:\(requestedPort): \(message)")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        self.port = Int(UInt16(bigEndian: address.sin_port))
        self.listener = fd
        self.handler = handler
        self.tls = tls
        let thread = Thread { [self] in acceptLoop() }
        thread.name = "loopback-http-accept"
        thread.start()
    }

    public var baseURL: String { "\(tls == nil ? "http" : "https")://127.0.0.1:\(port)" }
    public var isRunning: Bool { state.withLock { $0.running } }
    /// TCP connections accepted so far: how a test sees whether clients reuse connections.
    public var acceptedConnections: Int { accepted.load(ordering: .relaxed) }

    /// Stops accepting, and ends open connections (streams included).
    public func stop() {
        // Under the lock: a connection closes its descriptor under the same lock, so no
        // descriptor number is shut down after it was closed and reused.
        state.withLock { state in
            guard state.running else { return }
            state.running = false
            shutdown(listener, Int32(SHUT_RDWR))
            for connection in state.connections { shutdown(connection, Int32(SHUT_RDWR)) }
        }
    }

    private func acceptLoop() {
        // The accept loop owns the listening descriptor and closes it when it ends.
        defer { close(listener) }
        while isRunning {
            let connection = accept(listener, nil, nil)
            if connection < 0 {
                if !isRunning { return }
                // EINTR, ECONNABORTED, EMFILE...: transient; keep serving.
                usleep(errno == EINTR ? 0 : 1000)
                continue
            }
            let admitted = state.withLock { state -> Bool in
                guard state.running else { return false }
                state.connections.insert(connection)
                return true
            }
            guard admitted else {
                close(connection)
                return
            }
            accepted.add(1, ordering: .relaxed)
            let thread = Thread { [self] in
                serve(connection)
                state.withLock { state in
                    state.connections.remove(connection)
                    close(connection)
                }
            }
            thread.name = "loopback-http-conn"
            thread.start()
        }
    }

    /// Answers requests on one connection until the client closes it, asks to, or is idle
    /// for 10 s; streams and faults end the connection after their answer.
    private func serve(_ descriptor: Int32) {
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard let connection = ServerConnection(descriptor, security: tls) else { return }
        defer { connection.close() }
        var pending = Data()
        while isRunning {
            guard var request = readRequest(connection, &pending) else { return }
            request.clientCertificateName = connection.peerName
            let response = handler(request)
            if let delay = response.delay {
                Thread.sleep(forTimeInterval: Double(delay.components.seconds) + Double(delay.components.attoseconds) / 1e18)
            }
            if response.fault == .dropConnection { return }
            var keepAlive = request.header("Connection")?.lowercased() != "close" && response.fault == nil
            if case .streaming = response.body { keepAlive = false }
            var head = "HTTP/1.1 \(response.status) \(reasonPhrase(response.status))\r\nConnection: \(keepAlive ? "keep-alive" : "close")\r\n"
            for header in response.headers { head += "\(header.name): \(header.value)\r\n" }
            switch response.body {
            case .complete(let body):
                head += "Content-Length: \(body.count)\r\n\r\n"
                var bytes = Data(head.utf8)
                bytes.append(response.fault == .truncateBody ? body.prefix(body.count / 2) : body)
                guard connection.sendAll(bytes) else { return }
            case .streaming(let produce):
                head += "Transfer-Encoding: chunked\r\n\r\n"
                guard connection.sendAll(Data(head.utf8)) else { return }
                produce(ChunkWriter(connection: connection, server: self))
                _ = connection.sendAll(Data("0\r\n\r\n".utf8))
            }
            if !keepAlive { return }
        }
    }

    /// The next request; `buffer` holds bytes already read that belong to it (and keeps
    /// what follows it, for the next).
    private func readRequest(_ connection: ServerConnection, _ buffer: inout Data) -> ServerRequest? {
        let separator = Data("\r\n\r\n".utf8)
        var headerEnd: Range<Data.Index>?
        headerEnd = buffer.range(of: separator)
        while headerEnd == nil {
            guard let chunk = connection.receive(), buffer.count < 1 << 20 else { return nil }
            buffer.append(chunk)
            headerEnd = buffer.range(of: separator)
        }
        guard let headerEnd else { return nil }
        let headText = String(decoding: buffer[..<headerEnd.lowerBound], as: UTF8.self)
        var lines = headText.components(separatedBy: "\r\n")
        let requestLine = lines.removeFirst().split(separator: " ")
        guard requestLine.count >= 2 else { return nil }
        var headers: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        var body = Data(buffer[headerEnd.upperBound...])
        guard let expected = Int(headers["content-length"] ?? "0"), expected >= 0, expected <= 16 << 20 else { return nil }
        while body.count < expected {
            guard let chunk = connection.receive() else { return nil }
            body.append(chunk)
        }
        // What came after this request's body is the start of the next one.
        buffer = Data(body.dropFirst(expected))
        let target = String(requestLine[1])
        let parts = target.split(separator: "?", maxSplits: 1)
        var query: [String: String] = [:]
        if parts.count == 2 {
            for pair in parts[1].split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1)
                let key = String(kv[0]).removingPercentEncoding ?? String(kv[0])
                let value = kv.count == 2 ? (String(kv[1]).removingPercentEncoding ?? String(kv[1])) : ""
                query[key] = value
            }
        }
        return ServerRequest(
            method: String(requestLine[0]),
            path: String(parts.first ?? ""),
            query: query,
            headers: headers,
            body: body.prefix(expected)
        )
    }

}

public enum SimulatorError: Error, CustomStringConvertible {
    case socket(String)
    public var description: String {
        switch self {
        case .socket(let message): return message
        }
    }
}

/// The TLS server side the loopback server can speak: the handshake on an accepted socket.
/// `TSDNSSimulatorTLS` implements it with OpenSSL, outside this target, so the shipped
/// binary (whose demo serves plain HTTP) neither carries nor loads a TLS server.
public protocol ServerSecurity: Sendable {
    /// The secured channel, or nil when the handshake fails.
    func accept(_ descriptor: Int32) -> (any SecureChannel)?
}

/// One secured connection: reads and writes like `recv`/`send` (a count, 0 or less at the
/// end or on an error).
public protocol SecureChannel: AnyObject {
    /// The verified client certificate's common name.
    var peerName: String? { get }
    func read(_ buffer: UnsafeMutableRawBufferPointer) -> Int
    func write(_ bytes: UnsafeRawBufferPointer) -> Int
    func close()
}

/// One accepted connection, plain or secured.
private final class ServerConnection: @unchecked Sendable {
    let descriptor: Int32
    private let channel: (any SecureChannel)?

    var peerName: String? { channel?.peerName }

    init?(_ descriptor: Int32, security: (any ServerSecurity)?) {
        self.descriptor = descriptor
        guard let security else {
            channel = nil
            return
        }
        guard let channel = security.accept(descriptor) else { return nil }
        self.channel = channel
    }

    func close() { channel?.close() }

    func receive() -> Data? {
        var bytes = [UInt8](repeating: 0, count: 65536)
        let count = bytes.withUnsafeMutableBytes { buffer in
            channel?.read(buffer) ?? recv(descriptor, buffer.baseAddress, buffer.count, 0)
        }
        guard count > 0 else { return nil }
        return Data(bytes[0..<count])
    }

    /// Sends everything or reports failure; MSG_NOSIGNAL so a closed peer is not a SIGPIPE.
    func sendAll(_ data: Data) -> Bool {
        data.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let rest = UnsafeRawBufferPointer(rebasing: raw[offset...])
                let sent = channel?.write(rest) ?? send(descriptor, rest.baseAddress, rest.count, Int32(MSG_NOSIGNAL))
                if sent <= 0 {
                    if sent < 0 && channel == nil && errno == EINTR { continue }
                    return false
                }
                offset += sent
            }
            return true
        }
    }
}

private func reasonPhrase(_ status: Int) -> String {
    switch status {
    case 200: return "OK"
    case 201: return "Created"
    case 202: return "Accepted"
    case 204: return "No Content"
    case 400: return "Bad Request"
    case 401: return "Unauthorized"
    case 403: return "Forbidden"
    case 404: return "Not Found"
    case 405: return "Method Not Allowed"
    case 409: return "Conflict"
    case 410: return "Gone"
    case 429: return "Too Many Requests"
    case 500: return "Internal Server Error"
    case 502: return "Bad Gateway"
    case 503: return "Service Unavailable"
    case 504: return "Gateway Timeout"
    default: return "Status"
    }
}
