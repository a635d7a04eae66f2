import Foundation
import TSDNSConfig
import Yams

/// The parts of a kubeconfig this program uses, with the key spellings of client-go's
/// `tools/clientcmd/api/v1/types.go` (`tokenFile` camelCase, the rest kebab-case). Unknown
/// keys are ignored, as kubectl ignores them; a known key of the wrong type is an error
/// naming the file, the line and the key path.
public struct Kubeconfig: Sendable, Equatable {
    public struct Cluster: Sendable, Equatable {
        public var server: String
        public var certificateAuthority: String?
        public var certificateAuthorityData: Data?
        public var insecureSkipTLSVerify = false
        public var tlsServerName: String?
        public var proxyURL: String?
        /// Where `server` was written, for errors found later.
        public var line: Int?
    }

    public struct ExecConfig: Sendable, Equatable {
        public var apiVersion: String
        public var command: String
        public var args: [String] = []
        public var env: [(name: String, value: String)] = []
        public var provideClusterInfo = false
        public var interactiveMode: String?

        public static func == (lhs: ExecConfig, rhs: ExecConfig) -> Bool {
            lhs.apiVersion == rhs.apiVersion && lhs.command == rhs.command && lhs.args == rhs.args
                && lhs.env.map(\.name) == rhs.env.map(\.name) && lhs.env.map(\.value) == rhs.env.map(\.value)
                && lhs.provideClusterInfo == rhs.provideClusterInfo && lhs.interactiveMode == rhs.interactiveMode
        }
    }

    public struct User: Sendable, Equatable {
        public var token: String?
        public var tokenFile: String?
        public var clientCertificate: String?
        public var clientCertificateData: Data?
        public var clientKey: String?
        public var clientKeyData: Data?
        public var exec: ExecConfig?
    }

    public struct Context: Sendable, Equatable {
        public var cluster: String
        public var user: String?
        public var namespace: String?
    }

    public var file: String
    public var clusters: [String: Cluster] = [:]
    public var users: [String: User] = [:]
    public var contexts: [String: Context] = [:]
    public var currentContext: String?
    /// Lines of named entries and keys, for errors about them found after parsing.
    var lines: [String: Int] = [:]

    public func line(_ path: String) -> Int? { lines[path] }

    /// The directory relative paths are resolved against.
    public var directory: String { (file as NSString).deletingLastPathComponent }

    /// A path from the file, made absolute against the file's directory.
    public func resolve(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        if path.hasPrefix("~/") { return NSHomeDirectory() + path.dropFirst(1) }
        return (directory as NSString).appendingPathComponent(path)
    }
}

/// A kubeconfig that cannot be used: the file, the line where known, the key path.
public struct KubeconfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public var issues: [ConfigIssue]

    public init(_ issues: [ConfigIssue]) { self.issues = issues }
    public init(file: String, line: Int?, path: String, _ message: String) {
        issues = [ConfigIssue(file: file, line: line, path: path, message: message)]
    }

    public var description: String { issues.map(\.description).joined(separator: "\n") }
}

enum KubeconfigParser {
    /// A kubeconfig of more than this is not a kubeconfig.
    static let maxSize = 4 << 20

    static func load(_ path: String) throws(KubeconfigError) -> Kubeconfig {
        let bytes: [UInt8]
        do {
            bytes = try BoundedFile.read(path, limit: maxSize)
        } catch {
            throw KubeconfigError(file: path, line: nil, path: "", "cannot read the kubeconfig: \(error)")
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw KubeconfigError(file: path, line: nil, path: "", "the kubeconfig is not UTF-8 text")
        }
        return try parse(text, file: path)
    }

