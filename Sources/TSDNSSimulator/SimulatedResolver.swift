import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A resolver for the demo: a UDP DNS server on 127.0.0.1 that answers every query with
/// NOERROR and no records, until it is told to fall silent. (The tests use dnsmasq; this
/// one only has to let the demo show a resolver that stops answering while its node stays
/// connected.)
public final class SimulatedResolver: Sendable {
    public let port: Int
    private let socket: Int32
    private let state = Mutex<(answering: Bool, running: Bool)>((true, true))

    private init() throws {
        let fd = Glibc.socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SimulatorError.socket("socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Bool in
                bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
            }
        }
        guard bound else {
            close(fd)
            throw SimulatorError.socket("bind: \(String(cString: strerror(errno)))")
        }
        socket = fd
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    /// Starts answering on a thread of its own.
    public static func start() throws -> SimulatedResolver {
        let resolver = try SimulatedResolver()
        let thread = Thread { resolver.serve() }
        thread.name = "simulated-resolver"
        thread.start()
        return resolver
    }

    /// Whether it answers; a silent resolver still receives, like a crashed DNS server
    /// behind a proxy that is still up.
    public var answering: Bool {
        get { state.withLock { $0.answering } }
        set { state.withLock { $0.answering = newValue } }
    }

    public func stop() {
        state.withLock { $0.running = false }
    }

    deinit { close(socket) }

    private func serve() {
        var buffer = [UInt8](repeating: 0, count: 1500)
        while state.withLock({ $0.running }) {
            var poller = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 200) > 0 else { continue }
            var peer = sockaddr_storage()
            var peerLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let count = withUnsafeMutablePointer(to: &peer) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(socket, &buffer, buffer.count, 0, $0, &peerLength) }
            }
            guard count >= 12, answering, let end = Self.questionEnd(buffer, count) else { continue }
            // The header with QR, RD and RA set and RCODE 0, and the question echoed.
            var answer = Array(buffer[0..<end])
            answer[2] = 0x81
            answer[3] = 0x80
            answer[6...11] = [0, 0, 0, 0, 0, 0][...]
            _ = withUnsafePointer(to: &peer) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(socket, answer, answer.count, 0, $0, peerLength) }
            }
        }
    }

    private static func questionEnd(_ bytes: [UInt8], _ count: Int) -> Int? {
        var index = 12
        while index < count, bytes[index] != 0 {
            guard bytes[index] & 0xC0 == 0 else { return nil }
            index += 1 + Int(bytes[index])
        }
        return index + 5 <= count ? index + 5 : nil
    }
}
