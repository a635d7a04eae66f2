#if canImport(Glibc)
import Glibc
#endif

/// An IPv4 or IPv6 address, parsed and printed by the C library so that every textual form
/// of one address compares equal. Orders IPv4 before IPv6, each numerically.
public struct IPAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// 4 bytes for IPv4, 16 for IPv6, network order.
    public let bytes: [UInt8]

    public init?(_ text: String) {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            bytes = withUnsafeBytes(of: &v4) { Array($0) }
            return
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            bytes = withUnsafeBytes(of: &v6) { Array($0) }
            return
        }
        return nil
    }

    public var isIPv4: Bool { bytes.count == 4 }

    public var description: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        let family = isIPv4 ? AF_INET : AF_INET6
        _ = bytes.withUnsafeBytes { raw in
            inet_ntop(family, raw.baseAddress, &buffer, socklen_t(buffer.count))
        }
        let text = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return String(decoding: text, as: UTF8.self)
    }

    /// Inside Tailscale's ranges: 100.64.0.0/10 (CGNAT) or fd7a:115c:a1e0::/48.
    public var isTailscaleRange: Bool {
        if isIPv4 { return bytes[0] == 100 && bytes[1] & 0xC0 == 64 }
        return Array(bytes.prefix(6)) == [0xFD, 0x7A, 0x11, 0x5C, 0xA1, 0xE0]
    }

    public static func < (lhs: IPAddress, rhs: IPAddress) -> Bool {
        if lhs.bytes.count != rhs.bytes.count { return lhs.bytes.count < rhs.bytes.count }
        return lhs.bytes.lexicographicallyPrecedes(rhs.bytes)
    }
}

public enum AddressFamily: String, Sendable, CaseIterable {
    case ipv4, ipv6, both

    public func includes(_ address: IPAddress) -> Bool {
        switch self {
        case .ipv4: return address.isIPv4
        case .ipv6: return !address.isIPv4
        case .both: return true
        }
    }
}
