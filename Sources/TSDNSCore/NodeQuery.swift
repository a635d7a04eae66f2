import Foundation

/// How an operator names a node in `POST /v1/resolvers` and `DELETE /v1/resolvers/{node}`:
/// an address, a nodeId or legacy id, a MagicDNS name (full or first label), or a hostname.
/// Hostnames are not unique in a tailnet; the others are.
public enum NodeResolution: Sendable, Equatable {
    case found(Device)
    case notFound
    /// Several devices carry the name and not exactly one of them is healthy.
    case ambiguous([Device])
}

public enum NodeQuery {
    public static func resolve(_ query: String, in devices: [Device], isHealthy: (Device) -> Bool) -> NodeResolution {
        let text = query.trimmingCharacters(in: .whitespaces)
        guard !text.isEmpty else { return .notFound }
        if let address = IPAddress(text) {
            // Where several devices claim the address, a healthy one answers for it.
            let owners = devices.filter { $0.ipAddresses.contains(address) }
            return (owners.first(where: isHealthy) ?? owners.first).map(NodeResolution.found) ?? .notFound
        }
        if let device = devices.first(where: { $0.nodeId == text || $0.id == text }) { return .found(device) }
        let name = text.lowercased().trimmingSuffix(".")
        if let device = devices.first(where: { $0.name.lowercased().trimmingSuffix(".") == name }) { return .found(device) }
        for matches in [
            devices.filter { $0.hostname.lowercased() == name },
            devices.filter { $0.name.lowercased().split(separator: ".").first.map(String.init) == name },
        ] where !matches.isEmpty {
            if matches.count == 1 { return .found(matches[0]) }
            let healthy = matches.filter(isHealthy)
            return healthy.count == 1 ? .found(healthy[0]) : .ambiguous(matches)
        }
        return .notFound
    }
}

extension String {
    func trimmingSuffix(_ suffix: String) -> String {
        hasSuffix(suffix) ? String(dropLast(suffix.count)) : self
    }
}
