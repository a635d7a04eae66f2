import Foundation
import Testing
import TSDNSConfig
@testable import TSDNSKubernetes

func fixture(_ name: String) throws -> URL {
    try #require(Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: nil))
}

func scratch() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("tsdns-kube-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

func write(_ text: String, _ url: URL, mode: Int = 0o644) throws {
    try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    try text.write(to: url, atomically: true, encoding: .utf8)
    try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: url.path)
}

/// Kubeconfigs as client-go reads them: the reference files, every auth kind, path rules,
/// and errors that name the file, the line and the key.
@Suite("Kubeconfig parsing and credential resolution")
struct KubeconfigTests {
    @Test func readsTheReferenceKubeconfigs() throws {
        let kind = try KubeconfigParser.load(try fixture("kubeconfig-kind.yaml").path)
        #expect(kind.currentContext == "kind-tsdns")
        #expect(kind.clusters["kind-tsdns"]?.server == "https://127.0.0.1:38943")
        #expect(String(decoding: try #require(kind.users["kind-tsdns"]?.clientCertificateData), as: UTF8.self).hasPrefix("-----BEGIN CERTIFICATE-----"))
        #expect(kind.users["kind-tsdns"]?.clientKeyData != nil)

        let eks = try KubeconfigParser.load(try fixture("kubeconfig-eks-exec.yaml").path)
        let exec = try #require(eks.users.values.first?.exec)
        #expect(exec.apiVersion == ExecPlugin.v1beta1)
        #expect(exec.command == "aws")
        #expect(exec.args == ["--region", "us-west-2", "eks", "get-token", "--cluster-name", "tsdns", "--output", "json"])
        #expect(exec.env.map(\.name) == ["AWS_PROFILE"] && exec.env.map(\.value) == ["dns-admin"])
        #expect(exec.interactiveMode == "IfAvailable")

        let gke = try KubeconfigParser.load(try fixture("kubeconfig-gke-exec.yaml").path)
        #expect(gke.users.values.first?.exec?.provideClusterInfo == true)

        let proxied = try KubeconfigParser.load(try fixture("kubeconfig-tokenfile-proxy.yaml").path)
        #expect(proxied.clusters["tailnet-proxied"]?.tlsServerName == "kubernetes.default.svc")
        #expect(proxied.clusters["tailnet-proxied"]?.proxyURL == "socks5://127.0.0.1:1055")
        #expect(proxied.clusters["lab-insecure"]?.insecureSkipTLSVerify == true)
        #expect(proxied.users["reconciler"]?.tokenFile == "secrets/reconciler.token")
        #expect(proxied.contexts["tailnet-proxied"]?.namespace == "dns")
    }

    @Test func relativePathsResolveAgainstTheKubeconfigsDirectory() throws {
        let directory = try scratch()
        defer { try? FileManager.default.removeItem(at: directory) }
        let source = try String(contentsOf: try fixture("kubeconfig-tokenfile-proxy.yaml"), encoding: .utf8)
        try write(source, directory.appendingPathComponent("conf/kubeconfig"))
        try write("fake CA\n", directory.appendingPathComponent("conf/ca.crt"))
        try write("reconciler-token\n", directory.appendingPathComponent("conf/secrets/reconciler.token"))
        var cluster = Config.Cluster(name: "prod")
        cluster.kubeconfig = directory.appendingPathComponent("conf/kubeconfig").path
        let access = try ClusterAccess.resolve(cluster, key: "kubernetes.clusters[0]")
        #expect(access.server == "https://100.64.10.20:6443")
        #expect(access.tls.caFile == directory.appendingPathComponent("conf/ca.crt").path)
        #expect(access.auth == .tokenFile(directory.appendingPathComponent("conf/secrets/reconciler.token").path))
        #expect(access.proxy == "socks5://127.0.0.1:1055")
        #expect(access.tlsServerName == "kubernetes.default.svc")
        // tls-server-name: TLS verifies that name while the connection goes to the server's address.
        let (options, baseURL) = access.httpOptions(timeout: .seconds(1), maxBodySize: 1 << 20)
        #expect(baseURL == "https://kubernetes.default.svc:6443")
        #expect(options.connectTo == ["kubernetes.default.svc:6443:100.64.10.20:6443"])

        // The other context: insecure, warned.
        cluster.context = "lab-insecure"
        let insecure = try ClusterAccess.resolve(cluster, key: "kubernetes.clusters[0]")
        #expect(insecure.tls.insecureSkipVerify)
        #expect(insecure.warnings.contains { $0.contains("insecure-skip-tls-verify") })
    }

