#if canImport(Glibc)
import Glibc
#endif

/// Reads a small file (a config, a secret, a token, a state file) with a size limit, so
/// that `/dev/zero` or a 5 GB log named by mistake is an error, not an out-of-memory.
public enum BoundedFile {
    public enum Failure: Error, Sendable, Equatable, CustomStringConvertible {
        case missing
        case unreadable(String)
        case directory
        case tooLarge(limit: Int)

        public var description: String {
            switch self {
            case .missing: return "no such file"
            case .unreadable(let reason): return reason
            case .directory: return "it is a directory, not a file"
            case .tooLarge(let limit): return "it is larger than \(BoundedFile.size(limit))"
            }
        }
    }

    public static func read(_ path: String, limit: Int) throws(Failure) -> [UInt8] {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            let code = errno
            if code == ENOENT { throw .missing }
            throw .unreadable(String(cString: strerror(code)))
        }
        defer { close(descriptor) }
        var info = stat()
        if fstat(descriptor, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR { throw .directory }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                let code = errno
                throw code == EISDIR ? .directory : .unreadable(String(cString: strerror(code)))
            }
            if count == 0 { break }
            bytes += chunk[0..<count]
            if bytes.count > limit { throw .tooLarge(limit: limit) }
        }
        return bytes
    }

    /// UTF-8 text, or the byte offset of the first byte that is not UTF-8.
    public static func text(_ bytes: [UInt8]) -> Result<String, InvalidUTF8> {
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        var offset = 0
        var text = ""
        text.reserveCapacity(bytes.count)
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let scalar):
                text.unicodeScalars.append(scalar)
                offset += UTF8.width(scalar)
            case .emptyInput:
                return .success(text)
            case .error:
                return .failure(InvalidUTF8(offset: offset))
            }
        }
    }

    public struct InvalidUTF8: Error, Sendable, Equatable {
        public var offset: Int
    }

    static func size(_ bytes: Int) -> String {
        bytes >= 1 << 20 && bytes % (1 << 20) == 0 ? "\(bytes >> 20) MiB" : bytes >= 1024 && bytes % 1024 == 0 ? "\(bytes >> 10) KiB" : "\(bytes) bytes"
    }
}
