import Foundation
import Logging
import TSDNSHTTP

public enum KubernetesError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The server answered with an error status (a `Status` body's message where there is one).
    case status(code: Int, reason: String, message: String, retryAfter: Duration?)
    /// No answer: refused, reset, timed out.
    case transport(String, timedOut: Bool)
    /// A credential could not be had: a plugin failed, a token file is unreadable.
    case credential(String)
    /// A body that does not decode as the API documents it, or is larger than allowed.
    case malformed(String)

    public var description: String {
        switch self {
        case .status(let code, let reason, let message, _):
            if code == 401 { return "the Kubernetes API rejected the credentials (HTTP 401 Unauthorized)" }
            return "the Kubernetes API answered HTTP \(code)\(reason.isEmpty ? "" : " \(reason)"): \(message)"
        case .transport(let message, _): return "the Kubernetes API is unreachable: \(message)"
        case .credential(let message): return "no Kubernetes credential: \(message)"
        case .malformed(let message): return "the Kubernetes API sent a body that does not decode: \(message)"
        }
    }

    /// 410 Gone: an expired `continue` token or a too-old resourceVersion.
    public var isGone: Bool {
        if case .status(410, _, _, _) = self { return true }
        return false
    }

    /// Worth another try soon: 429, 5xx, no answer.
    public var isTransient: Bool {
        switch self {
        case .status(let code, _, _, _): return code == 429 || code >= 500
        case .transport: return true
        case .credential, .malformed: return false
        }
    }
}

/// A small client for core/v1 Services over the project's libcurl layer: LIST with paging,
/// and the building blocks (an authenticated GET or PUT of one path) for later objects.
/// No generated model: only the fields this program reads are decoded.
public final class KubernetesClient: Sendable {
    public struct Options: Sendable {
        /// A LIST page (or any one body) larger than this is an error, not an out-of-memory.
        public var maxBodySize: Int
        public var pageSize: Int
        public var requestTimeout: Duration
        public var execTimeout: Duration
        public var retries: Int

        public init(maxBodySize: Int = 64 << 20, pageSize: Int = 500, requestTimeout: Duration = .seconds(15), execTimeout: Duration = .seconds(30), retries: Int = 2) {
            self.maxBodySize = maxBodySize
            self.pageSize = pageSize
            self.requestTimeout = requestTimeout
            self.execTimeout = execTimeout
            self.retries = retries
        }
    }

    public let access: ClusterAccess
    public let options: Options
    private let baseURL: String
    private let httpOptions: HTTPClientOptions
    /// Keeps its connections between requests; a plugin's client certificate needs a client of its own.
    private let http: HTTPClient
    private let credentials: CredentialSource
    private let logger: Logger
    private let onResponse: (@Sendable (String) -> Void)?

    /// `onResponse` sees each response's status code, or "error" for a transport failure.
    public init(
        access: ClusterAccess, options: Options = Options(), logger: Logger,
        now: @escaping @Sendable () -> Date = Date.init, onResponse: (@Sendable (String) -> Void)? = nil
    ) {
        self.access = access
        self.options = options
        (httpOptions, baseURL) = access.httpOptions(timeout: options.requestTimeout, maxBodySize: options.maxBodySize)
        http = HTTPClient(options: httpOptions)
        credentials = CredentialSource(access: access, execTimeout: options.execTimeout, now: now)
        self.logger = logger
        self.onResponse = onResponse
    }

    /// Every Service of `namespace` (nil or "": all namespaces), all pages. A 410 on a
    /// `continue` token (it expired) starts the list again, once.
    public func listServices(namespace: String?) async throws -> (items: [KubeService], resourceVersion: String) {
        let collection = namespace.flatMap { $0.isEmpty ? nil : $0 }.map { "/api/v1/namespaces/\(Self.escape($0))/services" } ?? "/api/v1/services"
        var restarted = false
        while true {
            do {
                return try await listPages(collection)
            } catch let error as KubernetesError where error.isGone && !restarted {
                logger.notice("Kubernetes list continue token expired; listing again from the start", metadata: ["path": "\(collection)"])
                restarted = true
            }
        }
    }

