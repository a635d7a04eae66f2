import Foundation
import Synchronization
import TSDNSCore
#if canImport(Glibc)
import Glibc
#endif

/// What one probe found.
public enum ProbeOutcome: Sendable, Equatable {
    /// An answer with RCODE NOERROR or NXDOMAIN: the resolver works.
    case ok
    case timeout
    case servfail
    /// RCODE REFUSED, a refused connection, or an ICMP port-unreachable.
    case refused(String)
    /// Anything else: another RCODE, a malformed answer, a proxy that failed.
    case error(String)

    /// The `result` label of `tsdns_probe_total`.
    public var label: String {
        switch self {
        case .ok: return "ok"
        case .timeout: return "timeout"
        case .servfail: return "servfail"
        case .refused: return "refused"
        case .error: return "error"
        }
    }
}

public struct ProbeResult: Sendable, Equatable {
    public var address: IPAddress
    public var outcome: ProbeOutcome
    /// From the first byte sent to the answer (nil without one).
    public var roundTrip: Duration?
    /// How long the probe was given, for the reason of a timeout.
    public var timeout: Duration
    /// It timed out with less than the full timeout, because the batch's deadline came
    /// first (more silent resolvers than `concurrency`): no verdict on this resolver.
    public var cutShort = false

    public var passed: Bool { outcome == .ok }

    /// What a plan says about a failure: `dns probe: timeout after 2s`.
    public var reason: String {
        switch outcome {
        case .ok: return "dns probe: ok"
        case .timeout: return "dns probe: timeout after \(DurationText.format(timeout))"
        case .servfail: return "dns probe: SERVFAIL"
        case .refused(let why): return "dns probe: \(why)"
        case .error(let why): return "dns probe: \(why)"
        }
    }
}

/// `healthcheck.dns`: what to ask, how, and through what.
public struct ProbeSettings: Sendable, Equatable {
    public enum Transport: Sendable, Equatable { case udp, tcp }

    public var name: String
    public var type: DNSMessage.QueryType
    public var port: Int
    public var timeout: Duration
    public var transport: Transport
    /// DNS over TCP through this SOCKS5 proxy (tailscaled in userspace mode offers one).
    public var proxy: SOCKS5Proxy?
    public var concurrency: Int
    public var edns: Bool

    public init(
        name: String = ".", type: DNSMessage.QueryType = .NS, port: Int = 53, timeout: Duration = .seconds(2),
        transport: Transport = .udp, proxy: SOCKS5Proxy? = nil, concurrency: Int = 32, edns: Bool = true
    ) {
        self.name = name
        self.type = type
        self.port = port
        self.timeout = timeout
        self.transport = transport
        self.proxy = proxy
        self.concurrency = concurrency
        self.edns = edns
    }
}

/// Sends the configured query to each resolver address and judges the answer (README
/// "DNS probe"). A batch runs on a thread of its own with non-blocking sockets and `poll`,
/// never on Swift concurrency's cooperative pool. At most `concurrency` probes are in
/// flight; every probe ends by the batch deadline (`timeout` plus a small margin after the
/// batch started), so 500 silent resolvers cost one timeout, not 500.
public struct DNSProber: Sendable {
    public let settings: ProbeSettings
    /// Where a resolver address is reached; tests and the demo point tailnet addresses at
    /// local servers. nil = the address itself on `settings.port`.
    let endpoint: (@Sendable (IPAddress) -> (IPAddress, Int))?
    static let margin = Duration.milliseconds(200)

    public init(settings: ProbeSettings, endpoint: (@Sendable (IPAddress) -> (IPAddress, Int))? = nil) {
        self.settings = settings
        self.endpoint = endpoint
    }

    /// Cancelling the calling task ends the batch within about 100 ms (a shutdown does not
    /// wait for a timeout); what had not answered then is a timeout cut short.
    public func probe(_ addresses: [IPAddress]) async -> [ProbeResult] {
        guard !addresses.isEmpty else { return [] }
        let settings = settings
        let endpoint = endpoint
        let cancelled = CancelFlag()
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let thread = Thread {
                    let batch = ProbeBatch(settings: settings, endpoint: endpoint, addresses: addresses, cancelled: cancelled)
                    continuation.resume(returning: batch.run())
                }
                thread.name = "tsdns-dns-probe"
                thread.start()
            }
        } onCancel: {
            cancelled.set()
        }
    }
}

final class CancelFlag: Sendable {
    private let flag = Mutex(false)
    func set() { flag.withLock { $0 = true } }
    var isSet: Bool { flag.withLock { $0 } }
}

