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

    public init(
        id: String, nodeId: String, name: String, hostname: String, addresses: [String],
        tags: [String]? = nil, authorized: Bool? = true, connectedToControl: Bool? = true,
        lastSeen: Date? = nil, expires: Date? = nil, keyExpiryDisabled: Bool? = false,
        isExternal: Bool? = false
    ) {
        self.id = id
        self.nodeId = nodeId
        self.name = name
        self.hostname = hostname
        self.addresses = addresses
        ipAddresses = TailscaleAddresses(addresses)
        self.tags = tags
        self.authorized = authorized
        self.connectedToControl = connectedToControl
        self.lastSeen = lastSeen
        self.expires = expires
        self.keyExpiryDisabled = keyExpiryDisabled
        self.isExternal = isExternal
    }

    enum CodingKeys: String, CodingKey {
        case id, nodeId, name, hostname, addresses, tags, authorized, connectedToControl
        case lastSeen, expires, keyExpiryDisabled, isExternal
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        nodeId = try c.decode(String.self, forKey: .nodeId)
        id = try c.decodeIfPresent(String.self, forKey: .id) ?? nodeId
        name = try c.decode(String.self, forKey: .name)
        hostname = try c.decode(String.self, forKey: .hostname)
        addresses = try c.decode([String].self, forKey: .addresses)
        ipAddresses = TailscaleAddresses(addresses)
        tags = try c.decodeIfPresent([String].self, forKey: .tags)
        authorized = try c.decodeIfPresent(Bool.self, forKey: .authorized)
        connectedToControl = try c.decodeIfPresent(Bool.self, forKey: .connectedToControl)
        lastSeen = try Self.decodeDate(c, .lastSeen)
        expires = try Self.decodeDate(c, .expires)
        keyExpiryDisabled = try c.decodeIfPresent(Bool.self, forKey: .keyExpiryDisabled)
        isExternal = try c.decodeIfPresent(Bool.self, forKey: .isExternal)
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