    static func parse(_ text: String, file: String) throws(KubeconfigError) -> Kubeconfig {
        let reader = Reader(file: file)
        let root: Node?
        do {
            root = try YAMLText.compose(text)
        } catch let error as YamlError {
            throw KubeconfigError([ConfigIssue.yaml(error, file: file)])
        } catch {
            throw KubeconfigError(file: file, line: nil, path: "", "invalid YAML: \(error)")
        }
        var config = Kubeconfig(file: file)
        guard let root, case .mapping(let top) = root else {
            throw KubeconfigError(file: file, line: root?.mark?.line, path: "", "a kubeconfig must be a mapping")
        }
        for (keyNode, value) in top where !value.isNull {
            switch keyNode.string ?? "" {
            case "current-context": config.currentContext = reader.string(value, "current-context")
            case "clusters":
                reader.namedList(value, "clusters", field: "cluster") { name, node, path, line in
                    guard let fields = reader.mapping(node, path) else { return }
                    guard let serverNode = fields["server"] else {
                        reader.fail(node, "\(path).server", "is required")
                        return
                    }
                    guard let server = reader.string(serverNode, "\(path).server") else { return }
                    var cluster = Kubeconfig.Cluster(server: server, line: serverNode.mark?.line ?? line)
                    cluster.certificateAuthority = fields["certificate-authority"].flatMap { reader.string($0, "\(path).certificate-authority") }
                    cluster.certificateAuthorityData = fields["certificate-authority-data"].flatMap { reader.base64($0, "\(path).certificate-authority-data") }
                    cluster.insecureSkipTLSVerify = fields["insecure-skip-tls-verify"].flatMap { reader.bool($0, "\(path).insecure-skip-tls-verify") } ?? false
                    cluster.tlsServerName = fields["tls-server-name"].flatMap { reader.string($0, "\(path).tls-server-name") }
                    cluster.proxyURL = fields["proxy-url"].flatMap { reader.string($0, "\(path).proxy-url") }
                    config.clusters[name] = cluster
                    config.lines["clusters.\(name)"] = line
                }
            case "users":
                reader.namedList(value, "users", field: "user") { name, node, path, line in
                    guard let fields = reader.mapping(node, path) else { return }
                    var user = Kubeconfig.User()
                    user.token = fields["token"].flatMap { reader.string($0, "\(path).token") }
                    user.tokenFile = fields["tokenFile"].flatMap { reader.string($0, "\(path).tokenFile") }
                    user.clientCertificate = fields["client-certificate"].flatMap { reader.string($0, "\(path).client-certificate") }
                    user.clientCertificateData = fields["client-certificate-data"].flatMap { reader.base64($0, "\(path).client-certificate-data") }
                    user.clientKey = fields["client-key"].flatMap { reader.string($0, "\(path).client-key") }
                    user.clientKeyData = fields["client-key-data"].flatMap { reader.base64($0, "\(path).client-key-data") }
                    for unsupported in ["auth-provider", "username", "password", "as"] where fields[unsupported] != nil {
                        reader.fail(fields[unsupported]!, "\(path).\(unsupported)", "is not supported (use a token, tokenFile, a client certificate or an exec plugin)")
                    }
                    if let execNode = fields["exec"] { user.exec = reader.exec(execNode, "\(path).exec") }
                    config.users[name] = user
                    config.lines["users.\(name)"] = line
                }
            case "contexts":
                reader.namedList(value, "contexts", field: "context") { name, node, path, line in
                    guard let fields = reader.mapping(node, path) else { return }
                    guard let clusterNode = fields["cluster"], let cluster = reader.string(clusterNode, "\(path).cluster") else {
                        reader.fail(node, "\(path).cluster", "is required")
                        return
                    }
                    let user = fields["user"].flatMap { reader.string($0, "\(path).user") }
                    let namespace = fields["namespace"].flatMap { reader.string($0, "\(path).namespace") }
                    config.contexts[name] = Kubeconfig.Context(cluster: cluster, user: user, namespace: namespace)
                    config.lines["contexts.\(name)"] = line
                }
            default:
                continue  // apiVersion, kind, preferences, extensions
            }
        }
        if !reader.issues.isEmpty { throw KubeconfigError(reader.issues) }
        return config
    }

    /// Typed reads that record an issue (with the node's line) on a wrong type.
    final class Reader {
        let file: String
        var issues: [ConfigIssue] = []

        init(file: String) { self.file = file }

        func fail(_ node: Node, _ path: String, _ message: String) {
            issues.append(ConfigIssue(file: file, line: node.mark?.line, path: path, message: message))
        }

        func mapping(_ node: Node, _ path: String) -> [String: Node]? {
            guard case .mapping(let mapping) = node else {
                fail(node, path, "must be a mapping")
                return nil
            }
            var result: [String: Node] = [:]
            for (key, value) in mapping where !value.isNull { result[key.string ?? ""] = value }
            return result
        }

