import TSDNSCore
import Yams

/// One problem in a config file: `<file>:<line>: <key.path>: <message>` (man page, "validate").
public struct ConfigIssue: Sendable, Equatable, CustomStringConvertible {
    /// A value as an error shows it: quoted, control characters escaped, at most 80
    /// characters (a 50 MB value is not echoed).
    public static func quote(_ text: String) -> String {
        let escaped = TerminalText.escape(text)
        guard escaped.count > 80 else { return "\"\(escaped)\"" }
        return "\"\(escaped.prefix(77))...\""
    }

    public var file: String
    public var line: Int?
    public var path: String
    public var message: String

    public init(file: String, line: Int?, path: String, message: String) {
        self.file = file
        self.line = line
        self.path = path
        self.message = message
    }

    public var description: String {
        let location = line.map { "\(file):\($0)" } ?? file
        return path.isEmpty ? "\(location): \(message)" : "\(location): \(path): \(message)"
    }
}

/// All problems found; the program exits 78 on these.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    /// At most this many issues are printed; a file of garbage is not echoed line by line.
    public static let printedLimit = 20

    public var issues: [ConfigIssue]
    public init(_ issues: [ConfigIssue]) { self.issues = issues }
    public var description: String {
        var lines = issues.prefix(Self.printedLimit).map(\.description)
        if issues.count > Self.printedLimit { lines.append("… and \(issues.count - Self.printedLimit) more") }
        return lines.joined(separator: "\n")
    }
}

/// A decoded config with the line of every key, for errors found later (missing files).
public struct ParsedConfig: Sendable {
    public var config: Config
    public var file: String
    public var lines: [String: Int]

    /// An issue at the line of `path`, or of the nearest enclosing key that is in the file.
    public func issue(_ path: String, _ message: String) -> ConfigIssue {
        var key = Substring(path)
        var line = lines[path]
        while line == nil, let dot = key.lastIndex(of: ".") {
            key = key[..<dot]
            line = lines[String(key)]
        }
        return ConfigIssue(file: file, line: line, path: path, message: message)
    }
}

/// Every key of the config file, by section: what the parser accepts, and so what the
/// README and the man page must document (a test compares them).
public enum ConfigKeys {
    public static let sections: [(section: String, keys: [String])] = [
        ("", ["tailscale", "resolvers", "healthcheck", "sync", "safety", "kubernetes", "rpc", "state", "watch"]),
        ("tailscale", ["tailnet", "apiURL", "apiKeyFile", "oauth"]),
        ("tailscale.oauth", ["clientID", "clientSecretFile"]),
        ("resolvers", ["tags", "addressFamily", "target", "unsourced"]),
        ("resolvers.target", ["global", "splitDNS"]),
        ("healthcheck", ["interval", "staleAfter", "failureThreshold", "successThreshold", "probe", "dns"]),
        ("healthcheck.dns", ["name", "type", "port", "timeout", "transport", "proxy", "concurrency"]),
        ("sync", ["interval", "pendingTTL", "exclusionTTL"]),
        ("safety", ["minResolvers", "maxRemovals", "protect"]),
        ("kubernetes", ["clusters"]),
        ("kubernetes.clusters[]", ["name", "kubeconfig", "context", "namespace", "annotation"]),
        ("rpc", ["listen", "tokenFile", "allowedHosts", "maxConnections"]),
        ("state", ["file"]),
        ("watch", ["cluster", "server", "tokenFile", "resyncInterval", "proxy", "listen"]),
    ]

    public static func keys(of section: String) -> [String] {
        sections.first { $0.section == section }?.keys ?? []
    }

    /// The full paths of the keys that hold values (`healthcheck.dns.timeout`,
    /// `kubernetes.clusters[].name`), not of the sections.
    public static var leaves: [String] {
        let sectionNames = Set(sections.map(\.section))
        return sections.flatMap { section in
            section.keys.map { section.section.isEmpty ? $0 : "\(section.section).\($0)" }
        }.filter { !sectionNames.contains($0) && !sectionNames.contains($0 + "[]") }
    }
}

