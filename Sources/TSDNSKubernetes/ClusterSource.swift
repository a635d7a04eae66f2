import Foundation
import Logging
import TSDNSConfig

/// One configured cluster as a source of resolvers: its client, namespace and annotation.
/// `read()` is one LIST (every page) filtered to the annotated Services that are not being
/// deleted.
public struct ClusterSource: Sendable {
    public let name: String
    public let namespace: String?
    public let selector: AnnotationSelector
    public let client: KubernetesClient

    public init(name: String, namespace: String?, selector: AnnotationSelector, client: KubernetesClient) {
        self.name = name
        self.namespace = namespace
        self.selector = selector
        self.client = client
    }

    /// Resolves the cluster's credentials and builds its client; a problem is a
    /// configuration error. `warnings` are for the log (insecure TLS, plain http).
    public static func make(
        _ cluster: Config.Cluster, index: Int, logger: Logger, options: KubernetesClient.Options = KubernetesClient.Options(),
        environment: ClusterAccess.Environment = ClusterAccess.Environment(), onResponse: (@Sendable (String) -> Void)? = nil
    ) throws(KubeconfigError) -> ClusterSource {
        let access = try ClusterAccess.resolve(cluster, key: "kubernetes.clusters[\(index)]", environment: environment)
        for warning in access.warnings { logger.warning("\(warning)") }
        return ClusterSource(
            name: cluster.name, namespace: cluster.namespace,
            selector: AnnotationSelector(key: cluster.annotationKey, value: cluster.annotationValue),
            client: KubernetesClient(access: access, options: options, logger: logger, onResponse: onResponse)
        )
    }

    public func read() async throws -> ClusterServices {
        let (items, resourceVersion) = try await client.listServices(namespace: namespace)
        let annotated = items.filter { selector.matches($0) && !$0.isBeingDeleted }.sorted { $0.key < $1.key }
        return ClusterServices(cluster: name, services: annotated, resourceVersion: resourceVersion, listed: items.count)
    }
}
