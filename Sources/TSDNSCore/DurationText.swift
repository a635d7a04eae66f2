/// Go/Kubernetes-style durations: `90s`, `5m`, `1h30m`, `1.5h`, `250ms`.
public enum DurationText {
    public enum Failure: Error, Sendable, Equatable {
        /// Not a duration at all.
        case malformed
        /// A duration, but longer than this program can count (about 292 years).
        case tooLarge
    }

    public static func parse(_ text: String) -> Duration? {
        try? parseChecked(text)
    }

    public static func parseChecked(_ text: String) throws(Failure) -> Duration {
        // Longer units first, so "ms" is not read as "m".
        let units: [(String, Double)] = [("ns", 1e-9), ("us", 1e-6), ("µs", 1e-6), ("ms", 1e-3), ("h", 3600), ("m", 60), ("s", 1)]
        var rest = Substring(text)
        guard !rest.isEmpty else { throw .malformed }
        if rest == "0" { return .zero }
        var total = 0.0
        while !rest.isEmpty {
            let number = rest.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
            guard !number.isEmpty, let value = Double(number) else { throw .malformed }
            rest = rest.dropFirst(number.count)
            guard let unit = units.first(where: { rest.hasPrefix($0.0) }) else { throw .malformed }
            rest = rest.dropFirst(unit.0.count)
            total += value * unit.1
        }
        guard total * 1e9 < Double(Int64.max) else { throw .tooLarge }
        return .nanoseconds(Int64((total * 1e9).rounded()))
    }

    /// `1h2m3s`, and below a second `250ms` or `40ns`, so that no setting prints as `0s`.
    public static func format(_ duration: Duration) -> String {
        var seconds = Int(duration.components.seconds)
        if seconds == 0 && duration > .zero {
            let nanoseconds = Int(duration.components.attoseconds / 1_000_000_000)
            if nanoseconds >= 1_000_000 { return "\(nanoseconds / 1_000_000)ms" }
            if nanoseconds >= 1_000 { return "\(nanoseconds / 1_000)us" }
            return "\(max(1, nanoseconds))ns"
        }
        var text = ""
        if seconds >= 3600 { text += "\(seconds / 3600)h"; seconds %= 3600 }
        if seconds >= 60 { text += "\(seconds / 60)m"; seconds %= 60 }
        if seconds > 0 || text.isEmpty { text += "\(seconds)s" }
        return text
    }

    /// A wait as a log shows it: `127ms`, `1.5s`, `2m0s`.
    public static func brief(_ duration: Duration) -> String {
        let seconds = duration.seconds
        if seconds < 1 { return "\(Int((seconds * 1000).rounded()))ms" }
        if seconds < 60 { return "\((seconds * 10).rounded() / 10)s" }
        return format(duration)
    }
}
