import Foundation
import TSDNSCore

/// Why a devices body does not decode: the JSON path, what is wrong, and where.
public struct DeviceListError: Error, Sendable, Equatable, CustomStringConvertible {
    public var path: String
    public var message: String
    public var offset: Int

    public var description: String {
        (path.isEmpty ? "" : "\(path): ") + "\(message) at byte \(offset)"
    }
}

/// The body of `GET /tailnet/{tailnet}/devices` in one pass over its bytes, keeping only the
/// fields `Device` has: the same contract as `Device.init(from:)` (required `nodeId`, `name`,
/// `hostname`, `addresses`; `id` falls back to `nodeId`; null is absent; `""` is an absent
/// timestamp; the first of duplicate keys wins, as with `JSONDecoder`), and strict RFC 8259
/// everywhere else, skipped values included. A devices list of 10,000 is about 10 MB:
/// `JSONDecoder` spends most of a run on it, this scanner a small fraction.
public enum DeviceListDecoder {
    /// Deeper nesting than this is refused (as `JSONDecoder` refuses beyond 512).
    public static let maxDepth = 512

    public static func decode(_ data: Data) throws(DeviceListError) -> [Device] {
        let result: Result<[Device], DeviceListError> = data.withUnsafeBytes { raw in
            do throws(DeviceListError) {
                return .success(try decode(bytes: raw.bindMemory(to: UInt8.self)))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// The same over bytes in place (the fuzzer hands its own exact-size buffer, so
    /// AddressSanitizer sees any read past the end).
    static func decode(bytes: UnsafeBufferPointer<UInt8>) throws(DeviceListError) -> [Device] {
        var scanner = Scanner(bytes)
        return try scanner.document()
    }
}

/// A string's content as it stands in the bytes, between its quotes; `escaped` when it
/// has a backslash escape, so its text differs from its bytes.
private struct Key {
    var start: Int
    var end: Int
    var escaped: Bool
}

/// The keys of the device read last, in order, by where each lies in the bytes: the API
/// writes every device's keys in one order, so a key that is the same bytes as the one at
/// its place in the device before is that key, already checked and looked up. A device
/// without a key the one before had (`tags`, a timestamp) shifts the keys after it: those
/// are read in full, and remembered in their new places. Only a key followed at once by its
/// colon is remembered, and matched with it (`"name":`); not one with escapes (its bytes are
/// not its text), nor one longer than 255 bytes.
private struct KeyOrder {
    struct Entry {
        var start: Int
        /// -1: the key read at this place is never matched so (escaped, spaced from its
        /// colon, or too long).
        var length: Int32
        var field: Scanner.Field
    }

    static let capacity = 32
    /// Grown as keys are remembered, so a scanner that reads no device allocates nothing. An
    /// array, not an `InlineArray`: the scanner holding that was copied whole at every key.
    private var entries: [Entry] = []

    /// The key whose opening quote is at `index`, with its field, if it and the colon after it
    /// are the same bytes as the key remembered at `position`; they lie in the same `bytes`.
    @inline(__always)
    func key(at index: Int, position: Int, in bytes: UnsafeBufferPointer<UInt8>) -> (Key, Scanner.Field)? {
        guard position < entries.count else { return nil }
        let entry = entries[position]
        let length = Int(entry.length)
        let start = index + 1
        guard length >= 0, start + length + 1 < bytes.count, bytes[index] == 0x22, bytes[start + length] == 0x22,
              bytes[start + length + 1] == UInt8(ascii: ":"),
              Scanner.sameBytes(UnsafeRawPointer(bytes.baseAddress! + start), UnsafeRawPointer(bytes.baseAddress! + entry.start), length)
        else { return nil }
        return (Key(start: start, end: start + length, escaped: false), entry.field)
    }

    /// A key just read, its closing quote at `key.end`; every place before `position` holds
    /// an entry already (the places of a device are read in order).
    mutating func remember(_ key: Key, _ field: Scanner.Field, at position: Int, in bytes: UnsafeBufferPointer<UInt8>) {
        let length = key.end - key.start
        let colonFollows = key.end + 1 < bytes.count && bytes[key.end + 1] == UInt8(ascii: ":")
        let entry = Entry(start: key.start, length: key.escaped || length > 255 || !colonFollows ? -1 : Int32(length), field: field)
        if position < entries.count {
            entries[position] = entry
        } else if position == entries.count, position < Self.capacity {
            entries.append(entry)
        }
    }
}

private struct Scanner {
    let bytes: UnsafeBufferPointer<UInt8>
    var index = 0
    var depth = 0
    /// Where we are, for errors: the device index and key (its text is decoded only for an error).
    var deviceIndex: Int?
    var key: Key?
    /// Where `bytes` starts in the body (a stream decodes a window of it): errors say where
    /// in the body.
    var origin = 0
    /// The keys of the device before, in order.
    var keyOrder = KeyOrder()

    init(_ bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
    }

    // MARK: Errors (built out of line, so the hot path stays small)

    @inline(never)
    func fail(_ message: String, at offset: Int? = nil) -> DeviceListError {
        var path = ""
        if let deviceIndex {
            path = "devices[\(deviceIndex)]"
            if let key { path += ".\(text(of: key))" }
        } else if let key {
            path = text(of: key)
        }
        return DeviceListError(path: path, message: message, offset: (offset ?? index) + origin)
    }

    /// A key's text, escapes decoded, for an error.
    @inline(never)
    func text(of key: Key) -> String {
        TerminalText.escape(Self.decoded(key, in: bytes) ?? "?")
    }

    /// A key's text with its escapes decoded (it was read once already, so it decodes).
    @inline(never)
    static func decoded(_ key: Key, in bytes: UnsafeBufferPointer<UInt8>) -> String? {
        var reader = Scanner(bytes)
        reader.index = key.start - 1
        return try? reader.string()
    }

    @inline(never)
    func unexpected() -> DeviceListError {
        guard index < bytes.count else { return fail("unexpected end of the document") }
        let byte = bytes[index]
        let shown = (0x20..<0x7F).contains(byte) ? "'\(Character(Unicode.Scalar(byte)))'" : "byte 0x\(String(byte, radix: 16))"
        return fail("unexpected \(shown)")
    }

    // MARK: The document

    mutating func document() throws(DeviceListError) -> [Device] {
        // A UTF-8 byte order mark is accepted, as JSONDecoder accepts it.
        if bytes.count >= 3, bytes[0] == 0xEF, bytes[1] == 0xBB, bytes[2] == 0xBF { index = 3 }
        skipWhitespace()
        guard peek() == UInt8(ascii: "{") else {
            throw index < bytes.count ? fail("the body is not a JSON object") : fail("the body is empty")
        }
        var devices: [Device]?
        try object { scanner, key, _ throws(DeviceListError) in
            if devices == nil && Self.matches(key, "devices", in: scanner.bytes) {
                scanner.key = key
                if scanner.peek() == UInt8(ascii: "n") {
                    try scanner.literal("null")
                    throw scanner.fail("is null; expected a list of devices")
                }
                devices = try scanner.deviceList()
                scanner.key = nil
            } else {
                try scanner.skipValue()
            }
        }
        skipWhitespace()
        guard index == bytes.count else { throw unexpected() }
        guard let devices else { throw fail("missing key \"devices\"", at: 0) }
        return devices
    }

    mutating func deviceList() throws(DeviceListError) -> [Device] {
        guard peek() == UInt8(ascii: "[") else { throw fail("expected a list of devices") }
        // Inside the list, errors name the device (`devices[3].lastSeen`), not the key.
        key = nil
        var devices: [Device] = []
        // A device takes 600 bytes of body or more (about 1 KB from the real API): reserving
        // for one per 256 never grows the list; capacity left unused is never touched, so
        // it costs address space, not memory.
        devices.reserveCapacity(max(16, (bytes.count - index) / 256))
        try array { scanner, position throws(DeviceListError) in
            scanner.deviceIndex = position
            devices.append(try scanner.device())
            scanner.deviceIndex = nil
        }
        return devices
    }

    mutating func device() throws(DeviceListError) -> Device {
        guard peek() == UInt8(ascii: "{") else { throw fail("expected a device object") }
        let start = index
        var id: String??
        var nodeId: String??
        var name: String??
        var hostname: String??
        var addresses: [String]??
        var tags: [String]??
        var authorized: Bool??
        var connected: Bool??
        var lastSeen: Date??
        var expires: Date??
        var keyExpiryDisabled: Bool??
        var isExternal: Bool??
        try object(device: true) { s, key, field throws(DeviceListError) in
            s.key = key
            // `x == nil`: the first occurrence of a key wins; later ones are only checked.
            switch field {
            case .id where id == nil: id = .some(try s.optionalString())
            case .nodeId where nodeId == nil: nodeId = .some(try s.optionalString())
            case .name where name == nil: name = .some(try s.optionalString())
            case .hostname where hostname == nil: hostname = .some(try s.optionalString())
            // A device has two addresses: a list grown from empty would allocate twice.
            case .addresses where addresses == nil: addresses = .some(try s.optionalStrings(reserving: 2))
            case .tags where tags == nil: tags = .some(try s.optionalStrings())
            case .authorized where authorized == nil: authorized = .some(try s.optionalBool())
            case .connectedToControl where connected == nil: connected = .some(try s.optionalBool())
            case .lastSeen where lastSeen == nil: lastSeen = .some(try s.optionalTimestamp())
            case .expires where expires == nil: expires = .some(try s.optionalTimestamp())
            case .keyExpiryDisabled where keyExpiryDisabled == nil: keyExpiryDisabled = .some(try s.optionalBool())
            case .isExternal where isExternal == nil: isExternal = .some(try s.optionalBool())
            default: try s.skipValue()
            }
            s.key = nil
        }
        func required<T>(_ value: T??, _ name: String) throws(DeviceListError) -> T {
            guard let present = value else { throw fail("missing key \"\(name)\"", at: start) }
            guard let value = present else { throw fail("\"\(name)\" is null", at: start) }
            return value
        }
        let node = try required(nodeId, "nodeId")
        return Device(
            id: (id ?? nil) ?? node, nodeId: node, name: try required(name, "name"), hostname: try required(hostname, "hostname"),
            addresses: try required(addresses, "addresses"), tags: tags ?? nil, authorized: authorized ?? nil,
            connectedToControl: connected ?? nil, lastSeen: lastSeen ?? nil, expires: expires ?? nil,
            keyExpiryDisabled: keyExpiryDisabled ?? nil, isExternal: isExternal ?? nil
        )
    }

    // MARK: Keys

    /// The keys `Device` keeps, named as in the body.
    enum Field: String {
        case id, nodeId, name, hostname, addresses, tags, authorized, connectedToControl
        case lastSeen, expires, keyExpiryDisabled, isExternal
        /// Any other key (never matched by name).
        case other = ""
    }

    /// Which kept key this is, compared as bytes: no `String` is made for a key. Static, as
    /// what it reads is named: a method of the scanner copied all of it for each call.
    static func field(_ key: Key, in bytes: UnsafeBufferPointer<UInt8>) -> Field {
        if key.escaped { return escapedField(key, in: bytes) }
        func matches(_ word: StaticString) -> Bool { Self.matches(key, word, in: bytes) }
        switch key.end - key.start {
        case 2: return matches("id") ? .id : .other
        case 4: return matches("name") ? .name : matches("tags") ? .tags : .other
        case 6: return matches("nodeId") ? .nodeId : .other
        case 7: return matches("expires") ? .expires : .other
        case 8: return matches("hostname") ? .hostname : matches("lastSeen") ? .lastSeen : .other
        case 9: return matches("addresses") ? .addresses : .other
        case 10: return matches("authorized") ? .authorized : matches("isExternal") ? .isExternal : .other
        case 17: return matches("keyExpiryDisabled") ? .keyExpiryDisabled : .other
        case 18: return matches("connectedToControl") ? .connectedToControl : .other
        default: return .other
        }
    }

    /// A key written with escapes (`"node\u0049d"` is `nodeId`): decoded, then looked up.
    @inline(never)
    static func escapedField(_ key: Key, in bytes: UnsafeBufferPointer<UInt8>) -> Field {
        decoded(key, in: bytes).flatMap(Field.init(rawValue:)) ?? .other
    }

    /// Whether the key is exactly `word` (ASCII); an escaped key is decoded first.
    @inline(__always)
    static func matches(_ key: Key, _ word: StaticString, in bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        let count = word.utf8CodeUnitCount
        if key.escaped { return decoded(key, in: bytes) == word.description }
        guard key.end - key.start == count else { return false }
        return sameBytes(UnsafeRawPointer(bytes.baseAddress! + key.start), UnsafeRawPointer(word.utf8Start), count)
    }

    /// Whether `count` bytes are equal, compared a word at a time with no call (memcmp was
    /// one per key): the kept keys are 2 to 18 bytes, literals 4 or 5, a remembered key at
    /// most 255. The words overlap rather than read past `count`.
    @inline(__always)
    static func sameBytes(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ count: Int) -> Bool {
        func same<Word: FixedWidthInteger>(_ offset: Int, _: Word.Type) -> Bool {
            a.loadUnaligned(fromByteOffset: offset, as: Word.self) == b.loadUnaligned(fromByteOffset: offset, as: Word.self)
        }
        switch count {
        case 0: return true
        case 1: return same(0, UInt8.self)
        case 2...3: return same(0, UInt16.self) && same(count - 2, UInt16.self)
        case 4...7: return same(0, UInt32.self) && same(count - 4, UInt32.self)
        default:
            var offset = 0
            while offset + 8 < count {
                guard same(offset, UInt64.self) else { return false }
                offset += 8
            }
            return same(count - 8, UInt64.self)
        }
    }

    // MARK: Typed values (null is absent)

    mutating func optionalString() throws(DeviceListError) -> String? {
        switch peek() {
        case UInt8(ascii: "n"): try literal("null"); return nil
        case UInt8(ascii: "\""): return try string()
        default: throw typeMismatch("a string")
        }
    }

    mutating func optionalBool() throws(DeviceListError) -> Bool? {
        switch peek() {
        case UInt8(ascii: "n"): try literal("null"); return nil
        case UInt8(ascii: "t"): try literal("true"); return true
        case UInt8(ascii: "f"): try literal("false"); return false
        default: throw typeMismatch("true or false")
        }
    }

    mutating func optionalStrings(reserving: Int = 0) throws(DeviceListError) -> [String]? {
        switch peek() {
        case UInt8(ascii: "n"): try literal("null"); return nil
        case UInt8(ascii: "["):
            var values: [String] = []
            if reserving > 0 { values.reserveCapacity(reserving) }
            try array { s, _ throws(DeviceListError) in
                guard s.peek() == UInt8(ascii: "\"") else { throw s.typeMismatch("a string") }
                values.append(try s.string())
            }
            return values
        default: throw typeMismatch("a list of strings")
        }
    }

    /// RFC 3339; `""` is absent (external devices have no timestamps).
    mutating func optionalTimestamp() throws(DeviceListError) -> Date? {
        let start = index
        // The canonical form is read from the bytes, with no string made.
        if peek() == UInt8(ascii: "\"") {
            let content = try scanString()
            if !content.escaped, let date = Self.canonicalTimestamp(UnsafeBufferPointer(rebasing: bytes[content.start..<content.end])) {
                return date
            }
            index = start
        }
        guard let text = try optionalString(), !text.isEmpty else { return nil }
        if let date = Timestamp.parse(text) { return date }
        throw fail("\(Self.quoted(text)) is not an RFC 3339 timestamp", at: start)
    }

    @inline(never)
    func typeMismatch(_ expected: String) -> DeviceListError {
        fail("expected \(expected)")
    }

    static func quoted(_ text: String) -> String {
        let escaped = TerminalText.escape(String(text.prefix(80)))
        return "\"\(escaped)\(text.count > 80 ? "..." : "")\""
    }

    /// `2026-11-26T10:00:00Z`, the form the API sends, without a formatter; nil for
    /// anything else (fractions, offsets, years before 1900), which `Timestamp.parse` reads.
    static func canonicalTimestamp(_ b: UnsafeBufferPointer<UInt8>) -> Date? {
        guard b.count == 20, b[4] == 0x2D, b[7] == 0x2D, b[10] == 0x54, b[13] == 0x3A, b[16] == 0x3A, b[19] == 0x5A else { return nil }
        // Two digits at a time, unchecked: a byte that is not a digit leaves `worst` above 9
        // (below '0' it wraps), and the answer is then thrown away.
        var worst: UInt8 = 0
        func twoDigits(_ at: Int) -> Int {
            let high = b[at] &- 0x30, low = b[at + 1] &- 0x30
            worst = max(worst, high, low)
            return Int(high) &* 10 &+ Int(low)
        }
        let year = twoDigits(0) &* 100 &+ twoDigits(2), month = twoDigits(5), day = twoDigits(8)
        let hour = twoDigits(11), minute = twoDigits(14), second = twoDigits(17)
        // From 1900 on: Foundation reads earlier dates in the Julian calendar.
        guard worst <= 9, year >= 1900, (1...12).contains(month), day >= 1, day <= daysIn(month, year),
              hour < 24, minute < 60, second < 60
        else { return nil }
        let days = daysFromCivil(year, month, day)
        return Date(timeIntervalSince1970: Double(days * 86400 + hour * 3600 + minute * 60 + second))
    }

    static func daysIn(_ month: Int, _ year: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
    static func daysFromCivil(_ year: Int, _ month: Int, _ day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    // MARK: Structure

    @inline(__always)
    func peek() -> UInt8? {
        index < bytes.count ? bytes[index] : nil
    }

    @inline(__always)
    mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x0A, 0x0D, 0x09: index += 1
            default: return
            }
        }
    }

    mutating func enter() throws(DeviceListError) {
        depth += 1
        guard depth <= DeviceListDecoder.maxDepth else { throw fail("nested deeper than \(DeviceListDecoder.maxDepth) levels") }
    }

    /// `{ "key": value, ... }`; `member` reads each value (the index is at its first byte).
    /// `device`: the keys are a device's, handed over with their field (otherwise `.other`).
    mutating func object(device: Bool = false, _ member: (inout Scanner, Key, Field) throws(DeviceListError) -> Void) throws(DeviceListError) {
        try enter()
        index += 1  // {
        skipWhitespace()
        if peek() == UInt8(ascii: "}") {
            index += 1
            depth -= 1
            return
        }
        try members(device: device, member)
    }

    /// The rest of an object after one of its values: `, "key": value ... }` or `}`.
    mutating func objectRest(_ member: (inout Scanner, Key, Field) throws(DeviceListError) -> Void) throws(DeviceListError) {
        skipWhitespace()
        switch peek() {
        case UInt8(ascii: ","):
            index += 1
            skipWhitespace()
            try members(device: false, member)
        case UInt8(ascii: "}"):
            index += 1
            depth -= 1
        default:
            throw unexpected()
        }
    }

    /// Members from a key on, to the object's end. A device's key that is the same bytes as
    /// the one at its place in the device before is taken as it stands, neither scanned nor
    /// looked up again; any other is, and is remembered at its place.
    mutating func members(device: Bool, _ member: (inout Scanner, Key, Field) throws(DeviceListError) -> Void) throws(DeviceListError) {
        var position = 0
        while true {
            let key: Key
            let field: Field
            if device, let known = keyOrder.key(at: index, position: position, in: bytes) {
                (key, field) = known
                index = key.end + 2  // past `":`
            } else {
                guard peek() == UInt8(ascii: "\"") else { throw unexpected() }
                key = try scanString()
                field = device ? Self.field(key, in: bytes) : .other
                if device { keyOrder.remember(key, field, at: position, in: bytes) }
                skipWhitespace()
                guard peek() == UInt8(ascii: ":") else { throw unexpected() }
                index += 1
            }
            position += 1
            skipWhitespace()
            try member(&self, key, field)
            skipWhitespace()
            switch peek() {
            case UInt8(ascii: ","):
                index += 1
                skipWhitespace()
            case UInt8(ascii: "}"):
                index += 1
                depth -= 1
                return
            default:
                throw unexpected()
            }
        }
    }

    /// `[ value, ... ]`; `element` reads each value with its position.
    mutating func array(_ element: (inout Scanner, Int) throws(DeviceListError) -> Void) throws(DeviceListError) {
        try enter()
        index += 1  // [
        skipWhitespace()
        if peek() == UInt8(ascii: "]") {
            index += 1
            depth -= 1
            return
        }
        var position = 0
        while true {
            try element(&self, position)
            position += 1
            skipWhitespace()
            switch peek() {
            case UInt8(ascii: ","):
                index += 1
                skipWhitespace()
            case UInt8(ascii: "]"):
                index += 1
                depth -= 1
                return
            default:
                throw unexpected()
            }
        }
    }

    /// Any value, checked and dropped.
    mutating func skipValue() throws(DeviceListError) {
        switch peek() {
        case UInt8(ascii: "{"): try object { s, _, _ throws(DeviceListError) in try s.skipValue() }
        case UInt8(ascii: "["): try array { s, _ throws(DeviceListError) in try s.skipValue() }
        case UInt8(ascii: "\""): try skipString()
        case UInt8(ascii: "t"): try literal("true")
        case UInt8(ascii: "f"): try literal("false")
        case UInt8(ascii: "n"): try literal("null")
        case let byte? where byte == UInt8(ascii: "-") || (0x30...0x39).contains(byte): try number()
        default: throw unexpected()
        }
    }

    /// `true`, `false` or `null`, compared a word at a time.
    mutating func literal(_ word: StaticString) throws(DeviceListError) {
        let count = word.utf8CodeUnitCount
        guard index + count <= bytes.count,
              Self.sameBytes(UnsafeRawPointer(bytes.baseAddress! + index), UnsafeRawPointer(word.utf8Start), count)
        else { throw literalMismatch(word) }
        index += count
    }

    /// Where a literal goes wrong: its first byte that differs, or the end.
    @inline(never)
    mutating func literalMismatch(_ word: StaticString) -> DeviceListError {
        guard index + word.utf8CodeUnitCount <= bytes.count else { return unexpected() }
        let expected = word.utf8Start
        for offset in 0..<word.utf8CodeUnitCount where bytes[index + offset] != expected[offset] {
            index += offset
            break
        }
        return unexpected()
    }

    /// RFC 8259 §6: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    mutating func number() throws(DeviceListError) {
        if peek() == UInt8(ascii: "-") { index += 1 }
        guard let first = peek(), (0x30...0x39).contains(first) else { throw unexpected() }
        index += 1
        if first != 0x30 { skipDigits() }
        if peek() == UInt8(ascii: ".") {
            index += 1
            guard let digit = peek(), (0x30...0x39).contains(digit) else { throw unexpected() }
            skipDigits()
        }
        if peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E") {
            index += 1
            if peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-") { index += 1 }
            guard let digit = peek(), (0x30...0x39).contains(digit) else { throw unexpected() }
            skipDigits()
        }
    }