    @Test func dataFieldsAndCertificateFilesBecomeTLSMaterial() throws {
        let directory = try scratch()
        defer { try? FileManager.default.removeItem(at: directory) }
        try write("CERT PEM\n", directory.appendingPathComponent("client.crt"))
        try write("KEY PEM\n", directory.appendingPathComponent("client.key"))
        try write("""
        apiVersion: v1
        kind: Config
        current-context: c
        clusters:
        - name: c
          cluster:
            server: https://127.0.0.1:6443/
            certificate-authority-data: \(Data("CA PEM\n".utf8).base64EncodedString())
        users:
        - name: u
          user:
            client-certificate: client.crt
            client-key: client.key
        contexts:
        - name: c
          context: {cluster: c, user: u}
        """, directory.appendingPathComponent("kubeconfig"))
        var cluster = Config.Cluster(name: "prod")
        cluster.kubeconfig = directory.appendingPathComponent("kubeconfig").path
        let access = try ClusterAccess.resolve(cluster, key: "k")
        #expect(access.server == "https://127.0.0.1:6443")
        #expect(access.tls.caPEM == Data("CA PEM\n".utf8))
        #expect(access.tls.clientCertificatePEM == Data("CERT PEM\n".utf8))
        #expect(access.tls.clientKeyPEM == Data("KEY PEM\n".utf8))
        #expect(access.auth == .none)
    }

    @Test func errorsNameTheFileTheLineAndTheKey() throws {
        func issues(_ text: String) throws -> [String] {
            do {
                _ = try KubeconfigParser.parse(text, file: "/etc/tsdns/prod.kubeconfig")
                return []
            } catch {
                return error.issues.map(\.description)
            }
        }
        #expect(try issues("clusters:\n- name: a\n  cluster:\n    server: [1, 2]\n") == ["/etc/tsdns/prod.kubeconfig:4: clusters[0].cluster.server: must be a string"])
        #expect(try issues("users:\n- name: u\n  user:\n    client-key-data: \"not base64!\"\n") == ["/etc/tsdns/prod.kubeconfig:4: users[0].user.client-key-data: is not valid base64"])
        #expect(try issues("clusters: [\n") .first?.hasPrefix("/etc/tsdns/prod.kubeconfig:2: invalid YAML") == true)
        let v1 = try issues("users:\n- name: u\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: get-token\n")
        #expect(v1 == ["/etc/tsdns/prod.kubeconfig:5: users[0].user.exec.interactiveMode: is required with client.authentication.k8s.io/v1 (Never or IfAvailable)"])
        let old = try issues("users:\n- name: u\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1alpha1\n      command: x\n")
        #expect(old.first?.contains("users[0].user.exec.apiVersion") == true)
        #expect(try issues("users:\n- name: u\n  user:\n    auth-provider: {name: gcp}\n").first?.contains("is not supported") == true)
        // Unknown keys are someone else's (extensions, preferences): ignored, as kubectl ignores them.
        #expect(try issues("preferences: {}\nextensions: []\nclusters:\n- name: a\n  cluster: {server: https://x, extensions: []}\n").isEmpty)
    }

    @Test func contextsMustNameWhatExists() throws {
        let directory = try scratch()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("kubeconfig")
        try write("current-context: c\nclusters:\n- name: a\n  cluster: {server: https://x}\ncontexts:\n- name: c\n  context: {cluster: b, user: u}\n", file)
        var cluster = Config.Cluster(name: "prod")
        cluster.kubeconfig = file.path
        #expect(throws: KubeconfigError.self) { try ClusterAccess.resolve(cluster, key: "k") }
        do {
            _ = try ClusterAccess.resolve(cluster, key: "k")
        } catch {
            #expect(error.description == "\(file.path):6: contexts: context \"c\" names cluster \"b\", which is not in clusters")
        }
        cluster.context = "missing"
        do {
            _ = try ClusterAccess.resolve(cluster, key: "k")
            Issue.record("an unknown context resolved")
        } catch {
            #expect(error.description.contains("no context named \"missing\""))
        }
    }