    private func listPages(_ collection: String) async throws -> (items: [KubeService], resourceVersion: String) {
        var items: [KubeService] = []
        var token: String?
        var resourceVersion = ""
        var pages = 0
        repeat {
            var path = "\(collection)?limit=\(options.pageSize)"
            if let token { path += "&continue=\(Self.escape(token))" }
            let response = try await get(path)
            let page: ServiceListPage
            do {
                page = try JSONDecoder().decode(ServiceListPage.self, from: response.body)
            } catch {
                throw KubernetesError.malformed("GET \(path): \(Self.describe(error))")
            }
            items += page.items ?? []
            resourceVersion = page.metadata?.resourceVersion ?? resourceVersion
            token = page.metadata?.continue.flatMap { $0.isEmpty ? nil : $0 }
            pages += 1
            if pages > 100_000 { throw KubernetesError.malformed("GET \(collection): more than 100,000 pages") }
        } while token != nil
        return (items, resourceVersion)
    }

    /// Opens a WATCH of Services from `resourceVersion` with bookmarks; the events arrive as
    /// the server sends them. The transfer's own limit sits just above `timeoutSeconds`, and
    /// there is no low-speed limit: an idle watch (bookmarks come about once a minute) must
    /// not be cut. An answer other than 200 is thrown before any event (a 401 also makes the
    /// next request fetch its credential again).
    public func watchServices(
        namespace: String?, resourceVersion: String, timeoutSeconds: Int, maxEventSize: Int = 4 << 20
    ) async throws -> AsyncThrowingStream<WatchEvent, Error> {
        let collection = namespace.flatMap { $0.isEmpty ? nil : $0 }.map { "/api/v1/namespaces/\(Self.escape($0))/services" } ?? "/api/v1/services"
        let path = "\(collection)?allowWatchBookmarks=true&resourceVersion=\(Self.escape(resourceVersion))&timeoutSeconds=\(timeoutSeconds)&watch=1"
        let credential = try await currentCredential()
        var options = access.httpOptions(timeout: .seconds(timeoutSeconds + 30), maxBodySize: options.maxBodySize).0
        if let certificate = credential.clientCertificatePEM, let key = credential.clientKeyPEM {
            options.tls.clientCertificatePEM = certificate
            options.tls.clientKeyPEM = key
        }
        var headers = [HTTPHeader("Accept", "application/json"), HTTPHeader("User-Agent", "tsdns-reconcile")]
        if let bearer = credential.bearer { headers.append(HTTPHeader("Authorization", "Bearer \(bearer)")) }
        let head: HTTPResponseHead
        let chunks: AsyncThrowingStream<Data, Error>
        do {
            (head, chunks) = try await HTTPClient(options: options).stream(HTTPRequest(method: "GET", url: baseURL + path, headers: headers))
        } catch let error as HTTPClientError {
            onResponse?("error")
            throw Self.mapped(error, "GET \(path)")
        }
        onResponse?(String(head.status))
        guard head.status == 200 else {
            var body = Data()
            for try await chunk in chunks {
                body.append(chunk)
                if body.count > 64 << 10 { break }
            }
            if head.status == 401 { credentials.invalidate() }
            throw Self.statusError(HTTPResponse(head: head, body: body))
        }
        let reader = WatchReader(chunks: chunks, maxEventSize: maxEventSize)
        return AsyncThrowingStream(unfolding: { try await reader.next() })
    }

    /// An authenticated GET of one API path, retried on 429, 5xx and no answer.
    public func get(_ path: String) async throws -> HTTPResponse {
        try await send(method: "GET", path: path, body: nil)
    }

    /// An authenticated PUT of one object (its `metadata.resourceVersion` makes it conditional;
    /// a 409 means someone else wrote first).
    public func put(_ path: String, body: Data) async throws -> HTTPResponse {
        try await send(method: "PUT", path: path, body: body)
    }

    private func send(method: String, path: String, body: Data?) async throws -> HTTPResponse {
        var attempt = 0
        var reauthenticated = false
        while true {
            attempt += 1
            do {
                return try await sendOnce(method: method, path: path, body: body)
            } catch let error as KubernetesError {
                if case .status(401, _, _, _) = error, !reauthenticated, credentials.invalidate() {
                    // A rotated token file or an expired plugin credential: fetch it again, try once more.
                    reauthenticated = true
                    attempt -= 1
                    continue
                }
                guard error.isTransient, attempt <= options.retries else { throw error }
                var wait = Backoff(base: .milliseconds(200), max: .seconds(5)).delay(after: attempt)
                if case .status(_, _, _, let retryAfter?) = error { wait = min(retryAfter, .seconds(10)) }
                logger.info("Kubernetes API request failed; retrying", metadata: [
                    "path": "\(path)", "error": "\(error)", "attempt": .stringConvertible(attempt),
                ])
                try await Task.sleep(for: wait)
            }
        }
    }

