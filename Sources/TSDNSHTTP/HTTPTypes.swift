import Foundation

public struct HTTPHeader: Sendable, Equatable {
    public var name: String
    public var value: String

    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// Takes a successful (2xx) response's body as it arrives, in place of the response
/// collecting it: a large body is then never held whole. Other answers' bodies are
/// collected as usual. Called from the transfer's thread only.
public protocol HTTPBodySink: AnyObject, Sendable {
    /// Before the first bytes: the Content-Length, when the server sent one.
    func begin(expectedLength: Int?)
    func consume(_ bytes: UnsafeRawBufferPointer)
}

public struct HTTPRequest: Sendable {
    public var method: String
    public var url: String
    public var headers: [HTTPHeader]
    public var body: Data?
    /// Overrides the client's `totalTimeout` for this request.
    public var timeout: Duration?
    /// Where a 2xx body goes as it arrives (the response's `body` is then empty).
    public var bodySink: (any HTTPBodySink)?

    public init(method: String = "GET", url: String, headers: [HTTPHeader] = [], body: Data? = nil, timeout: Duration? = nil) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.timeout = timeout
    }
}

/// The status line and headers of a response. Header names are lower-cased.
public struct HTTPResponseHead: Sendable {
    public var status: Int
    public var headers: [String: String]

    public init(status: Int, headers: [String: String]) {
        self.status = status
        self.headers = headers
    }

    public func header(_ name: String) -> String? { headers[name.lowercased()] }
}

public struct HTTPResponse: Sendable {
    public var head: HTTPResponseHead
    public var body: Data

    public var status: Int { head.status }
    public func header(_ name: String) -> String? { head.header(name) }

    public init(head: HTTPResponseHead, body: Data) {
        self.head = head
        self.body = body
    }
}

/// TLS material. Verification is always on unless `insecureSkipVerify` is set explicitly.
public struct TLSOptions: Sendable {
    public var caFile: String?
    public var caPEM: Data?
    public var clientCertificatePEM: Data?
    public var clientKeyPEM: Data?
    public var insecureSkipVerify: Bool

    public init(
        caFile: String? = nil, caPEM: Data? = nil,
        clientCertificatePEM: Data? = nil, clientKeyPEM: Data? = nil,
        insecureSkipVerify: Bool = false
    ) {
        self.caFile = caFile
        self.caPEM = caPEM
        self.clientCertificatePEM = clientCertificatePEM
        self.clientKeyPEM = clientKeyPEM
        self.insecureSkipVerify = insecureSkipVerify
    }
}

public struct HTTPClientOptions: Sendable {
    public var connectTimeout: Duration
    /// Whole-transfer limit; `nil` for none (watches), which then rely on `lowSpeedTime`.
    public var totalTimeout: Duration?
    /// A transfer slower than `lowSpeedLimit` bytes/s for `lowSpeedTime` is aborted.
    public var lowSpeedLimit: Int
    public var lowSpeedTime: Duration?
    public var tls: TLSOptions
    /// A complete body larger than this is an error, not an out-of-memory (streams are
    /// bounded by their reader).
    public var maxBodySize: Int
    /// A proxy URL (`http://`, `socks5://`, `socks5h://`) for every request; nil: the
    /// environment's proxy variables, as curl reads them.
    public var proxy: String?
    /// `HOST:PORT:CONNECT-HOST:CONNECT-PORT` pairs: connect elsewhere than the URL's host
    /// while TLS verifies (and SNI names) the URL's host — how a kubeconfig's
    /// `tls-server-name` is honoured.
    public var connectTo: [String]
    /// Keep connections open between requests of one client (off: a new connection each).
    public var reuseConnections: Bool

    public init(
        connectTimeout: Duration = .seconds(5),
        totalTimeout: Duration? = .seconds(30),
        lowSpeedLimit: Int = 1,
        lowSpeedTime: Duration? = nil,
        tls: TLSOptions = TLSOptions(),
        maxBodySize: Int = 256 << 20,
        proxy: String? = nil,
        connectTo: [String] = [],
        reuseConnections: Bool = true
    ) {
        self.reuseConnections = reuseConnections
        self.maxBodySize = maxBodySize
        self.proxy = proxy
        self.connectTo = connectTo
        self.connectTimeout = connectTimeout
        self.totalTimeout = totalTimeout
        self.lowSpeedLimit = lowSpeedLimit
        self.lowSpeedTime = lowSpeedTime
        self.tls = tls
    }
}

public enum HTTPClientError: Error, Sendable, CustomStringConvertible {
    /// The request never produced a complete response: network, TLS, timeout, reset.
    case transport(curlCode: Int, message: String, timedOut: Bool)
    case cancelled
    /// The response body is larger than `HTTPClientOptions.maxBodySize`: refused, not read.
    case bodyTooLarge(url: String, limit: Int)
    /// libcurl cannot be loaded: no request is sent, now or later. Not worth a retry.
    case unavailable(String)

    public var description: String {
        switch self {
        case .transport(_, let message, _): return message
        case .cancelled: return "request cancelled"
        case .bodyTooLarge(let url, let limit): return "\(url): the response body is larger than \(limit >> 20) MiB"
        case .unavailable(let reason): return reason
        }
    }
}

extension Duration {
    var milliseconds: Int {
        let (seconds, attoseconds) = components
        return Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000)
    }
}

/// One line of a response head as libcurl hands it (`Name: value\r\n`), read as bytes:
/// RFC 9110's optional whitespace is spaces and tabs, and Foundation's trimming went through
/// NSString and CharacterSet three times a line, before a response's first body byte.
enum HeaderLine: Equatable {
    /// The empty line that ends a head.
    case end
    /// `HTTP/1.1 200 OK`: a head begins.
    case status
    /// A field, its name lowercased, both sides trimmed.
    case field(name: String, value: String)
    /// Anything else (no colon): ignored.
    case other

    init(_ line: UnsafeRawBufferPointer) {
        func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0A }
        func trimmed(_ part: Slice<UnsafeRawBufferPointer>) -> Slice<UnsafeRawBufferPointer> {
            var part = part
            while let first = part.first, isSpace(first) { part = part.dropFirst() }
            while let last = part.last, isSpace(last) { part = part.dropLast() }
            return part
        }
        let content = trimmed(line[...])
        if content.isEmpty {
            self = .end
        } else if content.starts(with: "HTTP/".utf8) {
            self = .status
        } else if let colon = content.firstIndex(of: UInt8(ascii: ":")) {
            let name = trimmed(content[..<colon])
            let value = trimmed(content[(colon + 1)...])
            self = .field(name: String(decoding: name, as: UTF8.self).lowercased(), value: String(decoding: value, as: UTF8.self))
        } else {
            self = .other
        }
    }
}
