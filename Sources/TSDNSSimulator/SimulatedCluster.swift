import Foundation
import Synchronization

/// A Service as the simulated cluster stores it: the fields the Tailscale operator and
/// this program care about (shapes as in `shared/reference/kubernetes/`).
public struct SimulatedService: Sendable, Equatable {
    public struct Ingress: Sendable, Equatable {
        public var ip: String?
        public var hostname: String?
        public init(ip: String? = nil, hostname: String? = nil) {
            self.ip = ip
            self.hostname = hostname
        }
    }

    public var namespace: String
    public var name: String
    public var annotations: [String: String]
    public var type: String
    public var loadBalancerClass: String?
    public var ingress: [Ingress]
    /// Set while finalizers hold a deleted Service.
    public var deletionTimestamp: String?

    public init(
        namespace: String, name: String, annotations: [String: String] = [:], type: String = "LoadBalancer",
        loadBalancerClass: String? = "tailscale", ingress: [Ingress] = [], deletionTimestamp: String? = nil
    ) {
        self.namespace = namespace
        self.name = name
        self.annotations = annotations
        self.type = type
        self.loadBalancerClass = loadBalancerClass
        self.ingress = ingress
        self.deletionTimestamp = deletionTimestamp
    }

    /// A Service exposed by the operator whose proxy has its tailnet address.
    public static func tailscale(
        namespace: String, name: String, annotation: (String, String) = ("tailscale.com/tags", "tag:k8s,tag:dns"),
        hostname: String? = nil, address: String? = nil, magicDNSName: String? = nil
    ) -> SimulatedService {
        var annotations = [annotation.0: annotation.1]
        if let hostname { annotations["tailscale.com/hostname"] = hostname }
        var ingress: [Ingress] = []
        if let magicDNSName { ingress.append(Ingress(hostname: magicDNSName)) }
        if let address { ingress.append(Ingress(ip: address)) }
        return SimulatedService(namespace: namespace, name: name, annotations: annotations, ingress: ingress)
    }

    var key: String { "\(namespace)/\(name)" }
}

/// A simulated Kubernetes API server: core/v1 Services LIST (paged) and WATCH (chunked
/// JSON events, bookmarks, a bounded history), enough discovery for kubectl, bearer-token
/// and client-certificate authentication, fault injection and a request log. It serves
/// HTTPS when given a TLS identity (kubectl sends credentials only over TLS).
public final class SimulatedCluster: Sendable {
    public typealias Fault = SimulatedFault

    private struct Stored {
        var service: SimulatedService
        var resourceVersion: Int
        var uid: String
        /// The list item's JSON, encoded once: the simulator must not be what a benchmark measures.
        var item = Data()
    }

    private struct Event {
        var type: String
        var object: [String: Any]
        var resourceVersion: Int
    }

    private struct State: @unchecked Sendable {
        var services: [String: Stored] = [:]
        var revision = 48000
        var history: [Event] = []
        /// Watches from a resourceVersion older than this get 410 Expired.
        var oldestWatchable = 48000
        var historyLimit: Int
        var tokens: Set<String>
        var certificateNames: Set<String> = []
        /// Like a `kubectl proxy`: every request is admitted without credentials.
        var anonymous = false
        /// Bumped to expire every `continue` token issued so far.
        var continueEpoch = 0
        /// Bumped to end every open watch.
        var watchEpoch = 0
        var openWatches = 0
        var bookmarkInterval: Duration
        var uidCounter = 0
    }

    private let state: Mutex<State>
    private let changed = NSCondition()
    private let faults = FaultPlan(scope: { $0.hasPrefix("/api/v1/") })
    private let log = RequestLog()
    private let server: Mutex<LoopbackHTTPServer?> = Mutex(nil)
    public let port: Int
    public let baseURL: String
    public let token: String

    /// `historyLimit` bounds the events kept for watches: a watch from before them gets 410.
    public init(
        token: String = "k8s-simulated-token", tls: (any ServerSecurity)? = nil, historyLimit: Int = 1000,
        bookmarkInterval: Duration = .seconds(60), port: Int = 0
    ) throws {
        self.token = token
        state = Mutex(State(historyLimit: historyLimit, tokens: [token], bookmarkInterval: bookmarkInterval))
        let box = WeakClusterBox()
        let http = try LoopbackHTTPServer(port: port, tls: tls) { request in
            box.cluster?.handle(request) ?? ServerResponse(status: 503)
        }
        self.port = http.port
        self.baseURL = http.baseURL
        server.withLock { $0 = http }
        box.cluster = self
    }