    @inline(__always)
    mutating func skipDigits() {
        while index < bytes.count, (0x30...0x39).contains(bytes[index]) { index += 1 }
    }

    // MARK: Strings

    /// A string's content, escapes decoded; the index is at its opening quote.
    mutating func string() throws(DeviceListError) -> String {
        index += 1
        let start = index
        var ascii = true
        // Fast path: no escapes — the common case for every field the API sends — and
        // ASCII, which needs no validation (`String(validating:)` is not specialized and
        // costs a metadata lookup a call).
        while true {
            skipPlainASCII()
            guard index < bytes.count else { break }
            let byte = bytes[index]
            if byte == 0x22 {
                let content = UnsafeBufferPointer(rebasing: bytes[start..<index])
                index += 1
                if ascii { return String(decoding: content, as: UTF8.self) }
                if let text = String(validating: content, as: UTF8.self) { return text }
                throw fail("a string is not valid UTF-8", at: start)
            }
            if byte == 0x5C { break }
            if byte < 0x20 { throw fail("a control character in a string") }
            if byte >= 0x80 { ascii = false }
            index += 1
        }
        guard index < bytes.count else { throw fail("unexpected end of the document in a string") }
        var decoded = Array(bytes[start..<index])
        while true {
            guard index < bytes.count else { throw fail("unexpected end of the document in a string") }
            let byte = bytes[index]
            switch byte {
            case 0x22:
                index += 1
                guard let text = String(validating: decoded, as: UTF8.self) else { throw fail("a string is not valid UTF-8", at: start) }
                return text
            case 0x5C:
                try escape(into: &decoded)
            case 0..<0x20:
                throw fail("a control character in a string")
            default:
                decoded.append(byte)
                index += 1
            }
        }
    }

