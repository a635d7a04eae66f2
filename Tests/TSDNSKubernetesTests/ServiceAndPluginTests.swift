import Foundation
import Testing
import TSDNSCore
@testable import TSDNSKubernetes

@Suite("Services: decoding, annotation matching, device mapping")
struct ServiceTests {
    @Test func decodesTheReferenceServices() throws {
        let page = try JSONDecoder().decode(ServiceListPage.self, from: Data(contentsOf: try fixture("servicelist-paged.json")))
        #expect(page.metadata?.resourceVersion == "48213")
        #expect(page.metadata?.continue?.isEmpty == false)
        let first = try #require(page.items?.first)
        #expect(first.key == "dns/coredns-tailnet")
        #expect(first.annotations["tailscale.com/hostname"] == "dns-coredns")

        let balanced = try JSONDecoder().decode(KubeService.self, from: Data(contentsOf: try fixture("service-tailscale-loadbalancer.json")))
        #expect(balanced.spec?.loadBalancerClass == "tailscale")
        let ingress = balanced.status?.loadBalancer?.ingress ?? []
        #expect(ingress.contains { $0.ip != nil } && ingress.contains { $0.hostname != nil })
        #expect(IPAddress(ServiceDevice.node(for: balanced))?.isTailscaleRange == true)

        let exposed = try JSONDecoder().decode(KubeService.self, from: Data(contentsOf: try fixture("service-expose-annotation.json")))
        #expect(exposed.status?.loadBalancer?.ingress == nil)
        #expect(AnnotationSelector(key: "tailscale.com/expose", value: "true").matches(exposed))
    }

    @Test(arguments: [
        ("tag:k8s,tag:dns", true),
        ("tag:k8s, tag:dns ", true),
        (" tag:dns", true),
        ("tag:dns", true),
        ("tag:dnsx,tag:k8s", false),
        ("tag:DNS", false),
        ("", false),
    ])
    func annotationValuesMatchOneItemOfACommaList(_ value: String, _ expected: Bool) {
        let service = KubeService(namespace: "dns", name: "a", annotations: ["tailscale.com/tags": value])
        #expect(AnnotationSelector(key: "tailscale.com/tags", value: "tag:dns").matches(service) == expected)
    }

    @Test func aMissingAnnotationKeyNeverMatches() {
        let service = KubeService(namespace: "dns", name: "a", annotations: ["other": "tag:dns"])
        #expect(!AnnotationSelector(key: "tailscale.com/tags", value: "tag:dns").matches(service))
    }

    @Test func aServiceNamesItsDeviceByAddressThenHostnameThenNamespaceAndName() {
        let withAddress = KubeService(
            namespace: "dns", name: "coredns", annotations: ["tailscale.com/hostname": "dns-coredns"],
            ingress: [.init(ip: nil, hostname: "dns-coredns.tail0sim.ts.net"), .init(ip: "100.64.0.7", hostname: nil)]
        )
        #expect(ServiceDevice.node(for: withAddress) == "100.64.0.7")
        // An address outside Tailscale's ranges is not the device's.
        let foreign = KubeService(namespace: "dns", name: "coredns", annotations: ["tailscale.com/hostname": "dns-coredns"], ingress: [.init(ip: "10.0.0.5", hostname: nil)])
        #expect(ServiceDevice.node(for: foreign) == "dns-coredns")
        let bare = KubeService(namespace: "dns", name: "coredns")
        #expect(ServiceDevice.node(for: bare) == "dns-coredns")
        let other = KubeService(namespace: "kube-system", name: "resolver")
        #expect(ServiceDevice.node(for: other) == "kube-system-resolver")
        #expect(ServiceDevice.source(cluster: "prod", bare) == "kubernetes:prod/dns/coredns")
        #expect(KubeService(namespace: "a", name: "b", deletionTimestamp: "2026-12-01T10:00:00Z").isBeingDeleted)
        #expect(!bare.isBeingDeleted)
    }
}

@Suite("Exec credential plugins", .timeLimit(.minutes(1)))
struct ExecPluginTests {
    /// A plugin written as a small shell script, as operators write them.
    /// A script written through a descriptor no child keeps: other tests start daemons
    /// (dnsmasq, microsocks) that live for seconds, and one started while the script was
    /// open for writing would hold it open, so that running it fails with ETXTBSY for as
    /// long as the daemon runs (seen in a full run of the suite; Foundation's write does not set O_CLOEXEC).
    func plugin(_ body: String, in directory: URL, name: String = "plugin.sh") throws -> String {
        let url = directory.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        let descriptor = open(url.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o755)
        guard descriptor >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        defer { close(descriptor) }
        let bytes = Array("#!/bin/sh\n\(body)\n".utf8)
        guard write(descriptor, bytes, bytes.count) == bytes.count else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        return url.path
    }

    func exec(_ command: String, apiVersion: String = ExecPlugin.v1beta1, args: [String] = [], env: [(String, String)] = []) -> Kubeconfig.ExecConfig {
        var config = Kubeconfig.ExecConfig(apiVersion: apiVersion, command: command)
        config.args = args
        config.env = env.map { (name: $0.0, value: $0.1) }
        config.interactiveMode = "IfAvailable"
        return config
    }

