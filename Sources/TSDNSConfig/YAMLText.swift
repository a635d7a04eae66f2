import Yams

/// YAML as the config file and kubeconfigs are read: composed with Yams' basic resolver, so
/// no scalar is matched against the default resolver's regular expressions (compiling them
/// starts ICU's regex engine, about 2 ms of every start). Booleans and integers are
/// recognised here instead, on plain (unquoted) scalars only.
public enum YAMLText {
    public static func compose(_ text: String) throws -> Node? {
        try Yams.compose(yaml: text, .basic)
    }

    /// YAML 1.1's booleans, spelled as Yams' default resolver accepts them.
    public static func bool(_ node: Node) -> Bool? {
        guard case .scalar(let scalar) = node, scalar.style == .plain else { return nil }
        switch scalar.string {
        case "true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON": return true
        case "false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF": return false
        default: return nil
        }
    }

    /// A whole number written in decimal: `[-+]?(0|[1-9][0-9]*)`. YAML 1.1's octal (`010`
    /// is 8), hexadecimal, binary, sexagesimal and `_` separators are not numbers here: a
    /// config value that means something other than it reads is an error.
    public static func int(_ node: Node) -> Int? {
        guard case .scalar(let scalar) = node, scalar.style == .plain else { return nil }
        let digits = scalar.string.utf8.drop { $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "+") }
        guard scalar.string.utf8.count - digits.count <= 1, let first = digits.first,
              digits.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
              first != UInt8(ascii: "0") || digits.count == 1
        else { return nil }
        return Int(scalar.string)
    }
}