    /// A string checked and dropped: escapes, control characters and UTF-8 validated.
    @inline(__always)
    mutating func skipString() throws(DeviceListError) {
        _ = try scanString()
    }

    /// A string checked (escapes, control characters, UTF-8) but not decoded: where its
    /// content lies. Keys are read so, and compared as bytes.
    mutating func scanString() throws(DeviceListError) -> Key {
        index += 1
        let contentStart = index
        // UTF-8 is validated per run between escapes, and only where a byte is not ASCII.
        var start = index
        var ascii = true
        var escaped = false
        while true {
            skipPlainASCII()
            guard index < bytes.count else { break }
            let byte = bytes[index]
            switch byte {
            case 0x22:
                if !ascii { try validateUTF8(start, index) }
                index += 1
                return Key(start: contentStart, end: index - 1, escaped: escaped)
            case 0x5C:
                if !ascii { try validateUTF8(start, index) }
                var scratch: [UInt8] = []
                try escape(into: &scratch)
                start = index
                ascii = true
                escaped = true
            case 0..<0x20:
                throw fail("a control character in a string")
            default:
                if byte >= 0x80 { ascii = false }
                index += 1
            }
        }
        throw fail("unexpected end of the document in a string")
    }

    /// Moves past bytes that need no attention in a string (printable ASCII other than `"`
    /// and `\\`), eight at a time: the index stops at the first byte that does, or near the end.
    @inline(__always)
    mutating func skipPlainASCII() {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        let base = UnsafeRawPointer(bytes.baseAddress!)
        while index + 8 <= bytes.count {
            let word = base.loadUnaligned(fromByteOffset: index, as: UInt64.self)
            // Per byte: zero after xor with `"` or `\`, below 0x20, or 0x80 and up. Borrows
            // only run upwards, so the lowest flagged byte is a true one.
            let quote = word ^ (ones &* 0x22)
            let backslash = word ^ (ones &* 0x5C)
            let flagged = ((quote &- ones) & ~quote) | ((backslash &- ones) & ~backslash) | (word &- ones &* 0x20) | word
            let special = flagged & highs
            if special != 0 {
                index += (UInt64(littleEndian: special).trailingZeroBitCount) / 8
                return
            }
            index += 8
        }
    }

