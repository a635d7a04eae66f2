import Foundation
import Logging
import TSDNSCore

/// One line per event on standard error: `2026-11-26T10:00:00Z notice tsdns: message key=value`,
/// or with `--log-format json` one JSON object (time, level, logger, message, metadata).
struct LineLogHandler: LogHandler {
    let label: String
    let format: LogFormat
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        let time = Date().formatted(.iso8601)
        var line: Data
        switch format {
        case .text:
            // Values come from outside (hostnames, API messages): escaped, one event one line.
            let pairs = merged.sorted { $0.key < $1.key }.map { " \($0.key)=\(TerminalText.escape("\($0.value)"))" }.joined()
            line = Data("\(time) \(event.level) \(label): \(TerminalText.escape("\(event.message)"))\(pairs)".utf8)
        case .json:
            var object: [String: Any] = ["time": time, "level": "\(event.level)", "logger": label, "message": "\(event.message)"]
            for (key, value) in merged where object[key] == nil { object[key] = Self.json(value) }
            guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else { return }
            line = data
        }
        line.append(0x0A)
        FileHandle.standardError.write(line)
    }

    /// Lists and dictionaries stay lists and objects in JSON lines.
    static func json(_ value: Logger.MetadataValue) -> Any {
        switch value {
        case .string(let text): return text
        case .stringConvertible(let convertible):
            // Numbers and booleans stay numbers and booleans.
            switch convertible {
            case let value as Int: return value
            case let value as Double: return value
            case let value as Bool: return value
            default: return convertible.description
            }
        case .array(let items): return items.map(json)
        case .dictionary(let entries): return entries.mapValues(json)
        }
    }
}
