import Foundation
import TSDNSConfig
import TSDNSHTTP

/// How the program reaches one cluster's API server, resolved as client-go resolves it
/// (CONTRACT §3 "Kubernetes credentials"): the cluster's `kubeconfig` (+ `context`) when
/// given; else in-cluster (`KUBERNETES_SERVICE_HOST`/`_PORT` and the service-account token);
/// else `$KUBECONFIG` (the first file of a colon list) or `~/.kube/config`.
public struct ClusterAccess: Sendable {
    public enum Auth: Sendable, Equatable {
        case none
        case token(String)
        /// Re-read at least once a minute and after a 401.
        case tokenFile(String)
        case exec(Kubeconfig.ExecConfig, directory: String)
    }

    /// `https://host:port` (no trailing slash).
    public var server: String
    public var tls: TLSOptions
    public var tlsServerName: String?
    public var proxy: String?
    public var auth: Auth
    /// Where the settings came from, for logs: `kubeconfig /etc/tsdns/prod.kubeconfig (context prod)`, `in-cluster`.
    public var origin: String
    /// The `spec.cluster` an exec plugin gets with `provideClusterInfo`.
    var execClusterInfo: [String: String] = [:]
    public var warnings: [String] = []

    /// The process's view of the world, injected so tests can fake a pod.
    public struct Environment: Sendable {
        public var variables: [String: String]
        public var serviceAccountDirectory: String
        public var home: String

        public init(
            variables: [String: String] = ProcessInfo.processInfo.environment,
            serviceAccountDirectory: String = "/var/run/secrets/kubernetes.io/serviceaccount",
            home: String = NSHomeDirectory()
        ) {
            self.variables = variables
            self.serviceAccountDirectory = serviceAccountDirectory
            self.home = home
        }
    }

    /// Resolves `cluster`'s access; a problem is a configuration error naming the file,
    /// the line and the key path (kubeconfig) or the config key.
    public static func resolve(_ cluster: Config.Cluster, key: String, environment: Environment = Environment()) throws(KubeconfigError) -> ClusterAccess {
        if let file = cluster.kubeconfig {
            return try fromKubeconfig(file, context: cluster.context)
        }
        if let access = try inCluster(environment, key: key) { return access }
        let file: String
        if let list = environment.variables["KUBECONFIG"], let first = list.split(separator: ":").first.map(String.init), !first.isEmpty {
            file = first
        } else {
            file = (environment.home as NSString).appendingPathComponent(".kube/config")
        }
        guard FileManager.default.fileExists(atPath: file) else {
            throw KubeconfigError(file: key, line: nil, path: "", "no Kubernetes credentials for cluster \(ConfigIssue.quote(cluster.name)): no \(key).kubeconfig, not in a pod (KUBERNETES_SERVICE_HOST unset or no service-account token), and \(file) does not exist")
        }
        return try fromKubeconfig(file, context: cluster.context)
    }

    /// In a pod: the service account's token and CA. nil when not in a pod.
    static func inCluster(_ environment: Environment, key: String) throws(KubeconfigError) -> ClusterAccess? {
        guard let host = environment.variables["KUBERNETES_SERVICE_HOST"], !host.isEmpty,
              let port = environment.variables["KUBERNETES_SERVICE_PORT"], !port.isEmpty else { return nil }
        let directory = environment.serviceAccountDirectory
        let tokenFile = (directory as NSString).appendingPathComponent("token")
        guard FileManager.default.fileExists(atPath: tokenFile) else { return nil }
        let hostPart = host.contains(":") ? "[\(host)]" : host
        var tls = TLSOptions()
        var warnings: [String] = []
        let caFile = (directory as NSString).appendingPathComponent("ca.crt")
        if FileManager.default.fileExists(atPath: caFile) {
            tls.caFile = caFile
        } else {
            warnings.append("in-cluster: \(caFile) is missing; the API server is verified against the system's CAs")
        }
        return ClusterAccess(
            server: "https://\(hostPart):\(port)", tls: tls, tlsServerName: nil, proxy: nil,
            auth: .tokenFile(tokenFile), origin: "in-cluster (\(directory))", warnings: warnings
        )
    }