    func validateUTF8(_ from: Int, _ to: Int) throws(DeviceListError) {
        var position = from
        while position < to, bytes[position] < 0x80 { position += 1 }
        guard position < to else { return }
        guard String(validating: UnsafeBufferPointer(rebasing: bytes[position..<to]), as: UTF8.self) != nil else {
            throw fail("a string is not valid UTF-8", at: position)
        }
    }

    /// One escape (the index is at the backslash), appended as UTF-8.
    mutating func escape(into decoded: inout [UInt8]) throws(DeviceListError) {
        guard index + 1 < bytes.count else { throw fail("unexpected end of the document in a string") }
        let kind = bytes[index + 1]
        index += 2
        switch kind {
        case UInt8(ascii: "\""): decoded.append(0x22)
        case UInt8(ascii: "\\"): decoded.append(0x5C)
        case UInt8(ascii: "/"): decoded.append(0x2F)
        case UInt8(ascii: "b"): decoded.append(0x08)
        case UInt8(ascii: "f"): decoded.append(0x0C)
        case UInt8(ascii: "n"): decoded.append(0x0A)
        case UInt8(ascii: "r"): decoded.append(0x0D)
        case UInt8(ascii: "t"): decoded.append(0x09)
        case UInt8(ascii: "u"):
            var scalar = try hex4()
            if (0xD800...0xDBFF).contains(scalar) {
                // A high surrogate must be followed by an escaped low one.
                guard index + 1 < bytes.count, bytes[index] == 0x5C, bytes[index + 1] == UInt8(ascii: "u") else {
                    throw fail("a lone surrogate in a string")
                }
                index += 2
                let low = try hex4()
                guard (0xDC00...0xDFFF).contains(low) else { throw fail("a lone surrogate in a string") }
                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
            } else if (0xDC00...0xDFFF).contains(scalar) {
                throw fail("a lone surrogate in a string")
            }
            guard let unicode = Unicode.Scalar(scalar) else { throw fail("an invalid \\u escape") }
            decoded.append(contentsOf: UTF8.encode(unicode)!)
        default:
            index -= 1
            throw fail("an invalid escape in a string")
        }
    }