extension ConfigIssue {
    /// A YAML syntax error with its line (also for other YAML files: kubeconfigs).
    public static func yaml(_ error: YamlError, file: String) -> ConfigIssue {
        switch error {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _), .composer(_, let problem, let mark, _):
            return ConfigIssue(file: file, line: mark.line, path: "", message: "invalid YAML: \(problem)")
        case .duplicatedKeysInMapping(let duplicates, let context):
            return ConfigIssue(file: file, line: context.mark.line, path: "", message: "invalid YAML: key \(duplicates.joined(separator: ", ")) appears twice")
        default:
            let firstLine = "\(error)".split(separator: "\n").first.map(String.init) ?? "\(error)"
            return ConfigIssue(file: file, line: nil, path: "", message: "invalid YAML: \(firstLine)")
        }
    }
}

/// Strict YAML decoding of the config (README "Configuration"): unknown keys, wrong types and bad values are all
/// reported, each with its key path and line.
public enum ConfigParser {
    public static func parse(_ text: String, file: String) throws(ConfigError) -> ParsedConfig {
        let reader = Reader(file: file)
        let root: Node?
        do {
            root = try YAMLText.compose(text)
        } catch let error as YamlError {
            throw ConfigError([reader.yamlIssue(error)])
        } catch {
            throw ConfigError([ConfigIssue(file: file, line: nil, path: "", message: "\(error)")])
        }
        var config = Config()
        if let root, !root.isNull {
            reader.decode(root, into: &config)
        }
        if !reader.issues.isEmpty {
            // In file order, which is how an operator reads them.
            let ordered = reader.issues.enumerated().sorted {
                ($0.element.line ?? .max, $0.offset) < ($1.element.line ?? .max, $1.offset)
            }
            throw ConfigError(ordered.map(\.element))
        }
        return ParsedConfig(config: config, file: file, lines: reader.lines)
    }
}

private final class Reader {
    let file: String
    var issues: [ConfigIssue] = []
    var lines: [String: Int] = [:]

    init(file: String) { self.file = file }

    func fail(_ node: Node?, _ path: String, _ message: String) {
        issues.append(ConfigIssue(file: file, line: node?.mark?.line ?? lines[path], path: path, message: message))
    }

    func yamlIssue(_ error: YamlError) -> ConfigIssue { ConfigIssue.yaml(error, file: file) }

    // MARK: Typed readers. Each returns nil (and records an issue) on a wrong type.

    /// The keys of a mapping, reporting any key outside `allowed`.
    func mapping(_ node: Node, _ path: String, allowed: [String]) -> [String: Node]? {
        guard case .mapping(let mapping) = node else {
            fail(node, path, "must be a mapping")
            return nil
        }
        var result: [String: Node] = [:]
        for (keyNode, value) in mapping {
            let key = keyNode.string ?? "\(keyNode)"
            // A key is echoed in errors: escaped and cut like a value.
            let shownKey = TerminalText.escape(key.count > 80 ? String(key.prefix(77)) + "..." : key)
            let keyPath = path.isEmpty ? shownKey : "\(path).\(shownKey)"
            lines[keyPath] = keyNode.mark?.line
            guard allowed.contains(key) else {
                let hint = allowed.first { $0.lowercased() == key.lowercased() }.map { " (did you mean \"\($0)\"?)" } ?? ""
                fail(keyNode, keyPath, "unknown key\(hint)")
                continue
            }
            if value.isNull { continue }  // `key:` with no value keeps the default
            result[key] = value
        }
        return result
    }

    func string(_ node: Node, _ path: String) -> String? {
        guard case .scalar(let scalar) = node else {
            fail(node, path, "must be a string")
            return nil
        }
        return scalar.string
    }

