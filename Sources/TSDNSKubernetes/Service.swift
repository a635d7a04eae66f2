import Foundation
import TSDNSCore

/// A core/v1 Service, with only the fields this program reads. Everything else in the body
/// (managedFields, ports, conditions...) is skipped by the decoder.
public struct KubeService: Sendable, Equatable, Decodable {
    public struct Metadata: Sendable, Equatable, Decodable {
        public var name: String
        public var namespace: String
        public var resourceVersion: String?
        public var annotations: [String: String]?
        public var deletionTimestamp: String?
    }

    public struct Spec: Sendable, Equatable, Decodable {
        public var type: String?
        public var loadBalancerClass: String?
    }

    public struct Ingress: Sendable, Equatable, Decodable {
        public var ip: String?
        public var hostname: String?
    }

    public struct Status: Sendable, Equatable, Decodable {
        public struct LoadBalancer: Sendable, Equatable, Decodable {
            public var ingress: [Ingress]?
        }
        public var loadBalancer: LoadBalancer?
    }

    public var metadata: Metadata
    public var spec: Spec?
    public var status: Status?

    public init(namespace: String, name: String, annotations: [String: String] = [:], ingress: [Ingress] = [], deletionTimestamp: String? = nil) {
        metadata = Metadata(name: name, namespace: namespace, resourceVersion: nil, annotations: annotations, deletionTimestamp: deletionTimestamp)
        spec = Spec(type: "LoadBalancer", loadBalancerClass: "tailscale")
        status = Status(loadBalancer: Status.LoadBalancer(ingress: ingress))
    }

    public var key: String { "\(metadata.namespace)/\(metadata.name)" }
    public var annotations: [String: String] { metadata.annotations ?? [:] }
    /// A Service with a deletionTimestamp is on its way out: finalizers hold it, its proxy goes.
    public var isBeingDeleted: Bool { metadata.deletionTimestamp.map { !$0.isEmpty } ?? false }
}

/// `key=value` from `kubernetes.clusters[].annotation`. The Service's value matches when
/// one item of its comma-separated list equals `value` (`tailscale.com/tags:
/// "tag:k8s, tag:dns"` matches `tag:dns`); items are trimmed.
public struct AnnotationSelector: Sendable, Equatable, CustomStringConvertible {
    public var key: String
    public var value: String

    public init(key: String, value: String) {
        self.key = key
        self.value = value
    }

    public func matches(_ service: KubeService) -> Bool {
        guard let text = service.annotations[key] else { return false }
        return text.split(separator: ",", omittingEmptySubsequences: true).contains {
            $0.trimmingCharacters(in: .whitespaces) == value
        }
    }

    public var description: String { "\(key)=\(value)" }
}

/// How a Service names its tailnet device (CONTRACT §3): a Tailscale address in
/// `status.loadBalancer.ingress[].ip`; else the `tailscale.com/hostname` annotation; else the
/// operator's default device name, `<namespace>-<name>`.
public enum ServiceDevice {
    public static let hostnameAnnotation = "tailscale.com/hostname"

    public static func node(for service: KubeService) -> String {
        for ingress in service.status?.loadBalancer?.ingress ?? [] {
            if let text = ingress.ip, let address = IPAddress(text), address.isTailscaleRange { return address.description }
        }
        if let hostname = service.annotations[hostnameAnnotation]?.trimmingCharacters(in: .whitespaces), !hostname.isEmpty {
            return hostname
        }
        return "\(service.metadata.namespace)-\(service.metadata.name)"
    }

    /// The source a Service gives its device: `kubernetes:<cluster>/<namespace>/<name>`.
    public static func source(cluster: String, _ service: KubeService) -> String {
        "kubernetes:\(cluster)/\(service.metadata.namespace)/\(service.metadata.name)"
    }
}

/// The annotated Services of one cluster, read in one LIST (all its pages).
public struct ClusterServices: Sendable, Equatable {
    public var cluster: String
    /// Annotated and not being deleted, in namespace/name order.
    public var services: [KubeService]
    /// The list's resourceVersion (a watch starts from it).
    public var resourceVersion: String
    /// Every Service the LIST returned, annotated or not.
    public var listed: Int

    public init(cluster: String, services: [KubeService], resourceVersion: String, listed: Int) {
        self.cluster = cluster
        self.services = services
        self.resourceVersion = resourceVersion
        self.listed = listed
    }

    /// The members of the cluster's source: each Service's device name and source.
    public var members: [(node: String, source: String)] {
        services.map { (ServiceDevice.node(for: $0), ServiceDevice.source(cluster: cluster, $0)) }
    }
}