    mutating func hex4() throws(DeviceListError) -> UInt32 {
        guard index + 4 <= bytes.count else { throw fail("unexpected end of the document in a string") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt32
            switch byte {
            case 0x30...0x39: digit = UInt32(byte - 0x30)
            case 0x41...0x46: digit = UInt32(byte - 0x41 + 10)
            case 0x61...0x66: digit = UInt32(byte - 0x61 + 10)
            default: throw fail("an invalid \\u escape")
            }
            value = value << 4 | digit
            index += 1
        }
        return value
    }
}

/// The devices body decoded as it arrives, chunk by chunk: each device is decoded once its
/// object is complete, and its bytes are let go, so a 10 MB body is never held whole (its
/// pages cost more than decoding it) and decoding overlaps the transfer. The result, and
/// every error with its path and byte offset, is exactly what `DeviceListDecoder.decode`
/// gives for the whole body: a body that does not begin `{"devices":[` (in any spacing) is
/// simply collected and decoded whole at the end. Used by one transfer at a time.
///
/// On loopback the bytes arrive faster than one core decodes them, so the list is cut into
/// batches of about `batchSize` bytes, each decoded on the transfer's thread or on a second
/// one beside it (128 KiB: at 32 the handovers, each a wake-up of the other thread, cost
/// more than they saved). A batch ends where the next seems to begin (`},{"`, which a string or a
/// nested list can fake), so its start is a guess until the batch before it, decoded from
/// a known start, ends exactly there; a batch that does not (or fails at all) is decoded
/// again one device at a time, as a body without batches is, errors included.
public final class DeviceListStream: @unchecked Sendable {
    private enum Phase {
        /// Not yet past `{"devices":[`.
        case prefix
        /// Some other shape: collected, decoded at the end.
        case whole
        /// Inside the list.
        case elements(Expect)
        /// After the list: the rest of the object, checked at the end.
        case tail
        case failed(DeviceListError)
    }

