import Foundation
import Synchronization
import Testing
import TSDNSCore

/// Teardowns still running (see `ProbeLab.teardown`).
private let pendingTeardowns = DispatchGroup()

/// A child process started with posix_spawn. Foundation's `Process` is not used here: a
/// daemon such as dnsmasq closes the descriptor Foundation watches, and Foundation's one
/// monitor thread then blocks in `waitpid` on it, so no other child is ever reaped.
final class Spawned: @unchecked Sendable {
    let pid: pid_t
    private var reaped = false

    /// `stdout`, `stderr`: files for the child's output (else /dev/null).
    init(_ arguments: [String], stdout: String? = nil, stderr: String? = nil) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, stdout ?? "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderr ?? "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // The test runner's threads may block signals; the child must not inherit that.
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK))
        let argv = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, arguments[0], &actions, &attributes, argv, environ)
        guard result == 0 else { throw HarnessError.timedOut("spawn \(arguments[0]): \(String(cString: strerror(result)))") }
        self.pid = pid
    }

    /// Runs a short command and returns what it printed.
    static func output(_ arguments: [String]) throws -> String {
        var pipe: [Int32] = [0, 0]
        guard Glibc.pipe(&pipe) == 0 else { throw HarnessError.timedOut("pipe") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, pipe[1], 1)
        posix_spawn_file_actions_addclose(&actions, pipe[0])
        let argv = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, arguments[0], &actions, nil, argv, environ)
        close(pipe[1])
        defer { close(pipe[0]) }
        guard result == 0 else { throw HarnessError.timedOut("spawn \(arguments[0])") }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = read(pipe[0], &buffer, buffer.count)
            if count <= 0 { break }
            bytes += buffer[0..<count]
        }
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Waits for the exit without holding a thread of the test runner's small pool.
    func exitStatus() async -> Int32 {
        while !reaped {
            var status: Int32 = 0
            let result = waitpid(pid, &status, WNOHANG)
            if result == pid {
                reaped = true
                return (status & 0x7F) == 0 ? (status >> 8) & 0xFF : -1
            }
            if result < 0 && errno != EINTR { return -1 }
            try? await Task.sleep(for: .milliseconds(2))
        }
        return -1
    }

    /// Waits for the exit; the status, or -1.
    @discardableResult
    func wait() -> Int32 {
        guard !reaped else { return -1 }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        reaped = true
        return (status & 0x7F) == 0 ? (status >> 8) & 0xFF : -1
    }

    func kill() {
        guard !reaped else { return }
        Glibc.kill(pid, SIGKILL)
        wait()
    }
}

/// Real DNS servers for probe tests: Debian's dnsmasq, and a small Python stub for the
/// misbehaviours dnsmasq will not show (SERVFAIL, silence, a wrong ID, truncation). As
/// root they run inside a network namespace of the test's own, on Tailscale-range
/// addresses behind a veth pair; otherwise on loopback addresses, and the test says so.
final class ProbeLab: @unchecked Sendable {
    enum Server: Sendable {
        case dnsmasq
        case stub(String)  // servfail | silent | wrongid | truncate
    }

    private static let slots = Mutex(0)
    let namespace: String?
    /// The address the test's own end of the veth has (or 127.0.0.1).
    let hostAddress: String
    let port: Int
    private let prefix: String
    private var next = 2
    private var processes: [Spawned] = []
    private var byAddress: [IPAddress: Spawned] = [:]
    private let directory: URL