    deinit { stop() }

    public func stop() {
        server.withLock { server in
            server?.stop()
            server = nil
        }
        endWatches()
    }

    // MARK: State, for tests and the demo

    public var requests: [LoggedRequest] { log.entries }
    public func clearRequests() { log.clear() }
    public func inject(_ fault: Fault) { faults.inject(fault) }
    public func clearFaults() { faults.clear() }
    public var openWatches: Int { state.withLock { $0.openWatches } }
    public var resourceVersion: String { state.withLock { String($0.revision) } }

    /// Admits requests without credentials, as a local `kubectl proxy` does.
    public func allowAnonymous() { state.withLock { $0.anonymous = true } }
    public func acceptToken(_ token: String) { state.withLock { _ = $0.tokens.insert(token) } }
    public func revokeToken(_ token: String) { state.withLock { _ = $0.tokens.remove(token) } }
    /// Client certificates with this common name (verified against the server's client CA) are admitted.
    public func acceptCertificate(named name: String) { state.withLock { _ = $0.certificateNames.insert(name) } }

    public var services: [SimulatedService] {
        state.withLock { $0.services.values.map(\.service) }.sorted { $0.key < $1.key }
    }

    /// Creates or replaces a Service; watchers see ADDED or MODIFIED.
    public func apply(_ service: SimulatedService) {
        mutate { state in
            state.revision += 1
            let existing = state.services[service.key]
            var uid = existing?.uid ?? ""
            if existing == nil {
                state.uidCounter += 1
                uid = String(format: "6f1c2d3e-8a4b-4c5d-9e6f-%012d", state.uidCounter)
            }
            var stored = Stored(service: service, resourceVersion: state.revision, uid: uid)
            stored.item = (try? JSONSerialization.data(withJSONObject: Self.object(stored, typed: false), options: [.sortedKeys])) ?? Data()
            state.services[service.key] = stored
            return Event(type: existing == nil ? "ADDED" : "MODIFIED", object: Self.object(stored, typed: true), resourceVersion: state.revision)
        }
    }

    /// Deletes a Service; watchers see DELETED with its last state.
    public func delete(namespace: String, name: String) {
        mutate { state in
            guard var stored = state.services.removeValue(forKey: "\(namespace)/\(name)") else { return nil }
            state.revision += 1
            stored.resourceVersion = state.revision
            return Event(type: "DELETED", object: Self.object(stored, typed: true), resourceVersion: state.revision)
        }
    }

    /// Forgets the watch history (as etcd compaction does): a watch from an older
    /// resourceVersion gets an in-stream 410, and every `continue` token expires.
    public func compact() {
        state.withLock { state in
            state.history.removeAll()
            state.oldestWatchable = state.revision
            state.continueEpoch += 1
        }
    }

    /// Ends every open watch, as an API server restart or a load balancer would.
    public func endWatches() {
        state.withLock { $0.watchEpoch += 1 }
        changed.lock()
        changed.broadcast()
        changed.unlock()
    }

    private func mutate(_ change: (inout State) -> Event?) {
        state.withLock { state in
            guard let event = change(&state) else { return }
            state.history.append(event)
            if state.history.count > state.historyLimit {
                let dropped = state.history.removeFirst()
                state.oldestWatchable = dropped.resourceVersion
            }
        }
        changed.lock()
        changed.broadcast()
        changed.unlock()
    }

    /// A kubeconfig for this server. `user` holds the user's fields (`token: ...`,
    /// `client-certificate: ...`); `caFile` is the server's CA for HTTPS.
    public func kubeconfig(user: [(String, String)], caFile: String? = nil, namespace: String? = nil, context: String = "sim") -> String {
        var cluster = "    server: \(baseURL)\n"
        if let caFile { cluster += "    certificate-authority: \(caFile)\n" }
        let userLines = user.map { "    \($0.0): \($0.1)\n" }.joined()
        return """
        apiVersion: v1
        kind: Config
        clusters:
        - name: \(context)
          cluster:
        \(cluster.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
        users:
        - name: \(context)-user
          user:
        \(userLines.isEmpty ? "    {}" : userLines.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
        contexts:
        - name: \(context)
          context:
            cluster: \(context)
            user: \(context)-user
        \(namespace.map { "    namespace: \($0)" } ?? "")
        current-context: \(context)

        """
    }