    /// A string of at most `limit` bytes (names, URLs, paths: nothing here is longer).
    func boundedString(_ node: Node, _ path: String, limit: Int = 4096) -> String? {
        guard let text = string(node, path) else { return nil }
        guard text.utf8.count <= limit else {
            fail(node, path, "\(quoted(node)) is longer than \(limit) bytes")
            return nil
        }
        return text
    }

    func bool(_ node: Node, _ path: String) -> Bool? {
        if let value = YAMLText.bool(node) { return value }
        fail(node, path, "\(quoted(node)) is not true or false")
        return nil
    }

    func int(_ node: Node, _ path: String, minimum: Int, maximum: Int = Int.max) -> Int? {
        guard let value = YAMLText.int(node) else {
            if case .scalar(let scalar) = node, scalar.style != .plain, Int(scalar.string) != nil {
                fail(node, path, "\(quoted(node)) is a string; write the number without quotes")
            } else {
                fail(node, path, "\(quoted(node)) is not a whole number")
            }
            return nil
        }
        guard value >= minimum else {
            fail(node, path, "\(value) is below the minimum of \(minimum)")
            return nil
        }
        guard value <= maximum else {
            fail(node, path, "\(value) is above the maximum of \(maximum)")
            return nil
        }
        return value
    }

    /// A duration of at least `minimum` (longer than zero when there is none).
    func duration(_ node: Node, _ path: String, minimum: Duration? = nil) -> Duration? {
        guard let text = string(node, path) else { return nil }
        let value: Duration
        do {
            value = try DurationText.parseChecked(text)
        } catch .tooLarge {
            fail(node, path, "\(quoted(node)) is too long a duration")
            return nil
        } catch {
            fail(node, path, "\(quoted(node)) is not a duration (use Go style: 90s, 5m, 1h30m)")
            return nil
        }
        if let minimum, value < minimum {
            fail(node, path, "\(quoted(node)) is shorter than the minimum of \(DurationText.format(minimum))")
            return nil
        }
        guard value > .zero else {
            fail(node, path, "must be longer than 0s")
            return nil
        }
        return value
    }

    func choice<T: RawRepresentable & CaseIterable>(_ node: Node, _ path: String, _ type: T.Type) -> T? where T.RawValue == String {
        guard let text = string(node, path) else { return nil }
        guard let value = T(rawValue: text) else {
            fail(node, path, "\(quoted(node)) is not one of \(T.allCases.map(\.rawValue).joined(separator: ", "))")
            return nil
        }
        return value
    }

    func strings(_ node: Node, _ path: String) -> [String]? {
        guard case .sequence(let sequence) = node else {
            fail(node, path, "must be a list")
            return nil
        }
        var result: [String] = []
        for (index, item) in sequence.enumerated() {
            if let text = string(item, "\(path)[\(index)]") { result.append(text) }
        }
        return result
    }

    /// A value as an error message shows it: quoted, control characters escaped, at most
    /// 80 characters (a 50 MB value is not echoed).
    func quoted(_ node: Node) -> String {
        if case .scalar(let scalar) = node { return Self.quote(scalar.string) }
        if case .sequence = node { return "a list" }
        return "a mapping"
    }

    static func quote(_ text: String) -> String { ConfigIssue.quote(text) }

    // MARK: Sections

    func decode(_ root: Node, into config: inout Config) {
        guard let top = mapping(root, "", allowed: ConfigKeys.keys(of: "")) else { return }
        if let node = top["tailscale"] { decodeTailscale(node, &config.tailscale) }
        if let node = top["resolvers"] { decodeResolvers(node, &config.resolvers) }
        if let node = top["healthcheck"] { decodeHealthcheck(node, &config.healthcheck) }
        if let node = top["sync"] { decodeSync(node, &config.sync) }
        if let node = top["safety"] { decodeSafety(node, &config.safety) }
        if let node = top["kubernetes"] { decodeKubernetes(node, &config.clusters) }
        if let node = top["rpc"] { decodeRPC(node, &config.rpc) }
        if let node = top["state"], let keys = mapping(node, "state", allowed: ConfigKeys.keys(of: "state")) {
            if let node = keys["file"], let value = boundedString(node, "state.file"), !value.isEmpty { config.state.file = value }
        }
        if let node = top["watch"] { decodeWatch(node, &config.watch, clusters: config.clusters) }
    }