    private enum Expect { case firstOrEnd, element, separator }

    private var phase = Phase.prefix
    /// Bytes not consumed yet; `base` is where `pending[0]` lies in the body.
    private var pending: [UInt8] = []
    private var base = 0
    /// Where the next thing starts in `pending`.
    private var cursor = 0
    /// A device cut by a chunk is decoded again only once `pending` holds this many bytes:
    /// when what has arrived of it has doubled (so a huge device costs linear time, not
    /// quadratic), and at least `retryGrowth` more.
    private var retryAt = 0
    private let retryGrowth: Int
    private var devices: [Device] = []
    /// The most bytes held at once in `pending` and the batches not yet added (each with
    /// the few bytes after it, which were copied on): one partial device, a chunk and a few
    /// batches, unless the body is decoded whole. Spare buffers are empty and not counted;
    /// there are `spareLimit` of them at most.
    private(set) var windowPeak = 0

    /// 0: no batches (every device on the transfer's thread, as it completes).
    private let batchSize: Int
    /// Batches cut and not yet added to `devices`, in body order: each begins where the one
    /// before ends, and the last ends at `base`.
    private var batches: [DeviceBatch] = []
    private var batchedBytes = 0
    /// Off once a batch has been decoded again: the rest of the body goes one device at a time.
    private var batching: Bool
    private(set) var worker: BatchWorker?
    /// For tests, that both ways were taken: batches the second thread decoded and
    /// `devices` took, and whether batches were put back to be decoded one device at a time.
    private(set) var batchesDecodedBeside = 0
    private(set) var batchesPutBack = false
    /// Where in the body the search for `},{"` has looked, so that each byte is looked at
    /// once, however small the chunks (a body with spaces has none to find); and how many
    /// bytes it has looked at, for a test.
    private var boundarySearchedTo = 0
    private(set) var boundaryBytesSearched = 0
    /// Buffers of batches already added to `devices`, emptied, each to take the bytes after
    /// a later batch is cut and become `pending`: a fresh buffer per batch meant fresh
    /// pages, and a page's first touch (a fault) costs more than decoding what it holds.
    /// `bufferCapacity` holds a batch, a read and the start of the next device, so `pending`
    /// grows (a copy) only for a device longer than a batch, or after a put-back.
    private var spareBuffers: [[UInt8]] = []
    private let bufferCapacity: Int
    static let spareLimit = 4

    /// A small `retryGrowth` lets a test see cut devices decoded before the end; a small
    /// `batchSize` makes batches of a few devices (0: none).
    public init(expectedLength: Int? = nil, retryGrowth: Int = 1 << 14, batchSize: Int = 128 << 10) {
        self.retryGrowth = retryGrowth
        self.batchSize = batchSize
        batching = batchSize > 0
        bufferCapacity = max(1 << 16, 3 * batchSize)
        pending = Self.buffer(capacity: bufferCapacity)
        begin(expectedLength: expectedLength)
    }

    deinit { worker?.stop() }

    /// The body's length, when known, sizes the list (one device per 256 bytes or more:
    /// capacity never used is address space, not memory).
    public func begin(expectedLength: Int?) {
        devices.reserveCapacity(max(16, min(expectedLength ?? 0, 256 << 20) / 256))
    }

    /// The next bytes of the body. An error is kept for `finish`; what follows is ignored.
    public func consume(_ bytes: UnsafeRawBufferPointer) {
        if case .failed = phase { return }
        pending.append(contentsOf: bytes.bindMemory(to: UInt8.self))
        windowPeak = max(windowPeak, pending.count + batchedBytes)
        do throws(DeviceListError) {
            if case .prefix = phase {
                matchPrefix()
                // Still undecided past this (whitespace): decoded whole, as the prefix is
                // looked for from the start at every chunk.
                if case .prefix = phase, pending.count > Self.prefixLimit { phase = .whole }
            }
            if batching, case .elements(.element) = phase {
                cutBatches()
                // No `},{"` in two batches' worth (a device longer than a batch, a body with
                // spaces): those devices one at a time, after the batches before them.
                if batching {
                    guard pending.count - cursor >= 2 * batchSize else { return }
                    mergeBatches(waiting: true)
                }
            }
            try advance(final: false)
        } catch {
            phase = .failed(error)
            pending = []
        }
    }

    /// The devices, once the whole body has been consumed.
    public func finish() throws(DeviceListError) -> [Device] {
        defer {
            worker?.stop()
            worker = nil
        }
        switch phase {
        case .failed(let error):
            throw error
        case .prefix, .whole:
            return try pending.withUnsafeBufferPointer { buffer throws(DeviceListError) in try DeviceListDecoder.decode(bytes: buffer) }
        case .elements, .tail:
            mergeBatches(waiting: true)
            try advance(final: true)
            return devices
        }
    }

    // MARK: Batches