    // MARK: HTTP

    private func handle(_ request: ServerRequest) -> ServerResponse {
        let index = log.arrived(LoggedRequest(
            method: request.method, path: request.path + (request.query.isEmpty ? "" : "?" + Self.queryText(request.query)),
            status: nil, body: "", isMutating: false
        ))
        let response = route(request)
        log.answered(index, status: response.fault == .dropConnection ? nil : response.status)
        return response
    }

    private func route(_ request: ServerRequest) -> ServerResponse {
        let authorized = state.withLock { state -> Bool in
            if state.anonymous { return true }
            if let name = request.clientCertificateName, state.certificateNames.contains(name) { return true }
            guard let header = request.header("Authorization"), header.hasPrefix("Bearer ") else { return false }
            return state.tokens.contains(String(header.dropFirst(7)))
        }
        guard authorized else { return Self.status(401, reason: "Unauthorized", message: "Unauthorized") }
        guard request.method == "GET" else {
            return Self.status(405, reason: "MethodNotAllowed", message: "the server does not allow this method on the requested resource")
        }
        switch request.path {
        case "/version":
            return Self.json(["major": "1", "minor": "32", "gitVersion": "v1.32.0-tsdns-simulated", "platform": "linux/amd64"])
        case "/api":
            return Self.json(["kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [["clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:\(port)"]]])
        case "/apis":
            return Self.json(["kind": "APIGroupList", "apiVersion": "v1", "groups": [Any]()])
        case "/api/v1":
            return Self.json(["kind": "APIResourceList", "groupVersion": "v1", "resources": [[
                "name": "services", "singularName": "service", "namespaced": true, "kind": "Service",
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"], "shortNames": ["svc"],
            ]]])
        default:
            break
        }
        guard let namespace = Self.servicesNamespace(request.path) else {
            return Self.status(404, reason: "NotFound", message: "the server could not find the requested resource")
        }
        // Faults match the query too, so one can hit only `continue` pages or only watches.
        let fault = faults.take(method: request.method, path: request.path + (request.query.isEmpty ? "" : "?" + Self.queryText(request.query)))
        if case .status(429, let retryAfter)? = fault {
            // What priority-and-fairness sends: plain text, not a Status.
            return ServerResponse(
                status: 429,
                headers: [ServerHeader("Content-Type", "text/plain; charset=utf-8"), ServerHeader("Retry-After", retryAfter ?? "1")],
                body: Data("Too many requests, please try again later.\n".utf8)
            )
        }
        return FaultPlan.answer(fault, error: { code in
            switch code {
            case 401: return Self.status(401, reason: "Unauthorized", message: "Unauthorized")
            case 403: return Self.status(403, reason: "Forbidden", message: "services is forbidden: User \"system:serviceaccount:dns:tsdns\" cannot list resource \"services\" in API group \"\" at the cluster scope")
            case 410: return Self.status(410, reason: "Expired", message: "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.")
            default: return Self.status(code, reason: "InternalError", message: "an error on the server (\"simulated\") has prevented the request from succeeding")
            }
        }, malformed: Data("{\"kind\":\"ServiceList\",\"items\":[".utf8)) {
            let watch = request.query["watch"].map { $0 == "1" || $0 == "true" } ?? false
            return watch ? self.watch(namespace: namespace, request) : self.list(namespace: namespace, request)
        }
    }

    /// `""` for all namespaces, the namespace, or nil when the path is not a Services collection.
    private static func servicesNamespace(_ path: String) -> String? {
        if path == "/api/v1/services" { return "" }
        let parts = path.split(separator: "/", omittingEmptySubsequences: true)
        if parts.count == 5, parts[0] == "api", parts[1] == "v1", parts[2] == "namespaces", parts[4] == "services" {
            return String(parts[3])
        }
        return nil
    }

    private func list(namespace: String, _ request: ServerRequest) -> ServerResponse {
        let limit = request.query["limit"].flatMap(Int.init).flatMap { $0 > 0 ? $0 : nil }
        var start = ""
        var listRevision: Int?
        if let token = request.query["continue"], !token.isEmpty {
            guard let decoded = Self.decodeContinue(token) else {
                return Self.status(400, reason: "BadRequest", message: "continue key is not valid: illegal base64 data")
            }
            let expired = state.withLock { $0.continueEpoch != decoded.epoch }
            if expired {
                return Self.status(410, reason: "Expired", message: "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.")
            }
            start = decoded.start
            listRevision = decoded.revision
        }
        let (items, revision, epoch) = state.withLock { state in
            (state.services.values.filter { namespace.isEmpty || $0.service.namespace == namespace }.sorted { $0.service.key < $1.service.key },
             state.revision, state.continueEpoch)
        }
        let remaining = items.filter { $0.service.key > start }
        let page = limit.map { Array(remaining.prefix($0)) } ?? remaining
        var metadata: [String: Any] = ["resourceVersion": String(listRevision ?? revision)]
        if let limit, remaining.count > limit, let last = page.last {
            metadata["continue"] = Self.encodeContinue(revision: listRevision ?? revision, start: last.service.key, epoch: epoch)
            metadata["remainingItemCount"] = remaining.count - limit
        }
        var body = Data(#"{"apiVersion":"v1","items":["#.utf8)
        for (index, stored) in page.enumerated() {
            if index > 0 { body.append(UInt8(ascii: ",")) }
            body.append(stored.item)
        }
        body.append(contentsOf: Array(#"],"kind":"ServiceList","metadata":"#.utf8))
        body.append((try? JSONSerialization.data(withJSONObject: metadata, options: [.sortedKeys])) ?? Data("{}".utf8))
        body.append(contentsOf: Array("}\n".utf8))
        return ServerResponse(status: 200, headers: [ServerHeader("Content-Type", "application/json")], body: body)
    }

    private func watch(namespace: String, _ request: ServerRequest) -> ServerResponse {
        let requested = request.query["resourceVersion"].flatMap { $0.isEmpty || $0 == "0" ? nil : Int($0) }
        let bookmarks = request.query["allowWatchBookmarks"] == "true" || request.query["allowWatchBookmarks"] == "1"
        let timeout = request.query["timeoutSeconds"].flatMap(Int.init).map { Duration.seconds($0) } ?? .seconds(1800)
        let headers = [ServerHeader("Content-Type", "application/json"), ServerHeader("Cache-Control", "no-cache, private")]
        return ServerResponse(status: 200, headers: headers) { [self] writer in
            let matches: (String) -> Bool = { namespace.isEmpty || $0 == namespace }
            let (epoch, tooOld, oldest) = state.withLock { state -> (Int, Bool, Int) in
                state.openWatches += 1
                return (state.watchEpoch, requested.map { $0 < state.oldestWatchable } ?? false, state.oldestWatchable)
            }
            defer { state.withLock { $0.openWatches -= 1 } }
            if tooOld, let requested {
                let status: [String: Any] = [
                    "kind": "Status", "apiVersion": "v1", "metadata": [String: Any](), "status": "Failure",
                    "message": "too old resource version: \(requested) (\(oldest))", "reason": "Expired", "code": 410,
                ]
                _ = writer.write(Self.line(["type": "ERROR", "object": status]))
                return
            }
            var position: Int  // the resourceVersion already delivered
            if let requested {
                position = requested
            } else {
                // No resourceVersion: the current state as synthetic ADDEDs, then changes.
                let (current, revision) = state.withLock { state in
                    (state.services.values.filter { matches($0.service.namespace) }.sorted { $0.service.key < $1.service.key }, state.revision)
                }
                for stored in current {
                    guard writer.write(Self.line(["type": "ADDED", "object": Self.object(stored, typed: true)])) else { return }
                }
                position = revision
            }
            let deadline = ContinuousClock.now + timeout
            var nextBookmark = ContinuousClock.now + state.withLock { $0.bookmarkInterval }
            while writer.isOpen && ContinuousClock.now < deadline {
                let (events, ended, revision) = state.withLock { state in
                    (state.history.filter { $0.resourceVersion > position }, state.watchEpoch != epoch, state.revision)
                }
                if ended { return }
                for event in events {
                    position = event.resourceVersion
                    let namespaceOfEvent = (event.object["metadata"] as? [String: Any])?["namespace"] as? String ?? ""
                    guard matches(namespaceOfEvent) else { continue }
                    guard writer.write(Self.line(["type": event.type, "object": event.object])) else { return }
                }
                if bookmarks && ContinuousClock.now >= nextBookmark {
                    position = max(position, revision)
                    let bookmark: [String: Any] = [
                        "kind": "Service", "apiVersion": "v1", "metadata": ["resourceVersion": String(position)],
                        "spec": [String: Any](), "status": ["loadBalancer": [String: Any]()],
                    ]
                    guard writer.write(Self.line(["type": "BOOKMARK", "object": bookmark])) else { return }
                    nextBookmark = ContinuousClock.now + state.withLock { $0.bookmarkInterval }
                }
                if events.isEmpty {
                    // Woken by a change or an end; the timeout bounds how late a bookmark or the deadline is noticed.
                    changed.lock()
                    _ = changed.wait(until: Date().addingTimeInterval(0.05))
                    changed.unlock()
                }
            }
        }
    }

    // MARK: Encoding

    private static func object(_ stored: Stored, typed: Bool) -> [String: Any] {
        let service = stored.service
        var metadata: [String: Any] = [
            "name": service.name, "namespace": service.namespace, "uid": stored.uid,
            "resourceVersion": String(stored.resourceVersion), "creationTimestamp": "2026-11-30T14:02:51Z",
        ]
        if !service.annotations.isEmpty { metadata["annotations"] = service.annotations }
        if let deletion = service.deletionTimestamp {
            metadata["deletionTimestamp"] = deletion
            metadata["deletionGracePeriodSeconds"] = 0
            metadata["finalizers"] = ["tailscale.com/finalizer"]
        }
        var spec: [String: Any] = [
            "type": service.type, "ports": [["name": "dns-udp", "port": 53, "protocol": "UDP", "targetPort": 53]],
            "clusterIP": "10.96.0.10", "sessionAffinity": "None",
        ]
        if let loadBalancerClass = service.loadBalancerClass { spec["loadBalancerClass"] = loadBalancerClass }
        var loadBalancer: [String: Any] = [:]
        if !service.ingress.isEmpty {
            loadBalancer["ingress"] = service.ingress.map { ingress -> [String: Any] in
                var entry: [String: Any] = [:]
                if let hostname = ingress.hostname { entry["hostname"] = hostname }
                if let ip = ingress.ip {
                    entry["ip"] = ip
                    entry["ipMode"] = "VIP"
                }
                return entry
            }
        }
        var object: [String: Any] = ["metadata": metadata, "spec": spec, "status": ["loadBalancer": loadBalancer]]
        if typed {
            object["kind"] = "Service"
            object["apiVersion"] = "v1"
        }
        return object
    }

    private static func line(_ object: [String: Any]) -> Data {
        var data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
        data.append(0x0A)
        return data
    }

    private static func json(_ object: [String: Any]) -> ServerResponse {
        ServerResponse(status: 200, headers: [ServerHeader("Content-Type", "application/json")], body: line(object))
    }

    static func status(_ code: Int, reason: String, message: String) -> ServerResponse {
        let body: [String: Any] = [
            "kind": "Status", "apiVersion": "v1", "metadata": [String: Any](), "status": "Failure",
            "message": message, "reason": reason, "code": code,
        ]
        return ServerResponse(status: code, headers: [ServerHeader("Content-Type", "application/json")], body: line(body))
    }

    private static func encodeContinue(revision: Int, start: String, epoch: Int) -> String {
        let text = "{\"v\":\"meta.k8s.io/v1\",\"rv\":\(revision),\"start\":\"\(start)\",\"epoch\":\(epoch)}"
        return Data(text.utf8).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    private static func decodeContinue(_ token: String) -> (revision: Int, start: String, epoch: Int)? {
        var base64 = token.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        guard let data = Data(base64Encoded: base64),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let revision = object["rv"] as? Int, let start = object["start"] as? String, let epoch = object["epoch"] as? Int
        else { return nil }
        return (revision, start, epoch)
    }

    private static func queryText(_ query: [String: String]) -> String {
        query.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "&")
    }
}

private final class WeakClusterBox: @unchecked Sendable {
    weak var cluster: SimulatedCluster?
}