/// One batch on its thread. Not Sendable: it lives and dies on that thread.
final class ProbeBatch {
    let settings: ProbeSettings
    let addresses: [IPAddress]
    let endpoint: ((IPAddress) -> (IPAddress, Int))?
    let cancelled: CancelFlag
    let clock = ContinuousClock()

    init(settings: ProbeSettings, endpoint: ((IPAddress) -> (IPAddress, Int))?, addresses: [IPAddress], cancelled: CancelFlag) {
        self.settings = settings
        self.endpoint = endpoint
        self.addresses = addresses
        self.cancelled = cancelled
    }

    func run() -> [ProbeResult] {
        let start = clock.now
        let batchDeadline = start + settings.timeout + DNSProber.margin
        var results = [ProbeResult?](repeating: nil, count: addresses.count)
        let name: [UInt8]
        do {
            name = try DNSMessage.encodeName(settings.name)
        } catch {
            return addresses.map { ProbeResult(address: $0, outcome: .error("query name \"\(settings.name)\" is not valid"), roundTrip: nil, timeout: settings.timeout) }
        }
        var next = 0
        var active: [Probe] = []
        while next < addresses.count || !active.isEmpty {
            let now = clock.now
            let stop = cancelled.isSet
            for probe in active where probe.outcome == nil && (now >= probe.deadline || stop) { probe.finish(.timeout, at: now) }
            if stop { next = addresses.count }
            var finished: [Probe] = []
            active.removeAll { probe in
                guard probe.outcome != nil else { return false }
                finished.append(probe)
                return true
            }
            for probe in finished {
                let given = min(now, probe.deadline) - probe.started
                results[probe.index] = ProbeResult(
                    address: addresses[probe.index], outcome: probe.outcome ?? .timeout, roundTrip: probe.roundTrip,
                    timeout: settings.timeout, cutShort: probe.outcome == .timeout && given < settings.timeout
                )
                probe.close()
            }
            // Then fill the freed places; each probe ends by its own timeout or the batch's.
            while active.count < max(1, settings.concurrency), next < addresses.count {
                let now = clock.now
                let target = endpoint?(addresses[next]) ?? (addresses[next], settings.port)
                let probe = Probe(
                    index: next, target: target.0, port: target.1, settings: settings, name: name,
                    started: now, deadline: min(now + settings.timeout, batchDeadline)
                )
                probe.begin()
                active.append(probe)
                next += 1
            }
            guard !active.isEmpty else { continue }
            var fds = active.map { pollfd(fd: $0.fd, events: $0.events, revents: 0) }
            let soonest = active.map(\.deadline).min()!
            let wait = max(.zero, soonest - clock.now)
            // A probe that ended while starting is collected at once, not after a wait.
            let milliseconds = active.contains { $0.outcome != nil } ? 0 : Int32(min(100, max(1, (wait.seconds * 1000).rounded(.up))))
            let ready = poll(&fds, nfds_t(fds.count), milliseconds)
            guard ready > 0 else { continue }
            for (index, entry) in fds.enumerated() where entry.revents != 0 {
                active[index].ready(entry.revents, at: clock.now)
            }
        }
        return results.enumerated().map { index, result in
            result ?? ProbeResult(address: addresses[index], outcome: .timeout, roundTrip: nil, timeout: settings.timeout, cutShort: true)
        }
    }
}

/// One probe's conversation: UDP (falling back to TCP on a truncated answer), TCP, or
/// TCP through a SOCKS5 proxy, as a small state machine over a non-blocking socket.
final class Probe {
    let index: Int
    let target: IPAddress
    let port: Int
    let settings: ProbeSettings
    let name: [UInt8]
    let id = UInt16.random(in: 0...UInt16.max)
    let started: ContinuousClock.Instant
    let deadline: ContinuousClock.Instant
    private(set) var fd: Int32 = -1
    private(set) var outcome: ProbeOutcome?
    private(set) var roundTrip: Duration?

    /// TCP: bytes still to send, and how many to read before `onRead` is called.
    private var outgoing: [UInt8] = []
    private var incoming: [UInt8] = []
    private var expecting = 0
    private var onRead: (([UInt8]) -> Void)?
    private var connecting = false
    private var udp = false

    init(index: Int, target: IPAddress, port: Int, settings: ProbeSettings, name: [UInt8], started: ContinuousClock.Instant, deadline: ContinuousClock.Instant) {
        self.index = index
        self.target = target
        self.port = port
        self.settings = settings
        self.name = name
        self.started = started
        self.deadline = deadline
    }