    /// Cuts what has arrived past the cursor (at an element's start) into batches, each
    /// ending where the last `},{"` in it seems to begin the next element.
    private func cutBatches() {
        mergeBatches(waiting: false)
        while batching, pending.count - cursor >= batchSize, let end = lastElementStart(after: cursor) {
            // The batch takes the buffer as it is, and only the bytes after it are copied
            // (a chunk at most): copying the batch out cost a copy of the whole body.
            var rest = spareBuffers.popLast() ?? Self.buffer(capacity: bufferCapacity)
            rest.append(contentsOf: pending[end...])
            let batch = DeviceBatch(bytes: pending, range: cursor..<end, origin: base + cursor)
            pending = rest
            base += end
            cursor = 0
            retryAt = max(0, retryAt - end)
            batches.append(batch)
            batchedBytes += batch.held
            let worker = self.worker ?? BatchWorker()
            self.worker = worker
            // Beside, unless a batch already waits for the second thread; here otherwise.
            if !worker.take(batch) { batch.outcome = batch.decoded() }
            // A stalled second thread holds no more than a few batches.
            mergeBatches(waiting: batches.count > 4)
        }
    }

    private static func buffer(capacity: Int) -> [UInt8] {
        var buffer: [UInt8] = []
        buffer.reserveCapacity(capacity)
        return buffer
    }

    /// Where the last `},{"` in `pending` after `start` puts the `{`, if anywhere. Only
    /// bytes that arrived since the last search are looked at: there was none before them
    /// (or the batch was cut there).
    private func lastElementStart(after start: Int) -> Int? {
        defer { boundarySearchedTo = base + pending.count }
        let from = max(start + 1, boundarySearchedTo - base - 3)
        var position = pending.count - 4
        while position >= from {
            boundaryBytesSearched += 1
            if pending[position] == UInt8(ascii: "}"), pending[position + 1] == UInt8(ascii: ","),
               pending[position + 2] == UInt8(ascii: "{"), pending[position + 3] == UInt8(ascii: "\"") {
                return position + 2
            }
            position -= 1
        }
        return nil
    }

    /// Adds the decoded batches to the devices in order; `waiting`: all of them, waiting for
    /// the second thread. A batch that did not end where the next begins, or failed, is put
    /// back with every batch after it, to be read one device at a time from its start
    /// (which the batch before it proved).
    private func mergeBatches(waiting: Bool) {
        if waiting { worker?.waitUntilIdle() }
        while let first = batches.first, let (outcome, decodedBeside) = worker?.outcome(of: first) {
            guard case .devices(let decoded) = outcome else {
                var restored: [UInt8] = []
                restored.reserveCapacity(batchedBytes + pending.count)
                for batch in batches { restored += batch.bytes[batch.range] }
                restored += pending[...]
                base = first.origin
                pending = restored
                cursor = 0
                retryAt = 0
                batches = []
                batchedBytes = 0
                batching = false
                batchesPutBack = true
                return
            }
            decoded.move(to: &devices)
            if decodedBeside { batchesDecodedBeside += 1 }
            batchedBytes -= first.held
            batches.removeFirst()
            if spareBuffers.count < Self.spareLimit { spareBuffers.append(first.takeBytes()) }
        }
    }

    // MARK: One device at a time

    /// `BOM? ws { ws "devices" ws : ws [`: the list starts at once.
    private func matchPrefix() {
        let bytes = pending
        var index = 0
        func at(_ position: Int) -> UInt8? { position < bytes.count ? bytes[position] : nil }
        func skipWhitespace() {
            while let byte = at(index), byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 { index += 1 }
        }
        /// true: matched; false: another shape; nil: not enough bytes yet.
        func expect(_ word: [UInt8]) -> Bool? {
            for byte in word {
                guard let actual = at(index) else { return nil }
                guard actual == byte else { return false }
                index += 1
            }
            return true
        }
        if at(0) == 0xEF {
            guard let bom = expect([0xEF, 0xBB, 0xBF]) else { return }
            guard bom else { phase = .whole; return }
        }
        for word in [[UInt8(ascii: "{")], Array(#""devices""#.utf8), [UInt8(ascii: ":")], [UInt8(ascii: "[")]] {
            skipWhitespace()
            guard let matched = expect(word) else { return }
            guard matched else { phase = .whole; return }
        }
        cursor = index
        phase = .elements(.firstOrEnd)
    }

    static let prefixLimit = 4096

    /// Decodes every complete device, and at the end everything else; then lets go of the
    /// bytes consumed.
    private func advance(final: Bool) throws(DeviceListError) {
        switch phase {
        case .elements, .tail: break
        default: return
        }
        try pending.withUnsafeBufferPointer { buffer throws(DeviceListError) in
            var scanner = Scanner(buffer)
            scanner.origin = base
            while true {
                scanner.index = cursor
                scanner.skipWhitespace()
                cursor = scanner.index
                switch phase {
                case .elements(.separator):
                    guard let byte = scanner.peek() else {
                        if final { throw scanner.unexpected() }
                        return
                    }
                    cursor += 1
                    if byte == UInt8(ascii: ",") {
                        phase = .elements(.element)
                        // The rest in batches, unless they found no place to cut.
                        if batching && !final && buffer.count - cursor < 2 * batchSize { return }
                    } else if byte == UInt8(ascii: "]") {
                        phase = .tail
                    } else {
                        cursor -= 1
                        throw scanner.unexpected()
                    }
                case .elements(let expect):
                    if expect == .firstOrEnd, scanner.peek() == UInt8(ascii: "]") {
                        cursor += 1
                        phase = .tail
                        continue
                    }
                    if !final {
                        guard scanner.peek() != nil, buffer.count >= retryAt else { return }
                    }
                    scanner.depth = 2
                    scanner.key = nil
                    scanner.deviceIndex = devices.count
                    do throws(DeviceListError) {
                        devices.append(try scanner.device())
                    } catch {
                        // Whatever runs out of bytes fails within a few bytes of the end (a
                        // literal, an escape, a string, a missing brace): the device is cut by
                        // the chunk, not wrong. Try again with more; at the end, it is wrong.
                        guard !final, error.offset - base >= buffer.count - Self.cutMargin else { throw error }
                        retryAt = buffer.count + max(retryGrowth, buffer.count - cursor)
                        return
                    }
                    scanner.deviceIndex = nil
                    cursor = scanner.index
                    retryAt = 0
                    phase = .elements(.separator)
                case .tail:
                    guard final else { return }
                    scanner.depth = 1
                    try scanner.objectRest { s, _, _ throws(DeviceListError) in try s.skipValue() }
                    scanner.skipWhitespace()
                    guard scanner.index == buffer.count else { throw scanner.unexpected() }
                    return
                default:
                    return
                }
            }
        }
        // Let go of what is decoded: the window holds one partial device at most.
        if cursor > 0 {
            pending.removeSubrange(0..<cursor)
            base += cursor
            retryAt = max(0, retryAt - cursor)
            cursor = 0
        }
    }

    /// How near the end of the bytes so far an error must be to mean "cut here": farther
    /// than the longest token the decoder reads ahead (`\ud83d\ude00`, `false`).
    static let cutMargin = 64
}

/// Whole elements of the list, `device , device , ... ,`, as they stand in `bytes[range]`,
/// which is the body from `origin`: decoded into devices only if the bytes are exactly that
/// (the last comma included), so a start that was only guessed proves nothing false.
final class DeviceBatch: @unchecked Sendable {
    enum Outcome {
        case devices(DecodedDevices)
        case refused
    }