    func decodeTailscale(_ node: Node, _ settings: inout Config.Tailscale) {
        guard let keys = mapping(node, "tailscale", allowed: ConfigKeys.keys(of: "tailscale")) else { return }
        if let node = keys["tailnet"], let value = string(node, "tailscale.tailnet") {
            if value.isEmpty { fail(node, "tailscale.tailnet", "must not be empty (\"-\" means the credential's own tailnet)") }
            else { settings.tailnet = value }
        }
        if let node = keys["apiURL"], let value = string(node, "tailscale.apiURL") {
            if isHTTPURL(value) { settings.apiURL = value } else { fail(node, "tailscale.apiURL", "\(Self.quote(value)) is not an http(s) URL") }
        }
        if let node = keys["apiKeyFile"], let value = nonEmptyPath(node, "tailscale.apiKeyFile") { settings.apiKeyFile = value }
        if let node = keys["oauth"], let oauth = mapping(node, "tailscale.oauth", allowed: ConfigKeys.keys(of: "tailscale.oauth")) {
            var result = Config.OAuth()
            if let node = oauth["clientID"], let value = string(node, "tailscale.oauth.clientID") {
                if value.trimmingCharacters(in: .whitespaces).isEmpty {
                    fail(node, "tailscale.oauth.clientID", "is empty; omit it to use TAILSCALE_OAUTH_CLIENT_ID")
                } else {
                    result.clientID = value
                }
            }
            if let node = oauth["clientSecretFile"], let value = nonEmptyPath(node, "tailscale.oauth.clientSecretFile") {
                result.clientSecretFile = value
            }
            settings.oauth = result
        }
        if keys["apiKeyFile"] != nil && keys["oauth"] != nil {
            fail(nil, "tailscale.oauth", "set either tailscale.apiKeyFile or tailscale.oauth, not both")
        }
    }

    func decodeResolvers(_ node: Node, _ settings: inout Config.Resolvers) {
        guard let keys = mapping(node, "resolvers", allowed: ConfigKeys.keys(of: "resolvers")) else { return }
        if let node = keys["unsourced"], let value = choice(node, "resolvers.unsourced", Unsourced.self) { settings.unsourced = value }
        if let node = keys["tags"], let tags = strings(node, "resolvers.tags") {
            var valid = true
            for (index, tag) in tags.enumerated() where !tag.hasPrefix("tag:") || tag.count <= 4 {
                fail(sequenceItem(node, index), "resolvers.tags[\(index)]", "\(Self.quote(tag)) is not a tag (tags look like tag:dns)")
                valid = false
            }
            if valid { settings.tags = tags }
        }
        if let node = keys["addressFamily"], let value = choice(node, "resolvers.addressFamily", AddressFamily.self) {
            settings.addressFamily = value
        }
        var targetNode: Node?
        if let node = keys["target"], let target = mapping(node, "resolvers.target", allowed: ConfigKeys.keys(of: "resolvers.target")) {
            targetNode = node
            if let node = target["global"], let value = bool(node, "resolvers.target.global") { settings.global = value }
            if let node = target["splitDNS"], let domains = strings(node, "resolvers.target.splitDNS") {
                var seen = Set<String>()
                for (index, domain) in domains.enumerated() {
                    let path = "resolvers.target.splitDNS[\(index)]"
                    if !isDomain(domain) {
                        fail(sequenceItem(node, index), path, "\(Self.quote(domain)) is not a domain name")
                    } else if !seen.insert(domain.lowercased()).inserted {
                        fail(sequenceItem(node, index), path, "\(Self.quote(domain)) is listed twice")
                    }
                }
                // DNS names are case-insensitive; one spelling keeps list lookups exact.
                settings.splitDNS = domains.map { $0.lowercased() }
            }
        }
        if !settings.global && settings.splitDNS.isEmpty {
            fail(targetNode, "resolvers.target", "manages nothing: set global: true or list splitDNS domains")
        }
    }

