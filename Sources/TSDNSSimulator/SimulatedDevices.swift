import Foundation
import TSDNSCore

/// Builds plausible devices for the simulators, the demo and the benchmark.
public enum SimulatedDevices {
    public static let domain = "tail0sim.ts.net"

    /// Device number `n` (1...65535): 100.64.x.y and fd7a:115c:a1e0::n.
    public static func device(
        _ n: Int, hostname: String, tags: [String]? = ["tag:dns"], connected: Bool = true,
        lastSeen: Date? = nil, ipv6: Bool = true
    ) -> Device {
        var addresses = ["100.64.\(n / 256).\(n % 256)"]
        if ipv6 { addresses.append("fd7a:115c:a1e0::\(String(n, radix: 16))") }
        return Device(
            id: String(7_000_000_000 + n),
            nodeId: "n\(String(format: "%06d", n))CNTRL",
            name: "\(hostname).\(domain)",
            hostname: hostname,
            addresses: addresses,
            tags: tags,
            authorized: true,
            connectedToControl: connected,
            lastSeen: wholeSeconds(lastSeen ?? Date(timeIntervalSinceNow: connected ? 0 : -3600)),
            expires: wholeSeconds(Date(timeIntervalSinceNow: 180 * 86400)),
            keyExpiryDisabled: tags != nil,
            isExternal: false
        )
    }

    /// The API's timestamps have whole seconds; so do these, so they survive a round trip.
    static func wholeSeconds(_ date: Date) -> Date {
        Date(timeIntervalSince1970: date.timeIntervalSince1970.rounded(.down))
    }
}