    private(set) var bytes: [UInt8]
    let range: Range<Int>
    let origin: Int
    /// The bytes the batch keeps alive: its buffer's, the few after `range` included.
    var held: Int { bytes.count }
    /// Written once by the thread that decodes the batch (the transfer's, or the second
    /// thread); read under the worker's lock.
    fileprivate(set) var outcome: Outcome?
    fileprivate(set) var decodedBeside = false

    init(bytes: [UInt8], range: Range<Int>, origin: Int) {
        self.bytes = bytes
        self.range = range
        self.origin = origin
    }

    /// The buffer, emptied, for another batch (once the batch is decoded and added).
    func takeBytes() -> [UInt8] {
        var taken: [UInt8] = []
        swap(&taken, &bytes)
        taken.removeAll(keepingCapacity: true)
        return taken
    }

    func decoded() -> Outcome {
        bytes.withUnsafeBufferPointer { buffer in
            Self.elements(UnsafeBufferPointer(rebasing: buffer[range])).map(Outcome.devices) ?? .refused
        }
    }

    static func elements(_ bytes: UnsafeBufferPointer<UInt8>) -> DecodedDevices? {
        var scanner = Scanner(bytes)
        let devices = DecodedDevices(capacity: bytes.count / 512 + 1)
        scanner.skipWhitespace()
        while scanner.index < bytes.count {
            scanner.depth = 2
            guard let device = try? scanner.device() else { return nil }
            devices.append(device)
            scanner.skipWhitespace()
            guard scanner.peek() == UInt8(ascii: ",") else { return nil }
            scanner.index += 1
            scanner.skipWhitespace()
        }
        return devices
    }
}

/// A batch's devices, kept so that they move into the stream's list rather than being
/// copied there: a copy retains every device's strings and lists, and the batch's end
/// released them again (a tenth of the decode's time).
final class DecodedDevices: @unchecked Sendable {
    private var base: UnsafeMutablePointer<Device>
    private var capacity: Int
    private(set) var count = 0

    init(capacity: Int) {
        self.capacity = max(1, capacity)
        base = .allocate(capacity: self.capacity)
    }

    deinit {
        base.deinitialize(count: count)
        base.deallocate()
    }

    func append(_ device: consuming Device) {
        if count == capacity {
            let larger = UnsafeMutablePointer<Device>.allocate(capacity: 2 * capacity)
            larger.moveInitialize(from: base, count: count)
            base.deallocate()
            base = larger
            capacity *= 2
        }
        (base + count).initialize(to: device)
        count += 1
    }

    /// Moves every device to the end of `list`, leaving none here.
    /// (No `reserveCapacity`: it grows to the exact size, so reserving per batch would copy
    /// the list at every batch; appends grow it geometrically.)
    func move(to list: inout [Device]) {
        for position in 0..<count { list.append((base + position).move()) }
        count = 0
    }
}

/// The second thread of a stream: decodes batches in the order handed over, with one
/// waiting at most (the transfer's thread, which also receives, decodes the rest). Started
/// with the stream's first batch, stopped by `finish` or the stream's end (a transfer that
/// failed midway).
final class BatchWorker: @unchecked Sendable {
    private let condition = NSCondition()
    private var waiting: DeviceBatch?
    /// Set by the thread itself: until it runs (or if it never does), every batch is decoded
    /// by the caller, so nothing ever waits on a thread that is not there.
    private var running = false
    private var decoding = false
    private var stopped = false
    private var exited = false

    init() {
        let thread = Thread { [self] in run() }
        thread.name = "tsdns-decode"
        thread.start()
    }

    /// Hands over a batch if none is waiting; false otherwise (the caller decodes it itself).
    func take(_ batch: DeviceBatch) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard running, waiting == nil, !stopped else { return false }
        waiting = batch
        condition.broadcast()
        return true
    }

    /// A batch's outcome and whether this thread decoded it, read under the lock (the
    /// thread may be writing them).
    func outcome(of batch: DeviceBatch) -> (DeviceBatch.Outcome, decodedBeside: Bool)? {
        condition.lock()
        defer { condition.unlock() }
        return batch.outcome.map { ($0, batch.decodedBeside) }
    }

    func waitUntilIdle() {
        condition.lock()
        while waiting != nil || decoding { condition.wait() }
        condition.unlock()
    }

    func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }

    /// For tests: whether the thread has ended, waiting for it up to `timeout`.
    func waitForExit(timeout: Duration) -> Bool {
        let deadline = Date().addingTimeInterval(Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18)
        condition.lock()
        defer { condition.unlock() }
        while !exited { if !condition.wait(until: deadline) { break } }
        return exited
    }

    private func run() {
        condition.lock()
        running = true
        while true {
            while waiting == nil && !stopped { condition.wait() }
            guard let batch = waiting else { break }
            waiting = nil
            decoding = true
            condition.broadcast()
            condition.unlock()
            let outcome = batch.decoded()
            condition.lock()
            batch.outcome = outcome
            batch.decodedBeside = true
            decoding = false
            condition.broadcast()
        }
        exited = true
        condition.broadcast()
        condition.unlock()
    }
}
