import TSDNSCore

/// `healthcheck.dns.proxy`: `socks5://[user:password@]HOST:PORT`, HOST an IP address (a
/// tailscaled sidecar listens on loopback).
public struct SOCKS5Proxy: Sendable, Equatable {
    public var address: IPAddress
    public var port: Int
    public var username: String?
    public var password: String?

    public init?(url: String) {
        var rest: Substring
        if url.hasPrefix("socks5://") { rest = url.dropFirst("socks5://".count) }
        else if url.hasPrefix("socks5h://") { rest = url.dropFirst("socks5h://".count) }
        else { return nil }
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at].split(separator: ":", maxSplits: 1).map { String($0).removingPercentEscapes }
            username = credentials.first
            password = credentials.count > 1 ? credentials[1] : ""
            rest = rest[rest.index(after: at)...]
        }
        guard let endpoint = ListenAddress(String(rest)) else { return nil }
        let host = endpoint.host == "localhost" ? "127.0.0.1" : endpoint.host
        guard let address = IPAddress(host), (1...65535).contains(endpoint.port) else { return nil }
        let port = endpoint.port
        self.address = address
        self.port = port
    }
}

/// The client side of a SOCKS5 CONNECT (RFC 1928) with optional username/password (RFC 1929).
enum SOCKS5 {
    enum Method { case noAuthentication, password }

    static func greeting(withPassword: Bool) -> [UInt8] {
        withPassword ? [0x05, 0x02, 0x00, 0x02] : [0x05, 0x01, 0x00]
    }

    static func chosenMethod(_ reply: [UInt8]) -> Method? {
        guard reply.count == 2, reply[0] == 0x05 else { return nil }
        switch reply[1] {
        case 0x00: return .noAuthentication
        case 0x02: return .password
        default: return nil
        }
    }

    static func passwordRequest(username: String, password: String) -> [UInt8] {
        let user = Array(username.utf8.prefix(255))
        let pass = Array(password.utf8.prefix(255))
        return [0x01, UInt8(user.count)] + user + [UInt8(pass.count)] + pass
    }

    static func connectRequest(_ address: IPAddress, port: Int) -> [UInt8] {
        [0x05, 0x01, 0x00, address.isIPv4 ? 0x01 : 0x04] + address.bytes + [UInt8(port >> 8), UInt8(port & 0xFF)]
    }

    static func replyText(_ code: UInt8) -> String {
        switch code {
        case 0x01: return "general failure"
        case 0x02: return "connection not allowed by ruleset"
        case 0x03: return "network unreachable"
        case 0x04: return "host unreachable"
        case 0x05: return "connection refused"
        case 0x06: return "TTL expired"
        case 0x07: return "command not supported"
        case 0x08: return "address type not supported"
        default: return "reply \(code)"
        }
    }
}

extension String {
    /// `%40` → `@` in URL user info.
    var removingPercentEscapes: String {
        var bytes: [UInt8] = []
        var iterator = Array(utf8).makeIterator()
        while let byte = iterator.next() {
            if byte == 0x25, let high = iterator.next(), let low = iterator.next(),
               let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16) {
                bytes.append(value)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
