#if canImport(Glibc)
import Glibc
#endif

/// An IPv4 or IPv6 address, parsed and printed by the C library so that every textual form
/// of one address compares equal. Orders IPv4 before IPv6, each numerically. Two integers,
/// not an array: a 10,000-device tailnet has 20,000 of them, hashed on every run.
public struct IPAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The address in network order: IPv6 as high and low halves, IPv4 in the low 32 bits.
    private let high: UInt64
    private let low: UInt64
    public let isIPv4: Bool

    /// Two words hashed, not three: the family goes in the top bit of the low half, which an
    /// IPv4 address leaves unused (equality still compares all three).
    public func hash(into hasher: inout Hasher) {
        let (high, low) = words
        hasher.combine(low)
        hasher.combine(high)
    }

    /// The address as two words, the family in the low one's top bit: equal addresses have
    /// equal words (not always the converse: IPv6 `::8000:0:a.b.c.d` has those of IPv4
    /// `a.b.c.d`, so a table of words checks a match with `==`).
    var words: (high: UInt64, low: UInt64) { (high, isIPv4 ? low | 1 << 63 : low) }

    public init?(_ text: String) {
        // Read in place (a copy of the text to call `withUTF8` retains it); a string without
        // contiguous UTF-8 (bridged) is copied.
        let parsed = text.utf8.withContiguousStorageIfAvailable(Self.parse) ?? {
            var copy = text
            return copy.withUTF8(Self.parse)
        }()
        guard let parsed else { return nil }
        (isIPv4, high, low) = parsed
    }

    /// A tailnet's devices have 20,000 addresses to parse a run: IPv4 is read here, as the C
    /// library's inet_pton reads it; IPv6 by inet_pton from a NUL-terminated copy on the
    /// stack (bridging a small string to C allocates). No textual address is 64 bytes long;
    /// a NUL inside the text is not an address.
    private static func parse(_ utf8: UnsafeBufferPointer<UInt8>) -> (isIPv4: Bool, high: UInt64, low: UInt64)? {
        guard utf8.count < 64, !utf8.contains(0) else { return nil }
        guard utf8.contains(UInt8(ascii: ":")) else { return Self.ipv4(utf8).map { (true, 0, UInt64($0)) } }
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: 64) { buffer in
            let base = buffer.baseAddress!
            utf8.withMemoryRebound(to: CChar.self) { source in
                base.update(from: source.baseAddress!, count: source.count)
            }
            base[utf8.count] = 0
            var v6 = in6_addr()
            guard inet_pton(AF_INET6, base, &v6) == 1 else { return nil }
            return withUnsafeBytes(of: &v6) { raw in
                var high: UInt64 = 0, low: UInt64 = 0
                for index in 0..<8 { high = high << 8 | UInt64(raw[index]) }
                for index in 8..<16 { low = low << 8 | UInt64(raw[index]) }
                return (false, high, low)
            }
        }
    }

    /// Dotted decimal exactly as glibc's inet_pton(AF_INET) takes it: four parts of 0-255,
    /// no leading zeros, nothing else.
    static func ipv4(_ utf8: UnsafeBufferPointer<UInt8>) -> UInt32? {
        var value: UInt32 = 0
        var part: UInt32 = 0
        var parts = 0
        var sawDigit = false
        for byte in utf8 {
            if byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") {
                if sawDigit && part == 0 { return nil }
                part = part * 10 + UInt32(byte - UInt8(ascii: "0"))
                if part > 255 { return nil }
                if !sawDigit {
                    parts += 1
                    if parts > 4 { return nil }
                    sawDigit = true
                }
            } else if byte == UInt8(ascii: "."), sawDigit {
                if parts == 4 { return nil }
                value = value << 8 | part
                part = 0
                sawDigit = false
            } else {
                return nil
            }
        }
        guard parts == 4, sawDigit else { return nil }
        return value << 8 | part
    }

    /// 4 bytes for IPv4, 16 for IPv6, network order.
    public var bytes: [UInt8] {
        if isIPv4 { return (0..<4).map { UInt8(truncatingIfNeeded: low >> (24 - 8 * $0)) } }
        return (0..<8).map { UInt8(truncatingIfNeeded: high >> (56 - 8 * $0)) }
            + (0..<8).map { UInt8(truncatingIfNeeded: low >> (56 - 8 * $0)) }
    }

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
        if isIPv4 { return low >> 22 == (100 << 2 | 1) }
        return high >> 16 == 0xFD7A_115C_A1E0
    }

    public static func < (lhs: IPAddress, rhs: IPAddress) -> Bool {
        if lhs.isIPv4 != rhs.isIPv4 { return lhs.isIPv4 }
        return (lhs.high, lhs.low) < (rhs.high, rhs.low)
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