    func decodeHealthcheck(_ node: Node, _ settings: inout Config.Healthcheck) {
        guard let keys = mapping(node, "healthcheck", allowed: ConfigKeys.keys(of: "healthcheck")) else { return }
        if let node = keys["interval"], let value = duration(node, "healthcheck.interval", minimum: .seconds(1)) { settings.interval = value }
        if let node = keys["staleAfter"], let value = duration(node, "healthcheck.staleAfter") { settings.staleAfter = value }
        if let node = keys["failureThreshold"], let value = int(node, "healthcheck.failureThreshold", minimum: 1, maximum: 1000) {
            settings.failureThreshold = value
        }
        if let node = keys["successThreshold"], let value = int(node, "healthcheck.successThreshold", minimum: 1, maximum: 1000) {
            settings.successThreshold = value
        }
        if let node = keys["probe"], let value = choice(node, "healthcheck.probe", Config.Probe.self) { settings.probe = value }
        if let node = keys["dns"] { decodeDNSProbe(node, &settings.dns) }
    }

    func decodeDNSProbe(_ node: Node, _ settings: inout Config.DNSProbe) {
        guard let keys = mapping(node, "healthcheck.dns", allowed: ConfigKeys.keys(of: "healthcheck.dns")) else { return }
        if let node = keys["name"], let value = string(node, "healthcheck.dns.name") {
            if value == "." || isDomain(value.hasSuffix(".") ? String(value.dropLast()) : value) { settings.name = value }
            else { fail(node, "healthcheck.dns.name", "\(quoted(node)) is not a domain name") }
        }
        if let node = keys["type"], let value = choice(node, "healthcheck.dns.type", Config.DNSQueryType.self) { settings.type = value }
        if let node = keys["port"], let value = int(node, "healthcheck.dns.port", minimum: 1, maximum: 65535) { settings.port = value }
        if let node = keys["timeout"], let value = duration(node, "healthcheck.dns.timeout", minimum: .milliseconds(10)) { settings.timeout = value }
        if let node = keys["transport"], let value = choice(node, "healthcheck.dns.transport", Config.DNSTransport.self) { settings.transport = value }
        if let node = keys["proxy"], let value = boundedString(node, "healthcheck.dns.proxy") {
            // The probe connects to the proxy by address: tailscaled's SOCKS5 listens on loopback.
            if value.isEmpty || (isProxyURL(value, schemes: ["socks5://", "socks5h://"]) && proxyHostIsAnAddress(value)) { settings.proxy = value }
            else { fail(node, "healthcheck.dns.proxy", "\(quoted(node)) is not a socks5://HOST:PORT URL with an IP address or localhost") }
        }
        if let node = keys["concurrency"], let value = int(node, "healthcheck.dns.concurrency", minimum: 1, maximum: 1024) {
            settings.concurrency = value
        }
    }

    func decodeSync(_ node: Node, _ settings: inout Config.Sync) {
        guard let keys = mapping(node, "sync", allowed: ConfigKeys.keys(of: "sync")) else { return }
        if let node = keys["interval"], let value = duration(node, "sync.interval", minimum: .seconds(1)) { settings.interval = value }
        if let node = keys["pendingTTL"], let value = duration(node, "sync.pendingTTL") { settings.pendingTTL = value }
        if let node = keys["exclusionTTL"], let value = duration(node, "sync.exclusionTTL") { settings.exclusionTTL = value }
    }

