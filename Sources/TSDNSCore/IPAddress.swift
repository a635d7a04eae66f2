#if canImport(Glibc)
import Glibc
#endif

/// An IPv4 or IPv6 address, parsed as the C library parses it and printed by it, so that
/// every textual form of one address compares equal. Orders IPv4 before IPv6, each
/// numerically. Two integers, not an array: a 10,000-device tailnet has 20,000 of them,
/// hashed on every run.
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

    /// A tailnet's devices have 20,000 addresses to parse a run: both families are read
    /// here, in Swift, exactly as the C library's inet_pton reads them (glibc's
    /// `resolv/inet_pton.c`; the tests compare the two on random text). No textual address
    /// is 64 bytes long. IPv4 takes digits and dots only and IPv6 needs colons, so at most
    /// one of them takes a text; a NUL is neither's.
    private static func parse(_ utf8: UnsafeBufferPointer<UInt8>) -> (isIPv4: Bool, high: UInt64, low: UInt64)? {
        guard utf8.count < 64 else { return nil }
        if let v4 = Self.ipv4(utf8) { return (true, 0, UInt64(v4)) }
        return Self.ipv6(utf8).map { (false, $0.high, $0.low) }
    }

    /// Eight groups of 1-4 hex digits, one `::` standing for one or more zero groups, and
    /// the last two groups perhaps written as dotted decimal; as inet_pton(AF_INET6).
    static func ipv6(_ utf8: UnsafeBufferPointer<UInt8>) -> (high: UInt64, low: UInt64)? {
        let colon = UInt8(ascii: ":")
        guard let first = utf8.first else { return nil }
        var index = 0
        // A leading colon only as the first of `::`.
        if first == colon {
            guard utf8.count > 1, utf8[1] == colon else { return nil }
            index = 1
        }
        var value: UInt128 = 0  // the groups so far, the last in the low 16 bits
        var groups = 0
        var gap: Int?  // the groups before `::`
        var group: UInt64 = 0
        var digits = 0
        var tokenStart = index
        // Every Tailscale address begins so, as the API writes it: its first three groups
        // taken at once, leaving the state the loop would.
        if utf8.count > 15, prefixIsTailscale(utf8) {
            value = 0xFD7A_115C_A1E0
            groups = 3
            index = 15
            tokenStart = 15
        }
        while index < utf8.count {
            let byte = utf8[index]
            index &+= 1
            // A hex digit's value, without a branch per range.
            let decimal = byte &- UInt8(ascii: "0"), letter = (byte | 0x20) &- UInt8(ascii: "a")
            if decimal < 10 || letter < 6 {
                guard digits < 4 else { return nil }
                group = group &<< 4 | UInt64(decimal < 10 ? decimal : letter &+ 10)
                digits &+= 1
            } else if byte == colon {
                tokenStart = index
                if digits == 0 {
                    guard gap == nil else { return nil }
                    gap = groups
                } else {
                    // Not a last colon, nor a ninth group.
                    guard index < utf8.count, groups < 8 else { return nil }
                    value = value &<< 16 | UInt128(group)
                    groups &+= 1
                    group = 0
                    digits = 0
                }
            } else if byte == UInt8(ascii: "."), groups <= 6, let v4 = ipv4(UnsafeBufferPointer(rebasing: utf8[tokenStart...])) {
                // The rest of the text was the dotted decimal.
                value = value &<< 32 | UInt128(v4)
                groups &+= 2
                digits = 0
                break
            } else {
                return nil
            }
        }
        if digits > 0 {
            guard groups < 8 else { return nil }
            value = value &<< 16 | UInt128(group)
            groups &+= 1
        }
        if let gap {
            // `::` is at least one group of zeros.
            guard groups < 8 else { return nil }
            let after = 16 * (groups - gap)
            let suffix = value & ((1 << after) - 1)
            value = gap == 0 ? suffix : (value >> after) << (16 * (8 - gap)) | suffix
            groups = 8
        }
        guard groups == 8 else { return nil }
        return (UInt64(truncatingIfNeeded: value >> 64), UInt64(truncatingIfNeeded: value))
    }

    /// Whether the text begins `fd7a:115c:a1e0:` (it has more than 15 bytes).
    @inline(__always)
    private static func prefixIsTailscale(_ utf8: UnsafeBufferPointer<UInt8>) -> Bool {
        let raw = UnsafeRawPointer(utf8.baseAddress!)
        // "fd7a:115" and "5c:a1e0:" as little-endian words; they overlap at byte 7.
        return raw.loadUnaligned(as: UInt64.self) == 0x3531_313A_6137_6466 && raw.loadUnaligned(fromByteOffset: 7, as: UInt64.self) == 0x3A30_6531_613A_6335
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
