import Foundation
import Synchronization

/// The RPC bearer token, read from `rpc.tokenFile` and read again whenever the file
/// changes, so a rotation takes effect without a restart. Compared in constant time.
final class TokenFile: Sendable {
    let path: String
    private struct Stamp: Equatable {
        var modified: Date?
        var size: Int?
        var inode: Int?
    }
    private let cache = Mutex<(stamp: Stamp?, token: [UInt8]?)>((nil, nil))

    init(path: String) {
        self.path = path
    }

    /// The current token; nil when the file is missing, unreadable or empty (then every
    /// request is refused: failing closed).
    func current() -> [UInt8]? {
        let attributes = try? FileManager.default.attributesOfItem(atPath: path)
        let stamp = Stamp(
            modified: attributes?[.modificationDate] as? Date,
            size: (attributes?[.size] as? NSNumber)?.intValue,
            inode: (attributes?[.systemFileNumber] as? NSNumber)?.intValue
        )
        return cache.withLock { cache in
            if cache.stamp == stamp, attributes != nil { return cache.token }
            let text = FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) }
            let token = text?.trimmingCharacters(in: .whitespacesAndNewlines)
            cache = (stamp, token.flatMap { $0.isEmpty ? nil : Array($0.utf8) })
            return cache.token
        }
    }

    func matches(_ presented: String) -> Bool {
        guard let expected = current() else { return false }
        return constantTimeEqual(Array(presented.utf8), expected)
    }
}

/// Takes as long for every presented token of a given length, whatever its content.
func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    var difference = UInt8(a.count == b.count ? 0 : 1)
    for index in a.indices {
        difference |= a[index] ^ (index < b.count ? b[index] : 0)
    }
    return difference == 0
}