    var query: [UInt8] { DNSMessage.query(id: id, name: name, type: settings.type, edns: settings.edns) }

    var events: Int16 {
        if udp { return Int16(POLLIN) }
        return Int16(connecting || !outgoing.isEmpty ? POLLOUT : POLLIN)
    }

    func finish(_ result: ProbeOutcome, at now: ContinuousClock.Instant) {
        guard outcome == nil else { return }
        outcome = result
        if result != .timeout, roundTrip == nil { roundTrip = now - started }
    }

    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    func begin() {
        if let proxy = settings.proxy {
            beginTCP(to: proxy.address, port: proxy.port) { self.socksGreeting(proxy) }
        } else if settings.transport == .tcp {
            beginTCP(to: target, port: port) { self.sendDNSOverTCP() }
        } else {
            beginUDP()
        }
    }

    // MARK: UDP

    private func beginUDP() {
        udp = true
        fd = Socket.open(target, type: SOCK_DGRAM)
        guard fd >= 0 else { return finish(.error("socket: \(Socket.lastError)"), at: .now) }
        // Connected, so an ICMP port-unreachable comes back as ECONNREFUSED.
        guard Socket.connect(fd, target, port) == 0 || errno == EINPROGRESS else {
            return finish(Socket.failure("connect"), at: .now)
        }
        let message = query
        let sent = message.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if sent < 0 { finish(Socket.failure("send"), at: .now) }
    }

    private func readDatagram(at now: ContinuousClock.Instant) {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while outcome == nil {
            let count = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            if count < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return }
                return finish(Socket.failure("recv"), at: now)
            }
            let datagram = Array(buffer[0..<count])
            // Another query's answer, or noise: not ours, keep waiting.
            guard DNSMessage.identifier(datagram) == id else { continue }
            guard let answer = try? DNSMessage.parseAnswer(datagram) else {
                return finish(.error("malformed answer"), at: now)
            }
            guard DNSMessage.matches(answer, id: id, name: name, type: settings.type) else { continue }
            if answer.truncated {
                // Too large for UDP: ask again over TCP, within the same deadline.
                close()
                udp = false
                return beginTCP(to: target, port: port) { self.sendDNSOverTCP() }
            }
            return finish(Self.judge(answer.rcode), at: now)
        }
    }

    static func judge(_ rcode: UInt8) -> ProbeOutcome {
        switch rcode {
        case 0, 3: return .ok  // NOERROR, NXDOMAIN
        case 2: return .servfail
        case 5: return .refused("REFUSED")
        default: return .error("RCODE \(rcode)")
        }
    }

    // MARK: TCP

    private var afterConnect: (() -> Void)?

    private func beginTCP(to address: IPAddress, port: Int, then: @escaping () -> Void) {
        fd = Socket.open(address, type: SOCK_STREAM)
        guard fd >= 0 else { return finish(.error("socket: \(Socket.lastError)"), at: .now) }
        afterConnect = then
        if Socket.connect(fd, address, port) == 0 {
            then()
        } else if errno == EINPROGRESS {
            connecting = true
        } else {
            finish(Socket.failure("connect"), at: .now)
        }
    }

    /// Sends `bytes`, then calls `handler` with the next `count` bytes read.
    private func exchange(_ bytes: [UInt8], expect count: Int, _ handler: @escaping ([UInt8]) -> Void) {
        outgoing += bytes
        expect(count, handler)
    }

    private func expect(_ count: Int, _ handler: @escaping ([UInt8]) -> Void) {
        expecting = count
        onRead = handler
        deliverIfComplete()
    }

    private func deliverIfComplete() {
        guard let handler = onRead, incoming.count >= expecting else { return }
        let chunk = Array(incoming.prefix(expecting))
        incoming.removeFirst(expecting)
        onRead = nil
        handler(chunk)
    }

    private func sendDNSOverTCP() {
        let message = query
        var framed: [UInt8] = []
        DNSMessage.append16(&framed, UInt16(message.count))
        exchange(framed + message, expect: 2) { length in
            let size = Int(DNSMessage.read16(length, 0))
            guard size >= 12 else { return self.finish(.error("malformed answer"), at: .now) }
            self.expect(size) { body in
                guard let answer = try? DNSMessage.parseAnswer(body) else { return self.finish(.error("malformed answer"), at: .now) }
                guard DNSMessage.matches(answer, id: self.id, name: self.name, type: self.settings.type) else {
                    return self.finish(.error("the answer does not match the question"), at: .now)
                }
                self.finish(Self.judge(answer.rcode), at: .now)
            }
        }
    }

    // MARK: SOCKS5 (RFC 1928, RFC 1929)

    private func socksGreeting(_ proxy: SOCKS5Proxy) {
        exchange(SOCKS5.greeting(withPassword: proxy.username != nil), expect: 2) { reply in
            switch SOCKS5.chosenMethod(reply) {
            case .noAuthentication:
                self.socksConnect()
            case .password:
                guard let username = proxy.username, let password = proxy.password else {
                    return self.finish(.error("socks5 proxy wants a username and password"), at: .now)
                }
                self.exchange(SOCKS5.passwordRequest(username: username, password: password), expect: 2) { status in
                    guard status == [0x01, 0x00] else { return self.finish(.error("socks5 proxy refused the username and password"), at: .now) }
                    self.socksConnect()
                }
            case .none:
                self.finish(.error("socks5 proxy accepts none of our authentication methods"), at: .now)
            }
        }
    }

    private func socksConnect() {
        exchange(SOCKS5.connectRequest(target, port: port), expect: 5) { head in
            guard head[0] == 0x05 else { return self.finish(.error("socks5 proxy sent a malformed reply"), at: .now) }
            guard head[1] == 0x00 else {
                let why = SOCKS5.replyText(head[1])
                return self.finish(head[1] == 0x05 ? .refused("connection refused (via socks5)") : .error("socks5 proxy: \(why)"), at: .now)
            }
            // The bound address: 4 or 16 bytes, or a name whose length is the fifth byte; then the port.
            let rest: Int
            switch head[3] {
            case 0x01: rest = 4 - 1 + 2
            case 0x04: rest = 16 - 1 + 2
            case 0x03: rest = Int(head[4]) + 2
            default: return self.finish(.error("socks5 proxy sent a malformed reply"), at: .now)
            }
            self.expect(rest) { _ in self.sendDNSOverTCP() }
        }
    }

    // MARK: Readiness

    func ready(_ revents: Int16, at now: ContinuousClock.Instant) {
        guard outcome == nil else { return }
        if udp {
            if revents & Int16(POLLIN | POLLERR) != 0 { readDatagram(at: now) }
            return
        }
        if connecting {
            connecting = false
            let error = Socket.pendingError(fd)
            guard error == 0 else {
                errno = error
                return finish(Socket.failure("connect"), at: now)
            }
            afterConnect?()
            afterConnect = nil
            return
        }
        if !outgoing.isEmpty, revents & Int16(POLLOUT) != 0 {
            let sent = outgoing.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if sent < 0 {
                if errno == EAGAIN || errno == EINTR { return }
                return finish(Socket.failure("send"), at: now)
            }
            outgoing.removeFirst(sent)
            return
        }
        if revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            if count < 0 {
                if errno == EAGAIN || errno == EINTR { return }
                return finish(Socket.failure("recv"), at: now)
            }
            if count == 0 { return finish(.error("the connection closed before an answer"), at: now) }
            incoming += buffer[0..<count]
            deliverIfComplete()
        }
    }
}

