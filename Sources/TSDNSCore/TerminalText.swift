/// Text from outside (device hostnames, API messages, config values) made safe for a
/// terminal: control characters become visible escapes (`\x1b`, `\n`), so a hostname
/// cannot colour, move or split the lines an operator reads.
public enum TerminalText {
    public static func escape(_ text: String) -> String {
        // The common case, nothing to escape, costs one scan and no allocation.
        guard text.unicodeScalars.contains(where: needsEscape) else { return text }
        var result = ""
        result.reserveCapacity(text.utf8.count + 8)
        for scalar in text.unicodeScalars {
            guard needsEscape(scalar) else {
                result.unicodeScalars.append(scalar)
                continue
            }
            switch scalar {
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            default:
                let value = scalar.value
                result += value <= 0xFF
                    ? "\\x" + hex(value, width: 2)
                    : "\\u{" + hex(value, width: 4) + "}"
            }
        }
        return result
    }

    /// C0 and C1 controls, DEL, and the bidirectional overrides that reorder a line.
    public static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0..<0x20, 0x7F...0x9F, 0x202A...0x202E, 0x2066...0x2069: return true
        default: return false
        }
    }

    private static func hex(_ value: UInt32, width: Int) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
}
