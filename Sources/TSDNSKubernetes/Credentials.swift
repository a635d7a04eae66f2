import Foundation
import Synchronization
import TSDNSConfig

/// What a request carries: a bearer token and/or a client certificate (from an exec plugin;
/// a kubeconfig's own certificate is in the TLS options already).
struct RequestCredential: Sendable, Equatable {
    var bearer: String?
    var clientCertificatePEM: Data?
    var clientKeyPEM: Data?
}

/// Hands out the current credential of one cluster. Token files are re-read at least once a
/// minute and after a 401, keeping the last good token when a re-read fails; an exec
/// plugin's credential is kept until its `expirationTimestamp` or a 401.
final class CredentialSource: Sendable {
    private struct Cached {
        var credential: RequestCredential
        var validUntil: Date?
    }

    private let auth: ClusterAccess.Auth
    private let execClusterInfo: [String: String]
    private let execTimeout: Duration
    private let now: @Sendable () -> Date
    private let cache = Mutex<Cached?>(nil)
    static let tokenFileLifetime: TimeInterval = 60

    init(access: ClusterAccess, execTimeout: Duration, now: @escaping @Sendable () -> Date) {
        auth = access.auth
        execClusterInfo = access.execClusterInfo
        self.execTimeout = execTimeout
        self.now = now
    }

    /// The credential for the next request; runs a plugin or reads a file when due.
    func current() throws(KubernetesError) -> RequestCredential {
        let date = now()
        if let cached = cache.withLock({ $0 }), cached.validUntil.map({ date < $0 }) ?? true {
            return cached.credential
        }
        let fresh: Cached
        switch auth {
        case .none:
            fresh = Cached(credential: RequestCredential(), validUntil: nil)
        case .token(let token):
            fresh = Cached(credential: RequestCredential(bearer: token), validUntil: nil)
        case .tokenFile(let path):
            do {
                let token = try Self.readToken(path)
                fresh = Cached(credential: RequestCredential(bearer: token), validUntil: date.addingTimeInterval(Self.tokenFileLifetime))
            } catch {
                // A rotation in progress, a file briefly missing: the last good token still works.
                if let last = cache.withLock({ $0 }) { return last.credential }
                throw error
            }
        case .exec(let exec, let directory):
            let credential: ExecCredential
            do {
                credential = try ExecPlugin.run(exec, directory: directory, cluster: execClusterInfo, timeout: execTimeout, now: date)
            } catch {
                throw .credential(error.description)
            }
            fresh = Cached(
                credential: RequestCredential(bearer: credential.token, clientCertificatePEM: credential.clientCertificatePEM, clientKeyPEM: credential.clientKeyPEM),
                validUntil: credential.expires
            )
        }
        cache.withLock { $0 = fresh }
        return fresh.credential
    }

    /// After a 401: the next request reads the file or runs the plugin again. Returns
    /// whether that can change anything (a token written in the kubeconfig cannot).
    @discardableResult
    func invalidate() -> Bool {
        switch auth {
        case .none, .token: return false
        case .tokenFile, .exec:
            cache.withLock { cached in
                if cached != nil { cached!.validUntil = .distantPast }
            }
            return true
        }
    }

    static func readToken(_ path: String) throws(KubernetesError) -> String {
        let bytes: [UInt8]
        do {
            bytes = try BoundedFile.read(path, limit: 64 << 10)
        } catch {
            throw .credential("cannot read the token file \(path): \(error)")
        }
        let token = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !token.isEmpty else { throw .credential("the token file \(path) is empty") }
        return token
    }
}