        func string(_ node: Node, _ path: String) -> String? {
            guard case .scalar(let scalar) = node else {
                fail(node, path, "must be a string")
                return nil
            }
            return scalar.string
        }

        func bool(_ node: Node, _ path: String) -> Bool? {
            if let value = YAMLText.bool(node) { return value }
            fail(node, path, "\(ConfigIssue.quote(node.string ?? "")) is not true or false")
            return nil
        }

        func base64(_ node: Node, _ path: String) -> Data? {
            guard let text = string(node, path) else { return nil }
            guard let data = Data(base64Encoded: text.filter { !$0.isWhitespace }) else {
                fail(node, path, "is not valid base64")
                return nil
            }
            return data
        }

        func strings(_ node: Node, _ path: String) -> [String] {
            guard case .sequence(let sequence) = node else {
                fail(node, path, "must be a list")
                return []
            }
            return sequence.enumerated().compactMap { string($1, "\(path)[\($0)]") }
        }

        /// `- name: X\n  <field>: {...}` lists; the body gets the name, the field's node,
        /// its key path and the entry's line.
        func namedList(_ node: Node, _ path: String, field: String, _ body: (String, Node, String, Int?) -> Void) {
            guard case .sequence(let sequence) = node else {
                fail(node, path, "must be a list")
                return
            }
            for (index, item) in sequence.enumerated() {
                let itemPath = "\(path)[\(index)]"
                guard let fields = mapping(item, itemPath) else { continue }
                guard let nameNode = fields["name"], let name = string(nameNode, "\(itemPath).name"), !name.isEmpty else {
                    fail(item, "\(itemPath).name", "is required")
                    continue
                }
                guard let value = fields[field] else {
                    fail(item, "\(itemPath).\(field)", "is required")
                    continue
                }
                body(name, value, "\(itemPath).\(field)", item.mark?.line)
            }
        }

        func exec(_ node: Node, _ path: String) -> Kubeconfig.ExecConfig? {
            guard let fields = mapping(node, path) else { return nil }
            guard let apiNode = fields["apiVersion"], let apiVersion = string(apiNode, "\(path).apiVersion") else {
                fail(node, "\(path).apiVersion", "is required")
                return nil
            }
            guard ExecPlugin.supportedVersions.contains(apiVersion) else {
                fail(apiNode, "\(path).apiVersion", "\(ConfigIssue.quote(apiVersion)) is not one of \(ExecPlugin.supportedVersions.joined(separator: ", "))")
                return nil
            }
            guard let commandNode = fields["command"], let command = string(commandNode, "\(path).command"), !command.isEmpty else {
                fail(node, "\(path).command", "is required")
                return nil
            }
            var exec = Kubeconfig.ExecConfig(apiVersion: apiVersion, command: command)
            if let args = fields["args"] { exec.args = strings(args, "\(path).args") }
            if let envNode = fields["env"] {
                guard case .sequence(let entries) = envNode else {
                    fail(envNode, "\(path).env", "must be a list")
                    return nil
                }
                for (index, entry) in entries.enumerated() {
                    let entryPath = "\(path).env[\(index)]"
                    guard let pair = mapping(entry, entryPath), let name = pair["name"].flatMap({ string($0, "\(entryPath).name") }) else {
                        fail(entry, "\(entryPath).name", "is required")
                        continue
                    }
                    exec.env.append((name, pair["value"].flatMap { string($0, "\(entryPath).value") } ?? ""))
                }
            }
            exec.provideClusterInfo = fields["provideClusterInfo"].flatMap { bool($0, "\(path).provideClusterInfo") } ?? false
            if let modeNode = fields["interactiveMode"], let mode = string(modeNode, "\(path).interactiveMode") {
                guard ["Never", "IfAvailable", "Always"].contains(mode) else {
                    fail(modeNode, "\(path).interactiveMode", "\(ConfigIssue.quote(mode)) is not Never, IfAvailable or Always")
                    return nil
                }
                if mode == "Always" {
                    fail(modeNode, "\(path).interactiveMode", "Always needs a terminal, which this program never has; use Never or IfAvailable")
                }
                exec.interactiveMode = mode
            } else if apiVersion == ExecPlugin.v1 {
                // client-go: "interactiveMode must be specified" for v1.
                fail(node, "\(path).interactiveMode", "is required with \(apiVersion) (Never or IfAvailable)")
            }
            return exec
        }
    }
}