/// The few socket calls the probe makes, for both address families.
enum Socket {
    static var lastError: String { String(cString: strerror(errno)) }

    static func open(_ address: IPAddress, type: __socket_type) -> Int32 {
        socket(address.isIPv4 ? AF_INET : AF_INET6, Int32(type.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    }

    static func connect(_ fd: Int32, _ address: IPAddress, _ port: Int) -> Int32 {
        if address.isIPv4 {
            var socketAddress = sockaddr_in()
            socketAddress.sin_family = sa_family_t(AF_INET)
            socketAddress.sin_port = in_port_t(UInt16(port).bigEndian)
            withUnsafeMutableBytes(of: &socketAddress.sin_addr) { $0.copyBytes(from: address.bytes) }
            return withUnsafePointer(to: &socketAddress) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        }
        var socketAddress = sockaddr_in6()
        socketAddress.sin6_family = sa_family_t(AF_INET6)
        socketAddress.sin6_port = in_port_t(UInt16(port).bigEndian)
        withUnsafeMutableBytes(of: &socketAddress.sin6_addr) { $0.copyBytes(from: address.bytes) }
        return withUnsafePointer(to: &socketAddress) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
        }
    }

    static func pendingError(_ fd: Int32) -> Int32 {
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
        return error
    }

    /// `errno` as an outcome: a refused connection or port is `refused`, the rest `error`.
    static func failure(_ what: String) -> ProbeOutcome {
        let code = errno
        if code == ECONNREFUSED { return .refused("connection refused") }
        return .error("\(what): \(String(cString: strerror(code)))")
    }
}
