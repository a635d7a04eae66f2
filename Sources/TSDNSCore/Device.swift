import Foundation

/// A tailnet device as the Tailscale API lists it (`Device` in the OpenAPI document).
/// Only the fields this program uses are kept; unknown keys are ignored, optional keys may
/// be absent (`tags` on untagged devices, `lastSeen` on devices never seen, ...).
public struct Device: Sendable, Equatable, Codable {
    public var id: String
    public var nodeId: String
    /// The MagicDNS name: unique in the tailnet.
    public var name: String
    /// The machine name: not unique.
    public var hostname: String
    public var addresses: [String] {
        didSet { ipAddresses = TailscaleAddresses(addresses) }
    }
    /// The addresses inside Tailscale's ranges, parsed when the list is set: a run reads a
    /// tailnet's 20,000 addresses several times (and the decoder sets them on two threads),
    /// so they are not parsed again at each read. Anything else a device claims (`8.8.8.8`,
    /// `::ffff:100.64.0.1`) never becomes a managed entry.
    public private(set) var ipAddresses: TailscaleAddresses
    public var tags: [String]?
    public var authorized: Bool?
    public var connectedToControl: Bool?
    public var lastSeen: Date?
    public var expires: Date?
    public var keyExpiryDisabled: Bool?
    public var isExternal: Bool?

    enum CodingKeys: String, CodingKey {
        case id, nodeId, name, hostname, addresses, tags, authorized, connectedToControl
        case lastSeen, expires, keyExpiryDisabled, isExternal
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(nodeId, forKey: .nodeId)
        try c.encode(name, forKey: .name)
        try c.encode(hostname, forKey: .hostname)
        try c.encode(addresses, forKey: .addresses)
        try c.encodeIfPresent(tags, forKey: .tags)
        try c.encodeIfPresent(authorized, forKey: .authorized)
        try c.encodeIfPresent(connectedToControl, forKey: .connectedToControl)
        try c.encodeIfPresent(lastSeen.map(Timestamp.format), forKey: .lastSeen)
        try c.encodeIfPresent(expires.map(Timestamp.format), forKey: .expires)
        try c.encodeIfPresent(keyExpiryDisabled, forKey: .keyExpiryDisabled)
        try c.encodeIfPresent(isExternal, forKey: .isExternal)
    }

    /// Timestamps are RFC 3339 strings; an empty string (external devices) means absent.
    private static func decodeDate(_ c: KeyedDecodingContainer<CodingKeys>, _ key: CodingKeys) throws -> Date? {
        guard let text = try c.decodeIfPresent(String.self, forKey: key), !text.isEmpty else { return nil }
        guard let date = Timestamp.parse(text) else {
            throw DecodingError.dataCorruptedError(forKey: key, in: c, debugDescription: "\(key.rawValue): \"\(text)\" is not an RFC 3339 timestamp")
        }
        return date
    }
}

// The initializers are in an extension, so that the struct keeps its memberwise
// initializer (private, as `ipAddresses` is) and these hand it every field: an initializer
// that set the fields of `self` one by one was compiled (Swift 6.3, with this many fields)
// to copy the finished device once more, retaining and releasing each of its strings and
// lists, a few hundred instructions a device of a 10,000-device list.
extension Device {
    public init(
        id: String, nodeId: String, name: String, hostname: String, addresses: [String],
        tags: [String]? = nil, authorized: Bool? = true, connectedToControl: Bool? = true,
        lastSeen: Date? = nil, expires: Date? = nil, keyExpiryDisabled: Bool? = false,
        isExternal: Bool? = false
    ) {
        self.init(
            id: id, nodeId: nodeId, name: name, hostname: hostname, addresses: addresses,
            ipAddresses: TailscaleAddresses(addresses), tags: tags, authorized: authorized,
            connectedToControl: connectedToControl, lastSeen: lastSeen, expires: expires,
            keyExpiryDisabled: keyExpiryDisabled, isExternal: isExternal
        )
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let nodeId = try c.decode(String.self, forKey: .nodeId)
        try self.init(
            id: c.decodeIfPresent(String.self, forKey: .id) ?? nodeId, nodeId: nodeId,
            name: c.decode(String.self, forKey: .name), hostname: c.decode(String.self, forKey: .hostname),
            addresses: c.decode([String].self, forKey: .addresses), tags: c.decodeIfPresent([String].self, forKey: .tags),
            authorized: c.decodeIfPresent(Bool.self, forKey: .authorized),
            connectedToControl: c.decodeIfPresent(Bool.self, forKey: .connectedToControl),
            lastSeen: Self.decodeDate(c, .lastSeen), expires: Self.decodeDate(c, .expires),
            keyExpiryDisabled: c.decodeIfPresent(Bool.self, forKey: .keyExpiryDisabled),
            isExternal: c.decodeIfPresent(Bool.self, forKey: .isExternal)
        )
    }
}

/// A device's addresses in Tailscale's ranges, in its order: the first two in place (a
/// device has one IPv4 and one IPv6 address), any more in a list.
public struct TailscaleAddresses: Sequence, Sendable, Equatable {
    private var first: IPAddress?
    private var second: IPAddress?
    private var more: [IPAddress] = []

    init(_ texts: [String]) {
        for text in texts {
            guard let address = IPAddress(text), address.isTailscaleRange else { continue }
            if first == nil {
                first = address
            } else if second == nil {
                second = address
            } else {
                more.append(address)
            }
        }
    }

    public struct Iterator: IteratorProtocol {
        let addresses: TailscaleAddresses
        var position = 0

        public mutating func next() -> IPAddress? {
            defer { position += 1 }
            switch position {
            case 0: return addresses.first
            case 1: return addresses.second
            default:
                return position - 2 < addresses.more.count ? addresses.more[position - 2] : nil
            }
        }
    }

    public func makeIterator() -> Iterator { Iterator(addresses: self) }
}

public enum Timestamp {
    public static func parse(_ text: String) -> Date? {
        if let date = try? Date(text, strategy: Date.ISO8601FormatStyle()) { return date }
        return try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    public static func format(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle())
    }
}
