import Foundation
import TSDNSCore

/// A config with its secrets and environment fallbacks resolved, ready to run.
public struct ResolvedConfig: Sendable {
    public var config: Config
    public var file: String
    public var tailnet: String
    public var apiURL: String
    /// nil only where the command needs none (`watch`, `validate` of a watch config).
    public var credential: Credential?
    /// What the config asks for that this build does not do; printed by `validate` and `run`.
    public var warnings: [String] = []
}

/// Reads the config file, then everything it points to: secret files, referenced files and
/// the documented environment variables. A config key wins over its variable.
public struct ConfigLoader: Sendable {
    public static let defaultPath = "/etc/tsdns-reconcile/config.yaml"
    public static let defaultAPIURL = "https://api.tailscale.com"
    /// A config file larger than this is refused unread.
    public static let maxConfigSize = 1 << 20
    /// Secrets and tokens are short; a larger file is a mistake.
    public static let maxSecretSize = 64 * 1024

    public var environment: [String: String]

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.environment = environment
    }

    /// `--config`, then `$TSDNS_CONFIG`, then the default path.
    public func path(_ flag: String?) -> String {
        flag ?? environment["TSDNS_CONFIG"].flatMap { $0.isEmpty ? nil : $0 } ?? Self.defaultPath
    }

    public enum Purpose: Sendable {
        /// `run`: Tailscale credentials are required.
        case reconcile
        /// `validate`: credentials are required unless the file is written for `watch`
        /// (it sets `watch.server`), which needs none.
        case validate
        /// `watch`: needs no Tailscale credentials, only the `kubernetes` and `watch` keys.
        case watch
    }

    public func load(path: String, for purpose: Purpose) throws(ConfigError) -> ResolvedConfig {
        let text: String
        do {
            let bytes = try BoundedFile.read(path, limit: Self.maxConfigSize)
            switch BoundedFile.text(bytes) {
            case .success(let decoded): text = decoded
            case .failure(let invalid):
                throw ConfigError([ConfigIssue(file: path, line: nil, path: "", message: "the file is not UTF-8 text (byte \(invalid.offset))")])
            }
        } catch let failure as BoundedFile.Failure {
            throw ConfigError([ConfigIssue(file: path, line: nil, path: "", message: "cannot read the config file: \(failure)")])
        } catch let error as ConfigError {
            throw error
        } catch {
            throw ConfigError([ConfigIssue(file: path, line: nil, path: "", message: "cannot read the config file: \(error)")])
        }
        let parsed = try ConfigParser.parse(text, file: path)
        var issues: [ConfigIssue] = []
        let config = parsed.config

        // Secret files are checked where they are read, in resolveCredential; token files
        // are read the same way, so an empty one is refused here and not by every request.
        for case let (key, file?) in [("rpc.tokenFile", config.rpc.tokenFile), ("watch.tokenFile", config.watch.tokenFile)] {
            do {
                _ = try readSecret(file, key: key, parsed)
            } catch {
                issues.append(error.issue)
            }
        }
        for (index, cluster) in config.clusters.enumerated() {
            if let file = cluster.kubeconfig, !FileManager.default.isReadableFile(atPath: file) {
                issues.append(parsed.issue("kubernetes.clusters[\(index)].kubeconfig", "file \(ConfigIssue.quote(file)) does not exist or is not readable"))
            }
        }
        let warnings: [String] = []
        let needsCredential = purpose == .reconcile || (purpose == .validate && config.watch.server == nil)
        var credential: Credential?
        if purpose != .watch {
            do {
                credential = try resolveCredential(parsed)
            } catch {
                if needsCredential || error.isFromFile { issues.append(error.issue) }
            }
        }
        if needsCredential && credential == nil && issues.isEmpty {
            issues.append(parsed.issue(
                "tailscale",
                "no Tailscale credential: set tailscale.apiKeyFile or tailscale.oauth, or TAILSCALE_API_KEY or TAILSCALE_OAUTH_CLIENT_ID and TAILSCALE_OAUTH_CLIENT_SECRET"
            ))
        }
        let environmentURL = nonEmpty("TAILSCALE_BASE_URL")
        if config.tailscale.apiURL == nil, let url = environmentURL, !(url.hasPrefix("https://") || url.hasPrefix("http://")) {
            issues.append(ConfigIssue(file: path, line: nil, path: "tailscale.apiURL", message: "TAILSCALE_BASE_URL \"\(url)\" is not an http(s) URL"))
        }
        if !issues.isEmpty { throw ConfigError(issues) }
        return ResolvedConfig(
            config: config,
            file: path,
            tailnet: config.tailscale.tailnet ?? nonEmpty("TAILSCALE_TAILNET") ?? "-",
            apiURL: config.tailscale.apiURL ?? nonEmpty("TAILSCALE_BASE_URL") ?? Self.defaultAPIURL,
            credential: credential,
            warnings: warnings
        )
    }

    private struct CredentialIssue: Error {
        var issue: ConfigIssue
        var isFromFile: Bool
    }

    /// Exactly one kind: an API key or an OAuth client, from the config or else the environment.
    private func resolveCredential(_ parsed: ParsedConfig) throws(CredentialIssue) -> Credential? {
        let settings = parsed.config.tailscale
        if let file = settings.apiKeyFile {
            return .apiKey(try readSecret(file, key: "tailscale.apiKeyFile", parsed))
        }
        if let oauth = settings.oauth {
            guard let clientID = oauth.clientID ?? nonEmpty("TAILSCALE_OAUTH_CLIENT_ID") else {
                throw CredentialIssue(issue: parsed.issue("tailscale.oauth.clientID", "is required (or set TAILSCALE_OAUTH_CLIENT_ID)"), isFromFile: true)
            }
            let secret: String
            if let file = oauth.clientSecretFile {
                secret = try readSecret(file, key: "tailscale.oauth.clientSecretFile", parsed)
            } else if let value = nonEmpty("TAILSCALE_OAUTH_CLIENT_SECRET") {
                secret = value.trimmingCharacters(in: .whitespacesAndNewlines)
            } else {
                throw CredentialIssue(issue: parsed.issue("tailscale.oauth.clientSecretFile", "is required (or set TAILSCALE_OAUTH_CLIENT_SECRET)"), isFromFile: true)
            }
            return .oauth(clientID: clientID, clientSecret: secret)
        }
        let apiKey = nonEmpty("TAILSCALE_API_KEY")?.trimmingCharacters(in: .whitespacesAndNewlines)
        let clientID = nonEmpty("TAILSCALE_OAUTH_CLIENT_ID")
        let clientSecret = nonEmpty("TAILSCALE_OAUTH_CLIENT_SECRET")?.trimmingCharacters(in: .whitespacesAndNewlines)
        if apiKey != nil && (clientID != nil || clientSecret != nil) {
            throw CredentialIssue(issue: ConfigIssue(
                file: parsed.file, line: nil, path: "tailscale",
                message: "both TAILSCALE_API_KEY and TAILSCALE_OAUTH_CLIENT_ID/SECRET are set; use exactly one kind of credential"
            ), isFromFile: false)
        }
        if let apiKey { return .apiKey(apiKey) }
        if let clientID, let clientSecret { return .oauth(clientID: clientID, clientSecret: clientSecret) }
        if clientID != nil || clientSecret != nil {
            throw CredentialIssue(issue: ConfigIssue(
                file: parsed.file, line: nil, path: "tailscale.oauth",
                message: "TAILSCALE_OAUTH_CLIENT_ID and TAILSCALE_OAUTH_CLIENT_SECRET must both be set"
            ), isFromFile: false)
        }
        return nil
    }

    /// Reads a secret file with surrounding whitespace trimmed; never echoes its content.
    private func readSecret(_ file: String, key: String, _ parsed: ParsedConfig) throws(CredentialIssue) -> String {
        let bytes: [UInt8]
        do {
            bytes = try BoundedFile.read(file, limit: Self.maxSecretSize)
        } catch .missing {
            throw CredentialIssue(issue: parsed.issue(key, "file \(ConfigIssue.quote(file)) does not exist or is not readable"), isFromFile: true)
        } catch {
            throw CredentialIssue(issue: parsed.issue(key, "cannot read \(ConfigIssue.quote(file)): \(error)"), isFromFile: true)
        }
        let secret = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !secret.isEmpty else {
            throw CredentialIssue(issue: parsed.issue(key, "file \(ConfigIssue.quote(file)) is empty or only whitespace"), isFromFile: true)
        }
        guard !secret.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw CredentialIssue(issue: parsed.issue(key, "file \(ConfigIssue.quote(file)) holds control characters; it must hold one line of text"), isFromFile: true)
        }
        return secret
    }

    private func nonEmpty(_ name: String) -> String? {
        guard let value = environment[name], !value.isEmpty else { return nil }
        return value
    }
}