    /// A lab with its own addresses; `teardown()` removes it, also when the test failed.
    static func make() async throws -> ProbeLab {
        let slot = Self.slots.withLock { slot -> Int in
            defer { slot += 1 }
            return slot
        }
        let name = "tsdns\(getpid() % 100_000)p\(slot)"
        // 100.64.240.0/20 in /28 pieces: one per lab, .1 the host side.
        let base = 16 * (slot % 256)
        let third = 240 + base / 256
        let fourth = base % 256
        await staleNamespacesRemoved.value
        if getuid() == 0, await run(["ip", "netns", "add", name]) {
            let host = "\(name)h", inner = "\(name)n"
            var ok = true
            for command in [
                ["ip", "link", "add", host, "type", "veth", "peer", "name", inner],
                ["ip", "link", "set", inner, "netns", name],
                ["ip", "addr", "add", "100.64.\(third).\(fourth + 1)/28", "dev", host],
                ["ip", "link", "set", host, "up"],
                ["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
                ["ip", "netns", "exec", name, "ip", "link", "set", inner, "up"],
            ] where ok {
                ok = await run(command)
            }
            if ok {
                return try ProbeLab(namespace: name, hostAddress: "100.64.\(third).\(fourth + 1)", prefix: "100.64.\(third).\(fourth)", port: 53)
            }
            _ = await run(["ip", "netns", "del", name])
            _ = await run(["ip", "link", "del", host])
        }
        print("ProbeLab: network namespaces are not available (not root?); using loopback addresses")
        return try ProbeLab(namespace: nil, hostAddress: "127.0.0.1", prefix: "127.0.\(10 + slot % 200).0", port: 15353)
    }

    private init(namespace: String?, hostAddress: String, prefix: String, port: Int) throws {
        self.namespace = namespace
        self.hostAddress = hostAddress
        self.prefix = prefix
        self.port = port
        directory = try scratchDirectory()
    }

    /// Starts a server on a fresh address of the lab and returns that address once it
    /// answers (or, for the silent stub, once it listens).
    func start(_ server: Server) async throws -> IPAddress {
        let parts = prefix.split(separator: ".")
        let address = "\(parts[0]).\(parts[1]).\(parts[2]).\(Int(parts[3])! + next)"
        next += 1
        return try await start(server, at: address, fresh: true)
    }

    /// Starts a server again where one was stopped.
    func restart(_ server: Server, at address: IPAddress) async throws {
        _ = try await start(server, at: address.description, fresh: false)
    }

    /// The address a simulated tailnet device gets for a lab address: the same one in a
    /// namespace (a Tailscale address); on loopback a Tailscale address that `endpoint`
    /// maps back, since only Tailscale addresses are taken from devices.
    func tailnetAddress(_ labAddress: IPAddress) -> String {
        guard namespace == nil else { return labAddress.description }
        return "100.64.239.\(labAddress.bytes[3])"
    }

    /// For `Daemon(probeEndpoint:)`: where a device address is reached.
    var endpoint: @Sendable (IPAddress) -> (IPAddress, Int) {
        let (inNamespace, prefix, port) = (namespace != nil, prefix, port)
        return { address in
            guard !inNamespace, address.bytes.count == 4 else { return (address, port) }
            let parts = prefix.split(separator: ".")
            return (IPAddress("\(parts[0]).\(parts[1]).\(parts[2]).\(address.bytes[3])")!, port)
        }
    }

    private func start(_ server: Server, at address: String, fresh: Bool) async throws -> IPAddress {
        if let namespace, fresh {
            let inner = "\(namespace)n"
            guard await Self.run(["ip", "netns", "exec", namespace, "ip", "addr", "add", "\(address)/28", "dev", inner]) else {
                throw HarnessError.timedOut("address \(address) in \(namespace)")
            }
        }
        let ready = directory.appendingPathComponent("ready-\(address)")
        var command: [String]
        switch server {
        case .dnsmasq:
            command = [
                "/usr/sbin/dnsmasq", "-k", "--no-resolv", "--no-hosts", "--conf-file=/dev/null", "--port", "\(port)",
                "--listen-address", address, "--bind-interfaces", "--address=/probe.test/1.2.3.4", "--local=/nx.test/",
                "--pid-file=\(directory.appendingPathComponent("dnsmasq-\(address).pid").path)",
            ]
        case .stub(let mode):
            let script = directory.appendingPathComponent("stub.py")
            if !FileManager.default.fileExists(atPath: script.path) { try write(Self.stub, to: script) }
            command = ["/usr/bin/python3", script.path, address, "\(port)", mode, ready.path]
        }
        if let namespace { command = ["/usr/sbin/ip", "netns", "exec", namespace] + command }
        let process = try Spawned(command)
        processes.append(process)
        guard let ip = IPAddress(address) else { throw HarnessError.timedOut("address") }
        byAddress[ip] = process
        switch server {
        case .dnsmasq:
            try await eventually("dnsmasq answers on \(address)") { await Self.answers(address, self.port) }
        case .stub:
            try await eventually("the stub listens on \(address)") { FileManager.default.fileExists(atPath: ready.path) }
        }
        return ip
    }

    /// A fresh address of the lab where nothing listens.
    func unusedAddress() async throws -> IPAddress {
        let parts = prefix.split(separator: ".")
        let address = "\(parts[0]).\(parts[1]).\(parts[2]).\(Int(parts[3])! + next)"
        next += 1
        if let namespace {
            _ = await Self.run(["ip", "netns", "exec", namespace, "ip", "addr", "add", "\(address)/28", "dev", "\(namespace)n"])
        }
        return IPAddress(address)!
    }

    /// Stops the server on `address` (it stays there, silent... or refusing: nothing listens).
    func stop(_ address: IPAddress) {
        byAddress.removeValue(forKey: address)?.kill()
    }

    /// Kills the servers and removes the namespace on a thread of its own: deleting a
    /// namespace can take a while, and the test runner's few threads must not wait for it.
    /// The test process waits for every teardown before it exits.
    func teardown() {
        let (processes, namespace, directory) = (processes, namespace, directory)
        _ = Self.installExitWait
        pendingTeardowns.enter()
        let thread = Thread {
            defer { pendingTeardowns.leave() }
            for process in processes { process.kill() }
            if let namespace {
                for command in [["ip", "netns", "del", namespace], ["ip", "link", "del", "\(namespace)h"]] {
                    (try? Spawned(["/usr/bin/env", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"] + command))?.wait()
                }
            }
            try? FileManager.default.removeItem(at: directory)
        }
        thread.start()
    }

    /// Once per process: exit waits (up to 20 s) for teardowns still running.
    private static let installExitWait: Void = {
        atexit { _ = pendingTeardowns.wait(timeout: .now() + 20) }
    }()

    /// Every lab waits for this before it takes addresses.
    private static let staleNamespacesRemoved = Task { await removeStaleNamespaces() }

    /// Namespaces a test process that is gone left behind (killed before its teardown):
    /// removed before a lab takes addresses that theirs may still hold.
    static func removeStaleNamespaces() async {
        guard let list = try? Spawned.output(["/usr/sbin/ip", "netns", "list"]) else { return }
        for line in list.split(separator: "\n") {
            let name = String(line.split(separator: " ").first ?? "")
            guard name.hasPrefix("tsdns"), let p = name.dropFirst(5).split(separator: "p").first, let pid = Int32(p),
                  pid != getpid(), kill(pid, 0) != 0 else { continue }
            _ = await run(["ip", "netns", "del", name])
            _ = await run(["ip", "link", "del", "\(name)h"])
        }
    }

    static func run(_ arguments: [String]) async -> Bool {
        guard let process = try? Spawned(["/usr/bin/env", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"] + arguments) else { return false }
        return await process.exitStatus() == 0
    }

    /// One query, waited for at most 200 ms without blocking a thread: is a server there yet?
    static func answers(_ address: String, _ port: Int) async -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        defer { close(fd) }
        var target = sockaddr_in()
        target.sin_family = sa_family_t(AF_INET)
        target.sin_port = in_port_t(UInt16(port).bigEndian)
        target.sin_addr.s_addr = inet_addr(address)
        let query: [UInt8] = [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0x61, 5] + Array("probe".utf8) + [4] + Array("test".utf8) + [0, 0, 1, 0, 1]
        let sent = withUnsafePointer(to: &target) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, query, query.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard sent > 0 else { return false }
        var buffer = [UInt8](repeating: 0, count: 512)
        for _ in 0..<10 {
            if recv(fd, &buffer, buffer.count, 0) > 0 { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return false
    }

    /// The stub: `stub.py ADDRESS PORT MODE READYFILE`, UDP and TCP on ADDRESS:PORT.
    static let stub = #"""
    import socket, struct, sys, threading, time
    address, port, mode, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

    def question_end(q):
        i = 12
        while q[i] != 0:
            i += 1 + q[i]
        return i + 5

    def reply(q, rcode, tc=False, ident=None):
        ident = struct.unpack(">H", q[:2])[0] if ident is None else ident
        flags = 0x8180 | rcode | (0x0200 if tc else 0)
        return struct.pack(">HHHHHH", ident, flags, 1, 0, 0, 0) + q[12:question_end(q)]

    def answer_udp(q, peer, s):
        if mode == "silent":
            return
        if mode == "servfail":
            s.sendto(reply(q, 2), peer)
        elif mode == "wrongid":
            wrong = struct.unpack(">H", q[:2])[0] ^ 0x5555
            s.sendto(reply(q, 2, ident=wrong), peer)  # a stray SERVFAIL for someone else
            s.sendto(b"\x00", peer)                     # and noise
            time.sleep(0.05)
            s.sendto(reply(q, 0), peer)
        elif mode == "truncate":
            s.sendto(reply(q, 2, tc=True), peer)        # only TCP gets the real answer

    def serve_udp():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((address, port))
        while True:
            q, peer = s.recvfrom(4096)
            threading.Thread(target=answer_udp, args=(q, peer, s), daemon=True).start()

    def serve_tcp_client(c):
        try:
            data = b""
            while len(data) < 2:
                data += c.recv(2 - len(data))
            n = struct.unpack(">H", data)[0]
            q = b""
            while len(q) < n:
                q += c.recv(n - len(q))
            if mode == "silent":
                time.sleep(60)
                return
            r = reply(q, 2 if mode == "servfail" else 0)
            c.sendall(struct.pack(">H", len(r)) + r)
        finally:
            c.close()

    def serve_tcp():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((address, port))
        s.listen(64)
        while True:
            c, _ = s.accept()
            threading.Thread(target=serve_tcp_client, args=(c,), daemon=True).start()

    threading.Thread(target=serve_udp, daemon=True).start()
    threading.Thread(target=serve_tcp, daemon=True).start()
    time.sleep(0.2)
    open(ready, "w").close()
    while True:
        time.sleep(3600)
    """#
}