    @Test func credentialsNeverTravelInClearTextToAnotherHost() throws {
        let directory = try scratch()
        defer { try? FileManager.default.removeItem(at: directory) }
        func access(_ server: String) throws -> ClusterAccess {
            let file = directory.appendingPathComponent("kubeconfig")
            try write("current-context: c\nclusters:\n- name: a\n  cluster: {server: '\(server)'}\nusers:\n- name: u\n  user: {token: secret}\ncontexts:\n- name: c\n  context: {cluster: a, user: u}\n", file)
            var cluster = Config.Cluster(name: "prod")
            cluster.kubeconfig = file.path
            return try ClusterAccess.resolve(cluster, key: "k")
        }
        #expect(try access("http://127.0.0.1:8001").warnings.contains { $0.contains("plain http") })
        #expect(try access("http://localhost:8001").auth == .token("secret"))
        do {
            _ = try access("http://10.0.0.1:6443")
            Issue.record("a token to another host over http was accepted")
        } catch {
            #expect("\(error)".contains("clear text"))
        }
        #expect(throws: KubeconfigError.self) { try access("ftp://10.0.0.1") }
    }

    @Test func resolutionOrderIsExplicitThenInClusterThenKubeconfigVariableThenHome() throws {
        let directory = try scratch()
        defer { try? FileManager.default.removeItem(at: directory) }
        let serviceAccount = directory.appendingPathComponent("sa")
        try write("sa-token\n", serviceAccount.appendingPathComponent("token"))
        try write("CA\n", serviceAccount.appendingPathComponent("ca.crt"))
        let first = directory.appendingPathComponent("first.kubeconfig")
        let home = directory.appendingPathComponent("home")
        try write("current-context: c\nclusters:\n- name: a\n  cluster: {server: 'https://first:6443'}\ncontexts:\n- name: c\n  context: {cluster: a}\n", first)
        try write("current-context: c\nclusters:\n- name: a\n  cluster: {server: 'https://home:6443'}\ncontexts:\n- name: c\n  context: {cluster: a}\n", home.appendingPathComponent(".kube/config"))
        let cluster = Config.Cluster(name: "prod")
        let pod = ClusterAccess.Environment(
            variables: ["KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443", "KUBECONFIG": "\(first.path):/nonexistent"],
            serviceAccountDirectory: serviceAccount.path, home: home.path
        )
        let inCluster = try ClusterAccess.resolve(cluster, key: "k", environment: pod)
        #expect(inCluster.server == "https://10.96.0.1:443")
        #expect(inCluster.auth == .tokenFile(serviceAccount.appendingPathComponent("token").path))
        #expect(inCluster.tls.caFile == serviceAccount.appendingPathComponent("ca.crt").path)

        var ipv6 = pod
        ipv6.variables["KUBERNETES_SERVICE_HOST"] = "fd00::1"
        #expect(try ClusterAccess.resolve(cluster, key: "k", environment: ipv6).server == "https://[fd00::1]:443")

        // No token file: not a pod; $KUBECONFIG's first file wins.
        var notPod = pod
        notPod.serviceAccountDirectory = directory.appendingPathComponent("nothing").path
        #expect(try ClusterAccess.resolve(cluster, key: "k", environment: notPod).server == "https://first:6443")
        notPod.variables["KUBECONFIG"] = nil
        #expect(try ClusterAccess.resolve(cluster, key: "k", environment: notPod).server == "https://home:6443")
        notPod.home = directory.appendingPathComponent("nohome").path
        #expect(throws: KubeconfigError.self) { try ClusterAccess.resolve(cluster, key: "k", environment: notPod) }

        // An explicit kubeconfig wins over the pod.
        var explicit = cluster
        explicit.kubeconfig = home.appendingPathComponent(".kube/config").path
        #expect(try ClusterAccess.resolve(explicit, key: "k", environment: pod).server == "https://home:6443")
    }
}