    func decodeSafety(_ node: Node, _ settings: inout Config.Safety) {
        guard let keys = mapping(node, "safety", allowed: ConfigKeys.keys(of: "safety")) else { return }
        if let node = keys["minResolvers"], let value = int(node, "safety.minResolvers", minimum: 0) { settings.minResolvers = value }
        if let node = keys["maxRemovals"], let value = int(node, "safety.maxRemovals", minimum: 0) { settings.maxRemovals = value }
        if let node = keys["protect"], let values = strings(node, "safety.protect") {
            // Nameserver entries are addresses or DoH URLs; anything else is a typo.
            for (index, value) in values.enumerated() where IPAddress(value) == nil && !value.hasPrefix("https://") {
                fail(sequenceItem(node, index), "safety.protect[\(index)]", "\(Self.quote(value)) is not an IP address or an https:// resolver URL")
            }
            settings.protect = values.contains(PlanSettings.alwaysProtected) ? values : values + [PlanSettings.alwaysProtected]
        }
    }

    func decodeKubernetes(_ node: Node, _ clusters: inout [Config.Cluster]) {
        guard let keys = mapping(node, "kubernetes", allowed: ConfigKeys.keys(of: "kubernetes")), let list = keys["clusters"] else { return }
        guard case .sequence(let sequence) = list else {
            fail(list, "kubernetes.clusters", "must be a list")
            return
        }
        var names = Set<String>()
        for (index, item) in sequence.enumerated() {
            let path = "kubernetes.clusters[\(index)]"
            guard let fields = mapping(item, path, allowed: ConfigKeys.keys(of: "kubernetes.clusters[]")) else { continue }
            guard let nameNode = fields["name"], let name = string(nameNode, "\(path).name") else {
                if fields["name"] == nil { fail(item, "\(path).name", "is required") }
                continue
            }
            guard !name.trimmingCharacters(in: .whitespaces).isEmpty else {
                fail(nameNode, "\(path).name", "is empty; a cluster needs a name (its sources read kubernetes:<name>/...)")
                continue
            }
            if !names.insert(name).inserted { fail(nameNode, "\(path).name", "\(Self.quote(name)) is used by another cluster") }
            var cluster = Config.Cluster(name: name)
            if let node = fields["kubeconfig"], let value = nonEmptyPath(node, "\(path).kubeconfig") { cluster.kubeconfig = value }
            if let node = fields["context"], let value = string(node, "\(path).context") { cluster.context = value }
            if let node = fields["namespace"], let value = string(node, "\(path).namespace") { cluster.namespace = value }
            if let node = fields["annotation"], let value = string(node, "\(path).annotation") {
                let parts = value.split(separator: "=", maxSplits: 1).map(String.init)
                if parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty {
                    cluster.annotationKey = parts[0]
                    cluster.annotationValue = parts[1]
                } else {
                    fail(node, "\(path).annotation", "\(Self.quote(value)) is not key=value")
                }
            }
            clusters.append(cluster)
        }
    }

    func decodeRPC(_ node: Node, _ settings: inout Config.RPC) {
        guard let keys = mapping(node, "rpc", allowed: ConfigKeys.keys(of: "rpc")) else { return }
        if let node = keys["allowedHosts"], let hosts = strings(node, "rpc.allowedHosts") {
            for (index, host) in hosts.enumerated() where !isDomain(host) {
                fail(sequenceItem(node, index), "rpc.allowedHosts[\(index)]", "\(Self.quote(host)) is not a host name")
            }
            settings.allowedHosts = hosts.map { $0.lowercased() }
        }
        if let node = keys["maxConnections"], let value = int(node, "rpc.maxConnections", minimum: 1, maximum: 65536) {
            settings.maxConnections = value
        }
        if let node = keys["listen"], let value = string(node, "rpc.listen") {
            if value.isEmpty || ListenAddress(value) != nil { settings.listen = value }
            else { fail(node, "rpc.listen", "\(Self.quote(value)) is not host:port") }
        }
        if let node = keys["tokenFile"], let value = nonEmptyPath(node, "rpc.tokenFile") { settings.tokenFile = value }
        if let address = ListenAddress(settings.listen), !address.isLoopback, settings.tokenFile == nil {
            fail(keys["listen"] ?? node, "rpc.tokenFile", "is required when rpc.listen (\(settings.listen)) is not a loopback address")
        }
    }

