import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A credential an exec plugin printed (`ExecCredential.status`).
public struct ExecCredential: Sendable, Equatable {
    public var token: String?
    public var clientCertificatePEM: Data?
    public var clientKeyPEM: Data?
    /// nil: valid until the server says 401.
    public var expires: Date?
}

public struct ExecPluginError: Error, Sendable, Equatable, CustomStringConvertible {
    public var command: String
    public var reason: String
    public var description: String { "exec credential plugin \(command): \(reason)" }
}

/// Runs a kubeconfig `exec` credential plugin as client-go does: the kubeconfig's `env` on
/// top of ours, `KUBERNETES_EXEC_INFO` describing the request, stdout parsed as an
/// `ExecCredential` of the same apiVersion. Never interactive; bounded in time and output.
public enum ExecPlugin {
    public static let v1 = "client.authentication.k8s.io/v1"
    public static let v1beta1 = "client.authentication.k8s.io/v1beta1"
    public static let supportedVersions = [v1, v1beta1]
    static let maxOutput = 1 << 20

    /// `cluster` is the `spec.cluster` object sent with `provideClusterInfo: true`.
    public static func run(
        _ exec: Kubeconfig.ExecConfig, directory: String, cluster: [String: Any]?, timeout: Duration,
        now: Date = Date()
    ) throws(ExecPluginError) -> ExecCredential {
        let command = exec.command.contains("/") && !exec.command.hasPrefix("/")
            ? (directory as NSString).appendingPathComponent(exec.command) : exec.command
        var spec: [String: Any] = ["interactive": false]
        if exec.provideClusterInfo, let cluster { spec["cluster"] = cluster }
        let info = (try? JSONSerialization.data(withJSONObject: ["kind": "ExecCredential", "apiVersion": exec.apiVersion, "spec": spec], options: [.sortedKeys]))
            .map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        var environment = ProcessInfo.processInfo.environment
        for entry in exec.env { environment[entry.name] = entry.value }
        environment["KUBERNETES_EXEC_INFO"] = info
        let outcome: ChildOutcome
        do {
            outcome = try ChildProcess.run([command] + exec.args, environment: environment, timeout: timeout, maxOutput: maxOutput)
        } catch {
            throw ExecPluginError(command: exec.command, reason: error.description)
        }
        guard outcome.status == 0 else {
            let detail = String(decoding: outcome.stderr.prefix(512), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw ExecPluginError(command: exec.command, reason: "exited with status \(outcome.status)\(detail.isEmpty ? "" : ": \(detail)")")
        }
        return try parse(outcome.stdout, apiVersion: exec.apiVersion, command: exec.command)
    }

    static func parse(_ output: Data, apiVersion: String, command: String) throws(ExecPluginError) -> ExecCredential {
        func fail(_ reason: String) -> ExecPluginError { ExecPluginError(command: command, reason: reason) }
        guard let object = try? JSONSerialization.jsonObject(with: output) as? [String: Any] else {
            throw fail("printed something that is not an ExecCredential JSON object")
        }
        guard object["kind"] as? String == "ExecCredential" else { throw fail("printed kind \(object["kind"] ?? "nothing"), not ExecCredential") }
        guard object["apiVersion"] as? String == apiVersion else {
            throw fail("printed apiVersion \(object["apiVersion"] ?? "nothing"); the kubeconfig asks for \(apiVersion)")
        }
        guard let status = object["status"] as? [String: Any] else { throw fail("printed no status") }
        var credential = ExecCredential()
        if let token = status["token"] as? String, !token.isEmpty { credential.token = token }
        let certificate = (status["clientCertificateData"] as? String).flatMap { $0.isEmpty ? nil : $0 }
        let key = (status["clientKeyData"] as? String).flatMap { $0.isEmpty ? nil : $0 }
        switch (certificate, key) {
        case let (certificate?, key?):
            credential.clientCertificatePEM = Data(certificate.utf8)
            credential.clientKeyPEM = Data(key.utf8)
        case (nil, nil): break
        default: throw fail("printed clientCertificateData without clientKeyData, or the other way round")
        }
        guard credential.token != nil || credential.clientCertificatePEM != nil else {
            throw fail("printed neither a token nor a client certificate")
        }
        if let text = status["expirationTimestamp"] as? String {
            guard let date = ISO8601DateFormatter().date(from: text) ?? Self.fractional.date(from: text) else {
                throw fail("expirationTimestamp \(text) is not an RFC 3339 time")
            }
            credential.expires = date
        }
        return credential
    }

    nonisolated(unsafe) private static let fractional: ISO8601DateFormatter = {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter
    }()
}

struct ChildOutcome {
    var status: Int32
    var stdout: Data
    var stderr: Data
}

struct ChildError: Error, CustomStringConvertible {
    var description: String
}

/// A short-lived child process with its output captured, killed at a deadline. posix_spawn,
/// not Foundation's Process: this runs on whatever thread asks, and Process's monitor thread
/// has been seen to hang on children that close inherited descriptors.
enum ChildProcess {
    static func run(_ arguments: [String], environment: [String: String], timeout: Duration, maxOutput: Int) throws(ChildError) -> ChildOutcome {
        var out: [Int32] = [0, 0]
        var err: [Int32] = [0, 0]
        guard pipe(&out) == 0 else { throw ChildError(description: "pipe: \(String(cString: strerror(errno)))") }
        guard pipe(&err) == 0 else {
            close(out[0]); close(out[1])
            throw ChildError(description: "pipe: \(String(cString: strerror(errno)))")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, out[1], 1)
        posix_spawn_file_actions_adddup2(&actions, err[1], 2)
        for descriptor in [out[0], out[1], err[0], err[1]] { posix_spawn_file_actions_addclose(&actions, descriptor) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK))
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        // posix_spawnp: a bare command name is looked up in PATH, as client-go does.
        var spawned = posix_spawnp(&pid, arguments[0], &actions, &attributes, argv, envp)
        // ETXTBSY: a plugin file just written may still be open for writing in a child that
        // another thread forked meanwhile; that passes in moments (Go retries the same way).
        var busyRetries = 0
        while spawned == ETXTBSY && busyRetries < 50 {
            busyRetries += 1
            usleep(10_000)
            spawned = posix_spawnp(&pid, arguments[0], &actions, &attributes, argv, envp)
        }
        close(out[1])
        close(err[1])
        defer {
            close(out[0])
            close(err[0])
        }
        guard spawned == 0 else {
            throw ChildError(description: spawned == ENOENT ? "not found (is it installed and on PATH?)" : "cannot start: \(String(cString: strerror(spawned)))")
        }
        var stdout = Data()
        var stderr = Data()
        var open: [Int32] = [out[0], err[0]]
        let deadline = ContinuousClock.now + timeout
        var buffer = [UInt8](repeating: 0, count: 16384)
        var timedOut = false
        while !open.isEmpty {
            let left = deadline - ContinuousClock.now
            guard left > .zero else {
                timedOut = true
                break
            }
            var fds = open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            let ready = poll(&fds, nfds_t(fds.count), Int32(max(1, left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000)))
            if ready < 0 && errno != EINTR { break }
            for entry in fds where entry.revents != 0 {
                let count = read(entry.fd, &buffer, buffer.count)
                if count <= 0 {
                    open.removeAll { $0 == entry.fd }
                } else if entry.fd == out[0] {
                    stdout.append(contentsOf: buffer[0..<count])
                } else if stderr.count < 65536 {
                    stderr.append(contentsOf: buffer[0..<count])
                }
            }
            if stdout.count > maxOutput {
                kill(pid, SIGKILL)
                reap(pid)
                throw ChildError(description: "printed more than \(maxOutput >> 20) MiB")
            }
        }
        if timedOut {
            kill(pid, SIGKILL)
            reap(pid)
            throw ChildError(description: "did not finish within \(timeout.components.seconds) s (killed)")
        }
        // Output closed; the exit follows, but a child that closed its output and hangs is killed too.
        let status = reap(pid, until: deadline)
        return ChildOutcome(status: status, stdout: stdout, stderr: stderr)
    }

    @discardableResult
    private static func reap(_ pid: pid_t, until deadline: ContinuousClock.Instant? = nil) -> Int32 {
        var status: Int32 = 0
        while true {
            let result = waitpid(pid, &status, deadline == nil ? 0 : WNOHANG)
            if result == pid { break }
            if result < 0 && errno != EINTR { return -1 }
            if result == 0, let deadline {
                if ContinuousClock.now >= deadline {
                    kill(pid, SIGKILL)
                    return reap(pid)
                }
                usleep(2000)
            }
        }
        return (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
    }
}