    private func sendOnce(method: String, path: String, body: Data?) async throws -> HTTPResponse {
        let credential = try await currentCredential()
        var client = http
        if let certificate = credential.clientCertificatePEM, let key = credential.clientKeyPEM {
            var options = httpOptions
            options.tls.clientCertificatePEM = certificate
            options.tls.clientKeyPEM = key
            client = HTTPClient(options: options)
        }
        var headers = [HTTPHeader("Accept", "application/json"), HTTPHeader("User-Agent", "tsdns-reconcile")]
        if let bearer = credential.bearer { headers.append(HTTPHeader("Authorization", "Bearer \(bearer)")) }
        if body != nil { headers.append(HTTPHeader("Content-Type", "application/json")) }
        let request = HTTPRequest(method: method, url: baseURL + path, headers: headers, body: body)
        let response: HTTPResponse
        do {
            response = try await client.send(request)
        } catch let error as HTTPClientError {
            onResponse?("error")
            throw Self.mapped(error, "\(method) \(path)")
        }
        onResponse?(String(response.status))
        guard (200..<300).contains(response.status) else { throw Self.statusError(response) }
        return response
    }

    /// Reads a token file or runs a plugin off the cooperative pool (a plugin may take seconds).
    private func currentCredential() async throws -> RequestCredential {
        let source = credentials
        return try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                do { continuation.resume(returning: try source.current()) } catch { continuation.resume(throwing: error) }
            }
            thread.name = "tsdns-kube-credential"
            thread.start()
        }
    }

    /// An HTTP layer failure as this client reports it.
    static func mapped(_ error: HTTPClientError, _ request: String) -> Error {
        switch error {
        case .transport(_, let message, let timedOut): return KubernetesError.transport(message, timedOut: timedOut)
        case .bodyTooLarge(_, let limit): return KubernetesError.malformed("\(request): the body is larger than \(limit >> 20) MiB")
        case .cancelled: return CancellationError()
        case .unavailable: return error  // nothing was sent; not worth a retry
        }
    }

    static func statusError(_ response: HTTPResponse) -> KubernetesError {
        let retryAfter = response.header("Retry-After").flatMap(Int.init).map { Duration.seconds($0) }
        if let status = try? JSONDecoder().decode(StatusBody.self, from: response.body), status.kind == "Status" {
            let after = retryAfter ?? status.details?.retryAfterSeconds.map { Duration.seconds($0) }
            return .status(code: response.status, reason: status.reason ?? "", message: clip(status.message ?? ""), retryAfter: after)
        }
        let text = String(decoding: response.body.prefix(200), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return .status(code: response.status, reason: "", message: clip(text), retryAfter: retryAfter)
    }

    private static func clip(_ text: String) -> String { text.count > 300 ? String(text.prefix(297)) + "..." : text }

    static func escape(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? text
    }

    static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, let context):
            return "\(path(context.codingPath + [key])): is missing"
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            return "\(path(context.codingPath)): \(context.debugDescription)"
        case DecodingError.dataCorrupted(let context):
            return "\(path(context.codingPath)): \(context.debugDescription)"
        default:
            return "\(error)"
        }
    }

    private static func path(_ keys: [CodingKey]) -> String {
        keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().trimmingCharacters(in: CharacterSet(charactersIn: "."))
    }
}

struct ServiceListPage: Decodable {
    struct Metadata: Decodable {
        var resourceVersion: String?
        var `continue`: String?
    }
    var metadata: Metadata?
    /// Go writes an empty list as `null` in some versions.
    var items: [KubeService]?
}

struct StatusBody: Decodable {
    struct Details: Decodable {
        var retryAfterSeconds: Int?
    }
    var kind: String?
    var message: String?
    var reason: String?
    var code: Int?
    var details: Details?
}

/// Turns a watch body's chunks into events, one at a time, for the consumer's own task (no
/// task of its own). Only the stream's single consumer calls `next()`.
private final class WatchReader: @unchecked Sendable {
    private var chunks: AsyncThrowingStream<Data, Error>.AsyncIterator
    private var framer: JSONObjectFramer
    private var ready: [Data] = []

    init(chunks: AsyncThrowingStream<Data, Error>, maxEventSize: Int) {
        self.chunks = chunks.makeAsyncIterator()
        framer = JSONObjectFramer(maxObjectSize: maxEventSize)
    }

    func next() async throws -> WatchEvent? {
        while ready.isEmpty {
            let chunk: Data?
            do {
                chunk = try await chunks.next()
            } catch let error as HTTPClientError {
                throw KubernetesClient.mapped(error, "watch")
            }
            guard let chunk else { return nil }
            ready = try framer.append(chunk)
        }
        return try WatchEvent.decode(ready.removeFirst())
    }
}
