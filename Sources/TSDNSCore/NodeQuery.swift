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
        Index(devices).resolve(query, isHealthy: isHealthy)
    }

    /// The devices by every name a query may use, built once for many queries (a source
    /// set of 10,000 members against a tailnet of 10,000 devices is a lookup each, not a
    /// scan each).
    public struct Index: Sendable {
        private let devices: [Device]
        private var byAddress: [IPAddress: [Int]] = [:]
        private var byID: [String: Int] = [:]
        private var byName: [String: Int] = [:]
        private var byHostname: [String: [Int]] = [:]
        private var byFirstLabel: [String: [Int]] = [:]

        public init(_ devices: [Device]) {
            self.devices = devices
            for (index, device) in devices.enumerated() {
                for address in device.ipAddresses { byAddress[address, default: []].append(index) }
                // nodeId before id, first device first: as a scan in list order would find them.
                if byID[device.nodeId] == nil { byID[device.nodeId] = index }
                let name = device.name.lowercased().trimmingSuffix(".")
                if byName[name] == nil { byName[name] = index }
                byHostname[device.hostname.lowercased(), default: []].append(index)
                if let label = name.split(separator: ".").first.map(String.init) { byFirstLabel[label, default: []].append(index) }
            }
            for (index, device) in devices.enumerated() where byID[device.id] == nil { byID[device.id] = index }
        }

        /// An address, a nodeId or legacy id, a MagicDNS name (full or first label), or a
        /// hostname. Hostnames are not unique in a tailnet; the others are.
        public func resolve(_ query: String, isHealthy: (Device) -> Bool) -> NodeResolution {
            let text = query.trimmingCharacters(in: .whitespaces)
            guard !text.isEmpty else { return .notFound }
            if let address = IPAddress(text) {
                // Where several devices claim the address, a healthy one answers for it.
                let owners = (byAddress[address] ?? []).map { devices[$0] }
                return (owners.first(where: isHealthy) ?? owners.first).map(NodeResolution.found) ?? .notFound
            }
            if let index = byID[text] { return .found(devices[index]) }
            let name = text.lowercased().trimmingSuffix(".")
            if let index = byName[name] { return .found(devices[index]) }
            for indices in [byHostname[name] ?? [], byFirstLabel[name] ?? []] where !indices.isEmpty {
                let matches = indices.map { devices[$0] }
                if matches.count == 1 { return .found(matches[0]) }
                let healthy = matches.filter(isHealthy)
                return healthy.count == 1 ? .found(healthy[0]) : .ambiguous(matches)
            }
            return .notFound
        }
    }
}

extension String {
    func trimmingSuffix(_ suffix: String) -> String {
        hasSuffix(suffix) ? String(dropLast(suffix.count)) : self
    }
}