    @Test func runsThePluginWithItsEnvironmentArgumentsAndExecInfo() throws {
        let directory = try scratch()
        defer { try? FileManager.default.removeItem(at: directory) }
        let seen = directory.appendingPathComponent("seen")
        let command = try plugin("""
        printf '%s\\n%s\\n%s\\n' "$KUBERNETES_EXEC_INFO" "$AWS_PROFILE" "$1" > \(seen.path)
        echo '{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1beta1","status":{"token":"tok-1","expirationTimestamp":"2026-12-01T14:17:03Z"}}'
        """, in: directory)
        var config = exec(command, args: ["--cluster-name"], env: [("AWS_PROFILE", "dns-admin")])
        config.provideClusterInfo = true
        let credential = try ExecPlugin.run(config, directory: directory.path, cluster: ["server": "https://127.0.0.1:6443"], timeout: .seconds(10))
        #expect(credential.token == "tok-1")
        #expect(credential.expires == ISO8601DateFormatter().date(from: "2026-12-01T14:17:03Z"))
        let lines = try String(contentsOf: seen, encoding: .utf8).split(separator: "\n").map(String.init)
        let info = try #require(try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any])
        #expect(info["apiVersion"] as? String == ExecPlugin.v1beta1)
        let spec = try #require(info["spec"] as? [String: Any])
        #expect(spec["interactive"] as? Bool == false)
        #expect((spec["cluster"] as? [String: Any])?["server"] as? String == "https://127.0.0.1:6443")
        #expect(lines[1] == "dns-admin")
        #expect(lines[2] == "--cluster-name")
    }

    @Test func aRelativeCommandWithASlashIsRelativeToTheKubeconfig() throws {
        let directory = try scratch()
        defer { try? FileManager.default.removeItem(at: directory) }
        _ = try plugin("echo '{\"kind\":\"ExecCredential\",\"apiVersion\":\"client.authentication.k8s.io/v1\",\"status\":{\"clientCertificateData\":\"CERT\",\"clientKeyData\":\"KEY\"}}'", in: directory.appendingPathComponent("bin"))
        let credential = try ExecPlugin.run(exec("bin/plugin.sh", apiVersion: ExecPlugin.v1), directory: directory.path, cluster: nil, timeout: .seconds(10))
        #expect(credential.clientCertificatePEM == Data("CERT".utf8) && credential.clientKeyPEM == Data("KEY".utf8))
        #expect(credential.token == nil && credential.expires == nil)
    }

    @Test func failuresNameTheCommand() throws {
        let directory = try scratch()
        defer { try? FileManager.default.removeItem(at: directory) }
        let failing = try plugin("echo 'token expired, run aws sso login' >&2\nexit 3", in: directory, name: "failing.sh")
        #expect { try ExecPlugin.run(exec(failing), directory: directory.path, cluster: nil, timeout: .seconds(10)) } throws: { error in
            "\(error)" == "exec credential plugin \(failing): exited with status 3: token expired, run aws sso login"
        }
        let hanging = try plugin("exec sleep 30", in: directory, name: "hanging.sh")
        let started = ContinuousClock.now
        #expect { try ExecPlugin.run(exec(hanging), directory: directory.path, cluster: nil, timeout: .milliseconds(300)) } throws: { error in
            "\(error)".contains("\(hanging): did not finish within")
        }
        #expect(ContinuousClock.now - started < .seconds(5))
        #expect { try ExecPlugin.run(exec("no-such-plugin-tsdns"), directory: directory.path, cluster: nil, timeout: .seconds(5)) } throws: { error in
            "\(error)".contains("no-such-plugin-tsdns: not found")
        }
        let wrongVersion = try plugin("echo '{\"kind\":\"ExecCredential\",\"apiVersion\":\"client.authentication.k8s.io/v1\",\"status\":{\"token\":\"t\"}}'", in: directory, name: "wrong.sh")
        #expect { try ExecPlugin.run(exec(wrongVersion), directory: directory.path, cluster: nil, timeout: .seconds(10)) } throws: { error in
            "\(error)".contains("the kubeconfig asks for client.authentication.k8s.io/v1beta1")
        }
        let halfCertificate = try plugin("echo '{\"kind\":\"ExecCredential\",\"apiVersion\":\"client.authentication.k8s.io/v1beta1\",\"status\":{\"clientCertificateData\":\"C\"}}'", in: directory, name: "half.sh")
        #expect(throws: ExecPluginError.self) { try ExecPlugin.run(exec(halfCertificate), directory: directory.path, cluster: nil, timeout: .seconds(10)) }
    }

    @Test func parsesTheReferenceOutputs() throws {
        let reference = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: try fixture("execcredential-v1.json"))) as? [String: Any])
        for (key, expectToken) in [("stdout_token", true), ("stdout_token_no_expiry", true), ("stdout_client_certificate", false)] {
            let output = try JSONSerialization.data(withJSONObject: try #require(reference[key]))
            let credential = try ExecPlugin.parse(output, apiVersion: ExecPlugin.v1, command: "p")
            #expect((credential.token != nil) == expectToken, "\(key)")
            #expect((credential.expires == nil) == (key == "stdout_token_no_expiry"), "\(key)")
        }
    }
}
