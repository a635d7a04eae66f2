/// The two DNS messages a probe needs (RFC 1035 §4): a query it builds, and the header and
/// question of an answer it checks. Nothing else of the answer is read.
public enum DNSMessage {
    public static let classIN: UInt16 = 1
    /// EDNS0's OPT pseudo-record (RFC 6891), advertising a 1232-byte UDP payload.
    static let optType: UInt16 = 41
    static let ednsPayload: UInt16 = 1232

    public enum QueryType: UInt16, Sendable, CaseIterable {
        case A = 1, NS = 2, SOA = 6, TXT = 16, AAAA = 28

        public init?(name: String) {
            switch name {
            case "A": self = .A
            case "NS": self = .NS
            case "SOA": self = .SOA
            case "TXT": self = .TXT
            case "AAAA": self = .AAAA
            default: return nil
            }
        }
    }

    public enum EncodingError: Error, Equatable {
        case labelTooLong(String)
        case nameTooLong
        case emptyLabel
    }

    /// `example.com` or `example.com.` as wire labels; `.` is the root.
    public static func encodeName(_ name: String) throws(EncodingError) -> [UInt8] {
        var text = Substring(name)
        if text.hasSuffix(".") { text = text.dropLast() }
        var bytes: [UInt8] = []
        if !text.isEmpty {
            for label in text.split(separator: ".", omittingEmptySubsequences: false) {
                guard !label.isEmpty else { throw .emptyLabel }
                let utf8 = Array(label.utf8)
                guard utf8.count <= 63 else { throw .labelTooLong(String(label)) }
                bytes.append(UInt8(utf8.count))
                bytes += utf8
            }
        }
        bytes.append(0)
        guard bytes.count <= 255 else { throw .nameTooLong }
        return bytes
    }

    /// A recursive query for `name`/`type` with identifier `id`.
    public static func query(id: UInt16, name: [UInt8], type: QueryType, edns: Bool) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(12 + name.count + 4 + 11)
        append16(&bytes, id)
        append16(&bytes, 0x0100)  // RD: recursion desired
        append16(&bytes, 1)  // QDCOUNT
        append16(&bytes, 0)  // ANCOUNT
        append16(&bytes, 0)  // NSCOUNT
        append16(&bytes, edns ? 1 : 0)  // ARCOUNT
        bytes += name
        append16(&bytes, type.rawValue)
        append16(&bytes, classIN)
        if edns {
            bytes.append(0)  // root name
            append16(&bytes, optType)
            append16(&bytes, ednsPayload)
            bytes += [0, 0, 0, 0]  // extended RCODE, version, flags
            append16(&bytes, 0)  // no options
        }
        return bytes
    }

    /// What the header and question of an answer say.
    public struct Answer: Equatable, Sendable {
        public var id: UInt16
        public var truncated: Bool
        public var rcode: UInt8
        public var name: [UInt8]
        public var type: UInt16
        public var qclass: UInt16
    }

    public enum ParseError: Error, Equatable {
        case tooShort
        case notAResponse
        case noQuestion
        case badName
    }

    /// Just the identifier, where at least two bytes came: to tell a stray datagram from
    /// a broken answer.
    public static func identifier(_ bytes: [UInt8]) -> UInt16? {
        bytes.count >= 2 ? UInt16(bytes[0]) << 8 | UInt16(bytes[1]) : nil
    }

    public static func parseAnswer(_ bytes: [UInt8]) throws(ParseError) -> Answer {
        guard bytes.count >= 12 else { throw .tooShort }
        let flags = read16(bytes, 2)
        guard flags & 0x8000 != 0 else { throw .notAResponse }
        guard read16(bytes, 4) >= 1 else { throw .noQuestion }
        var offset = 12
        let name = try readName(bytes, &offset)
        guard offset + 4 <= bytes.count else { throw .tooShort }
        return Answer(
            id: read16(bytes, 0), truncated: flags & 0x0200 != 0, rcode: UInt8(flags & 0x000F),
            name: name, type: read16(bytes, offset), qclass: read16(bytes, offset + 2)
        )
    }

    /// Whether an answer is to this question (names compared without regard to ASCII case).
    public static func matches(_ answer: Answer, id: UInt16, name: [UInt8], type: QueryType) -> Bool {
        answer.id == id && answer.type == type.rawValue && answer.qclass == classIN
            && answer.name.count == name.count && zip(answer.name, name).allSatisfy { lower($0) == lower($1) }
    }

    /// A name as wire labels, following compression pointers (bounded, so a loop of
    /// pointers cannot hang the probe).
    static func readName(_ bytes: [UInt8], _ offset: inout Int) throws(ParseError) -> [UInt8] {
        var name: [UInt8] = []
        var position = offset
        var jumped = false
        var jumps = 0
        while true {
            guard position < bytes.count else { throw .badName }
            let length = Int(bytes[position])
            if length & 0xC0 == 0xC0 {
                guard position + 1 < bytes.count, jumps < 16 else { throw .badName }
                let target = (length & 0x3F) << 8 | Int(bytes[position + 1])
                if !jumped { offset = position + 2 }
                jumped = true
                jumps += 1
                position = target
                continue
            }
            guard length & 0xC0 == 0 else { throw .badName }
            name.append(UInt8(length))
            if length == 0 {
                if !jumped { offset = position + 1 }
                return name
            }
            guard position + 1 + length <= bytes.count, name.count + length <= 255 else { throw .badName }
            name += bytes[(position + 1)...(position + length)]
            position += 1 + length
        }
    }

    static func append16(_ bytes: inout [UInt8], _ value: UInt16) {
        bytes.append(UInt8(value >> 8))
        bytes.append(UInt8(value & 0xFF))
    }

    static func read16(_ bytes: [UInt8], _ offset: Int) -> UInt16 {
        UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
    }

    private static func lower(_ byte: UInt8) -> UInt8 {
        (0x41...0x5A).contains(byte) ? byte | 0x20 : byte
    }
}