    func decodeWatch(_ node: Node, _ settings: inout Config.Watch, clusters: [Config.Cluster]) {
        guard let keys = mapping(node, "watch", allowed: ConfigKeys.keys(of: "watch")) else { return }
        if let node = keys["resyncInterval"], let value = duration(node, "watch.resyncInterval", minimum: .seconds(1)) {
            settings.resyncInterval = value
        }
        if let node = keys["proxy"], let value = boundedString(node, "watch.proxy") {
            if value.isEmpty || isProxyURL(value, schemes: ["socks5://", "socks5h://", "http://"]) { settings.proxy = value }
            else { fail(node, "watch.proxy", "\(quoted(node)) is not a socks5://, socks5h:// or http:// proxy URL") }
        }
        if let node = keys["listen"], let value = string(node, "watch.listen") {
            if value.isEmpty || ListenAddress(value) != nil { settings.listen = value }
            else { fail(node, "watch.listen", "\(quoted(node)) is not host:port") }
        }
        if let node = keys["cluster"], let value = string(node, "watch.cluster") {
            if clusters.contains(where: { $0.name == value }) { settings.cluster = value }
            else { fail(node, "watch.cluster", "\(Self.quote(value)) is not a name in kubernetes.clusters") }
        }
        if let node = keys["server"], let value = string(node, "watch.server") {
            if isHTTPURL(value) { settings.server = value } else { fail(node, "watch.server", "\(Self.quote(value)) is not an http(s) URL") }
        }
        if let node = keys["tokenFile"], let value = nonEmptyPath(node, "watch.tokenFile") { settings.tokenFile = value }
    }

    // MARK: Value checks

    func nonEmptyPath(_ node: Node, _ path: String) -> String? {
        guard let value = string(node, path) else { return nil }
        if value.isEmpty {
            fail(node, path, "must not be empty")
            return nil
        }
        return value
    }

    func sequenceItem(_ node: Node, _ index: Int) -> Node? {
        if case .sequence(let sequence) = node, index < sequence.count { return sequence[index] }
        return node
    }

    func isHTTPURL(_ text: String) -> Bool {
        (text.hasPrefix("http://") || text.hasPrefix("https://")) && text.split(separator: "/").count >= 2
            && !text.contains(" ")
    }

    func proxyHostIsAnAddress(_ text: String) -> Bool {
        var rest = Substring(text.drop { $0 != "/" }.dropFirst(2))
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        if let at = rest.lastIndex(of: "@") { rest = rest[rest.index(after: at)...] }
        guard let address = ListenAddress(String(rest)) else { return false }
        return address.host == "localhost" || IPAddress(address.host) != nil
    }

    /// `scheme://host:port`, with an optional trailing slash.
    func isProxyURL(_ text: String, schemes: [String]) -> Bool {
        guard let scheme = schemes.first(where: text.hasPrefix) else { return false }
        var rest = String(text.dropFirst(scheme.count))
        if rest.hasSuffix("/") { rest.removeLast() }
        if let at = rest.lastIndex(of: "@") { rest = String(rest[rest.index(after: at)...]) }
        guard let address = ListenAddress(rest), address.port > 0, !address.host.isEmpty else { return false }
        return !rest.contains("/") && !rest.contains(" ")
    }

    func isDomain(_ text: String) -> Bool {
        let labels = text.split(separator: ".", omittingEmptySubsequences: false)
        return !text.isEmpty && text.count <= 253 && labels.allSatisfy { label in
            !label.isEmpty && label.count <= 63 && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }
        }
    }
}

extension Node {
    /// A YAML null (`key:`, `~`, `null`), shared with the kubeconfig parser.
    public var isNull: Bool {
        if case .scalar(let scalar) = self, scalar.style == .plain {
            return ["", "~", "null", "Null", "NULL"].contains(scalar.string)
        }
        return false
    }
}