    static func fromKubeconfig(_ file: String, context requested: String?) throws(KubeconfigError) -> ClusterAccess {
        let kubeconfig = try KubeconfigParser.load(file)
        func fail(_ path: String, line: Int? = nil, _ message: String) -> KubeconfigError {
            KubeconfigError(file: file, line: line, path: path, message)
        }
        guard let contextName = requested ?? kubeconfig.currentContext, !contextName.isEmpty else {
            throw fail("current-context", "is not set and the config names no context")
        }
        guard let context = kubeconfig.contexts[contextName] else {
            throw fail(requested == nil ? "current-context" : "contexts", "no context named \(ConfigIssue.quote(contextName))")
        }
        guard let cluster = kubeconfig.clusters[context.cluster] else {
            throw fail("contexts", line: kubeconfig.line("contexts.\(contextName)"), "context \(ConfigIssue.quote(contextName)) names cluster \(ConfigIssue.quote(context.cluster)), which is not in clusters")
        }
        let user: Kubeconfig.User
        if let userName = context.user, !userName.isEmpty {
            guard let found = kubeconfig.users[userName] else {
                throw fail("contexts", line: kubeconfig.line("contexts.\(contextName)"), "context \(ConfigIssue.quote(contextName)) names user \(ConfigIssue.quote(userName)), which is not in users")
            }
            user = found
        } else {
            user = Kubeconfig.User()
        }
        let clusterLine = kubeconfig.line("clusters.\(context.cluster)")
        let userLine = context.user.flatMap { kubeconfig.line("users.\($0)") }
        var warnings: [String] = []

        guard let url = URL(string: cluster.server), let scheme = url.scheme?.lowercased(), scheme == "https" || scheme == "http", let host = url.host, !host.isEmpty else {
            throw fail("clusters.\(context.cluster).server", line: cluster.line, "\(ConfigIssue.quote(cluster.server)) is not an http(s) URL")
        }
        var tls = TLSOptions()
        if cluster.insecureSkipTLSVerify {
            if cluster.certificateAuthority != nil || cluster.certificateAuthorityData != nil {
                throw fail("clusters.\(context.cluster).insecure-skip-tls-verify", line: clusterLine, "cannot be used together with a certificate authority")
            }
            tls.insecureSkipVerify = true
            warnings.append("\(file): cluster \(context.cluster): insecure-skip-tls-verify is set; the API server's certificate is not verified")
        }
        if let path = cluster.certificateAuthority {
            let resolved = kubeconfig.resolve(path)
            guard FileManager.default.isReadableFile(atPath: resolved) else {
                throw fail("clusters.\(context.cluster).certificate-authority", line: clusterLine, "file \(ConfigIssue.quote(resolved)) does not exist or is not readable")
            }
            tls.caFile = resolved
        }
        if let data = cluster.certificateAuthorityData { tls.caPEM = data }

        // Client certificates: files (relative to the kubeconfig) or inline data.
        func material(_ path: String?, _ data: Data?, _ key: String) throws(KubeconfigError) -> Data? {
            if let data { return data }
            guard let path else { return nil }
            let resolved = kubeconfig.resolve(path)
            do {
                return Data(try BoundedFile.read(resolved, limit: 1 << 20))
            } catch {
                throw fail("users.\(context.user ?? "").\(key)", line: userLine, "cannot read \(ConfigIssue.quote(resolved)): \(error)")
            }
        }
        tls.clientCertificatePEM = try material(user.clientCertificate, user.clientCertificateData, "client-certificate")
        tls.clientKeyPEM = try material(user.clientKey, user.clientKeyData, "client-key")
        if (tls.clientCertificatePEM == nil) != (tls.clientKeyPEM == nil) {
            throw fail("users.\(context.user ?? "")", line: userLine, "a client certificate needs both client-certificate(-data) and client-key(-data)")
        }

        var auth = Auth.none
        if let token = user.token, !token.isEmpty {
            auth = .token(token)
        } else if let path = user.tokenFile, !path.isEmpty {
            let resolved = kubeconfig.resolve(path)
            guard FileManager.default.isReadableFile(atPath: resolved) else {
                throw fail("users.\(context.user ?? "").tokenFile", line: userLine, "file \(ConfigIssue.quote(resolved)) does not exist or is not readable")
            }
            auth = .tokenFile(resolved)
        } else if let exec = user.exec {
            auth = .exec(exec, directory: kubeconfig.directory)
        }

        let sendsCredentials = auth != .none || tls.clientCertificatePEM != nil
        if scheme == "http" && sendsCredentials {
            // Like client-go, never send a credential in clear text to another machine.
            guard isLoopback(host) else {
                throw fail("clusters.\(context.cluster).server", line: cluster.line, "\(ConfigIssue.quote(cluster.server)) is plain http to another host; credentials would travel in clear text (use https)")
            }
            warnings.append("\(file): cluster \(context.cluster): credentials go over plain http to \(host) (loopback only)")
        }
        if let proxy = cluster.proxyURL, !proxy.isEmpty {
            let lower = proxy.lowercased()
            guard ["http://", "https://", "socks5://", "socks5h://"].contains(where: lower.hasPrefix) else {
                throw fail("clusters.\(context.cluster).proxy-url", line: clusterLine, "\(ConfigIssue.quote(proxy)) is not an http, https or socks5 proxy URL")
            }
        }
        var server = cluster.server
        while server.hasSuffix("/") { server.removeLast() }
        var info: [String: String] = ["server": server]
        if let name = cluster.tlsServerName { info["tls-server-name"] = name }
        if let proxy = cluster.proxyURL { info["proxy-url"] = proxy }
        if let data = cluster.certificateAuthorityData { info["certificate-authority-data"] = data.base64EncodedString() }
        return ClusterAccess(
            server: server, tls: tls, tlsServerName: cluster.tlsServerName.flatMap { $0.isEmpty ? nil : $0 },
            proxy: cluster.proxyURL.flatMap { $0.isEmpty ? nil : $0 }, auth: auth,
            origin: "kubeconfig \(file) (context \(contextName))", execClusterInfo: info, warnings: warnings
        )
    }

    static func isLoopback(_ host: String) -> Bool {
        let bare = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")).lowercased()
        return bare == "localhost" || bare == "::1" || bare.hasPrefix("127.")
    }

    /// HTTP options for this cluster: TLS material, proxy, and the `tls-server-name` mapping
    /// (TLS verifies and SNI names that name while the connection goes to `server`).
    func httpOptions(timeout: Duration?, maxBodySize: Int, lowSpeedTime: Duration? = nil) -> (HTTPClientOptions, baseURL: String) {
        var baseURL = server
        var connectTo: [String] = []
        if let name = tlsServerName, let url = URL(string: server), let host = url.host {
            let port = url.port ?? (url.scheme == "https" ? 443 : 80)
            connectTo = ["\(name):\(port):\(host):\(port)"]
            baseURL = "\(url.scheme ?? "https")://\(name):\(port)"
        }
        let options = HTTPClientOptions(
            connectTimeout: .seconds(5), totalTimeout: timeout, lowSpeedTime: lowSpeedTime, tls: tls,
            maxBodySize: maxBodySize, proxy: proxy, connectTo: connectTo
        )
        return (options, baseURL)
    }
}
