import Foundation
import Hummingbird
import Logging
import Prometheus
import TSDNSCore
import TSDNSRuntime
import TSDNSTailscale

/// The RPC API (README "RPC API"). Routing is done here rather than with a router so that
/// every answer — 404, 405, 413 included — is the contract's `{"error": ...}` JSON.
struct RPCHandler: Sendable {
    static let maxBodySize = 64 * 1024
    /// `PUT /v1/sources/{name}` may name up to 10,000 resolvers.
    static let maxSourcesBodySize = 4 << 20

    let controller: Controller
    let registry: PrometheusCollectorRegistry
    let token: TokenFile?
    /// Host names accepted besides IP literals and localhost (without a token only).
    let allowedHosts: [String]
    let logger: Logger

    func respond(_ request: Request) async -> Response {
        do {
            return try await route(request)
        } catch let error as RPCError {
            return error.response
        } catch ControllerError.shuttingDown {
            return RPCError(503, "shutting down").response
        } catch let error as ControllerError {
            return RPCError(503, error.description).response
        } catch is CancellationError {
            return RPCError(503, "shutting down").response
        } catch let error as TailscaleAPIError {
            // The tailnet could not be read or written: nothing was written after the failure.
            // Unavailable (503) while the API is down or rejects the credential.
            if case .transient = error { return RPCError(503, error.description).response }
            if error.isCredentialRejected { return RPCError(503, error.description).response }
            return RPCError(500, error.description).response
        } catch let error as ApplyError {
            return RPCError(503, error.description).response
        } catch let error as ClusterReadError {
            // A cluster could not be listed: like a failed tailnet read, nothing was written.
            return RPCError(503, error.description).response
        } catch {
            logger.error("RPC request failed", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
            return RPCError(500, "\(error)").response
        }
    }

    private func route(_ request: Request) async throws -> Response {
        let path = request.uri.path
        let method = request.method
        switch path {
        case "/healthz":
            try allow(method, .get, orHead: true)
            return encoded(200, RPCWire.Status("ok"))
        case "/readyz":
            try allow(method, .get, orHead: true)
            let readiness = await controller.readiness
            // Ready stays ready after a later failure (the loop retries), but says what failed.
            let status = RPCWire.Status(readiness.ready ? "ready" : "not ready", error: readiness.ready ? readiness.lastError : readiness.lastError ?? "the tailnet has not been read yet")
            return encoded(readiness.ready ? 200 : 503, status)
        case "/metrics":
            try allow(method, .get, orHead: true)
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
            return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: registry.emitToString())))
        default:
            break
        }
        guard path.hasPrefix("/v1/") else { throw RPCError(404, "no such endpoint: \(TerminalText.escape(path))") }
        try refuseBrowsers(request)
        try authorize(request)
        switch path {
        case "/v1/inventory":
            try allow(method, .get)
            return try encodable(200, await controller.inventory())
        case "/v1/sources":
            try allow(method, .get)
            return try encodable(200, await controller.sources())
        case "/v1/sync", "/v1/healthcheck":
            try allow(method, .post)
            let dryRun = try await readBody(request, as: RPCWire.RunBody.self, empty: RPCWire.RunBody(), keys: RPCWire.RunBody.keys).dryRun ?? false
            let mode: RunMode = path == "/v1/sync" ? .sync : .healthcheck
            let plan = dryRun ? try await controller.preview(mode) : try await controller.trigger(.request(mode))
            return plan200(plan)
        case "/v1/resolvers":
            try allow(method, .post)
            let body = try await readBody(request, as: RPCWire.AddBody.self, empty: nil, keys: RPCWire.AddBody.keys)
            let node = try nodeName(body.node, "node")
            let source = try sourceName(body.source, "source") ?? "manual"
            switch try await controller.addResolver(node, source: source) {
            case .added(let plan): return plan200(plan)
            case .pending: return encoded(202, RPCWire.Status("pending"))
            case .ambiguous(let candidates): throw ambiguous(node, candidates)
            }
        case _ where path.hasPrefix("/v1/sources/"):
            try allow(method, .put)
            let raw = String(path.dropFirst("/v1/sources/".count))
            let name = raw.removingPercentEncoding ?? raw
            guard RPCWire.isSourceName(name) else {
                throw RPCError(400, "source name \(quoted(name)) must match [A-Za-z0-9._:-]{1,128}")
            }
            let body = try await readBody(
                request, as: RPCWire.SourcesBody.self, empty: nil, keys: RPCWire.SourcesBody.keys,
                memberKeys: ("resolvers", RPCWire.SourcesBody.memberKeys), limit: Self.maxSourcesBodySize
            )
            guard body.resolvers.count <= RPCWire.maxSourceSetMembers else {
                throw RPCError(400, "a source set names at most \(RPCWire.maxSourceSetMembers) resolvers; this one names \(body.resolvers.count)")
            }
            var members: [SourceSet.Member] = []
            for (index, member) in body.resolvers.enumerated() {
                let node = try nodeName(member.node, "resolvers[\(index)].node")
                members.append(SourceSet.Member(node: node, source: try sourceName(member.source, "resolvers[\(index)].source") ?? name))
            }
            return plan200(try await controller.replaceSources(name, members: members))
        default:
            let prefix = "/v1/resolvers/"
            guard path.hasPrefix(prefix), path.count > prefix.count else { throw RPCError(404, "no such endpoint: \(path)") }
            try allow(method, .delete)
            let raw = String(path.dropFirst(prefix.count))
            let node = try nodeName(raw.removingPercentEncoding ?? raw, "node")
            switch try await controller.removeResolver(node) {
            case .removed(let plan): return plan200(plan)
            case .notFound: throw RPCError(404, "no node \(quoted(node)) in the tailnet and none pending")
            case .ambiguous(let candidates): throw ambiguous(node, candidates)
            }
        }
    }

    // MARK: Checks

    private func allow(_ method: HTTPRequest.Method, _ allowed: HTTPRequest.Method, orHead: Bool = false) throws {
        if orHead && method == .head { return }
        guard method == allowed else {
            let methods = orHead ? "\(allowed.rawValue), HEAD" : allowed.rawValue
            throw RPCError(405, "method \(TerminalText.escape(method.rawValue)) not allowed; use \(allowed.rawValue)", allow: methods)
        }
    }

    /// Without a token the listener trusts whoever reaches it on loopback; a web page in
    /// an operator's browser reaches it too. Refuse what only a browser sends: an `Origin`
    /// (CSRF), or a `Host` that is a name other than localhost (DNS rebinding).
    private func refuseBrowsers(_ request: Request) throws {
        guard token == nil else { return }
        if request.headers[.origin] != nil {
            throw RPCError(403, "cross-origin requests are refused (an Origin header was sent); use ctl or curl, or set rpc.tokenFile")
        }
        guard let host = request.head.authority else { return }
        let name = Self.hostName(host)
        if name == "localhost" || IPAddress(name) != nil || allowedHosts.contains(name) { return }
        throw RPCError(403, "Host \(quoted(host)) is not accepted; add it to rpc.allowedHosts or use an IP address")
    }

    /// `Host` without its port and brackets, lowercased: `[::1]:8053` → `::1`.
    static func hostName(_ host: String) -> String {
        var name = Substring(host.lowercased())
        if name.hasPrefix("["), let close = name.firstIndex(of: "]") {
            return String(name[name.index(after: name.startIndex)..<close])
        }
        if let colon = name.lastIndex(of: ":") { name = name[..<colon] }
        if name.hasSuffix(".") { name = name.dropLast() }
        return String(name)
    }

    private func nodeName(_ text: String, _ key: String) throws -> String {
        let node = text.trimmingCharacters(in: .whitespaces)
        guard !node.isEmpty else { throw RPCError(400, "\"\(key)\" must not be empty") }
        guard node.utf8.count <= RPCWire.maxNodeBytes else { throw RPCError(400, "\"\(key)\" is longer than \(RPCWire.maxNodeBytes) bytes") }
        guard !node.unicodeScalars.contains(where: TerminalText.needsEscape) else { throw RPCError(400, "\"\(key)\" contains control characters") }
        return node
    }

    private func sourceName(_ text: String?, _ key: String) throws -> String? {
        guard let text, !text.isEmpty else { return nil }
        guard text.utf8.count <= RPCWire.maxSourceBytes else { throw RPCError(400, "\"\(key)\" is longer than \(RPCWire.maxSourceBytes) bytes") }
        guard !text.unicodeScalars.contains(where: TerminalText.needsEscape) else { throw RPCError(400, "\"\(key)\" contains control characters") }
        return text
    }

    private func quoted(_ text: String) -> String {
        "\"\(TerminalText.escape(String(text.prefix(80))))\(text.count > 80 ? "..." : "")\""
    }

    private func authorize(_ request: Request) throws {
        guard let token else { return }
        guard let header = request.headers[.authorization] else { throw RPCError(401, "missing bearer token") }
        // The scheme is case-insensitive (RFC 7235); the token is not.
        guard header.lowercased().hasPrefix("bearer "), token.matches(String(header.dropFirst("Bearer ".count))) else {
            throw RPCError(401, "invalid bearer token")
        }
    }

    /// Reads at most `limit` bytes and decodes it; each mistake in the body gets its own
    /// message. Unknown keys and nulls are refused: `{"dry_run": true}` must not become a
    /// real run. A non-empty body must be declared JSON (a browser's form post is not).
    private func readBody<Body: Decodable>(
        _ request: Request, as type: Body.Type, empty: Body?, keys: Set<String>,
        memberKeys: (list: String, keys: Set<String>)? = nil, limit: Int = RPCHandler.maxBodySize
    ) async throws -> Body {
        if let length = request.headers[.contentLength].flatMap(Int.init), length > limit {
            throw RPCError(413, "request body over \(limit) bytes")
        }
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: limit)
        } catch {
            throw RPCError(413, "request body over \(limit) bytes")
        }
        let data = Data(buffer.readableBytesView)
        if data.allSatisfy({ [0x20, 0x0A, 0x0D, 0x09].contains($0) }) {
            if let empty { return empty }
            throw RPCError(400, "request body required: a JSON object")
        }
        let mediaType = request.headers[.contentType]?.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased()
        guard mediaType == "application/json" else {
            throw RPCError(415, "the body must be sent as Content-Type: application/json")
        }
        guard let parsed = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) else {
            throw RPCError(400, "request body is not valid JSON")
        }
        if let object = parsed as? [String: Any] {
            if let unknown = object.keys.sorted().first(where: { !keys.contains($0) }) {
                throw RPCError(400, "unknown key \"\(unknown)\" (expected \(keys.sorted().map { "\"\($0)\"" }.joined(separator: ", ")))")
            }
            if let null = object.keys.sorted().first(where: { object[$0] is NSNull }) {
                throw RPCError(400, "\"\(null)\" must not be null")
            }
            if let (list, allowed) = memberKeys, let items = object[list] as? [Any] {
                for (index, item) in items.enumerated() {
                    guard let member = item as? [String: Any] else { throw RPCError(400, "\"\(list)[\(index)]\" must be an object") }
                    if let unknown = member.keys.sorted().first(where: { !allowed.contains($0) }) {
                        throw RPCError(400, "\"\(list)[\(index)]\": unknown key \(quoted(unknown))")
                    }
                    if let null = member.keys.sorted().first(where: { member[$0] is NSNull }) {
                        throw RPCError(400, "\"\(list)[\(index)].\(null)\" must not be null")
                    }
                }
            }
        }
        do {
            return try JSONDecoder().decode(Body.self, from: data)
        } catch DecodingError.keyNotFound(let key, _) {
            throw RPCError(400, "\"\(key.stringValue)\" is required")
        } catch DecodingError.typeMismatch(let expected, let context), DecodingError.valueNotFound(let expected, let context) {
            guard !context.codingPath.isEmpty else { throw RPCError(400, "request body must be a JSON object") }
            let key = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().dropFirst()
            let what = expected == Bool.self ? "true or false" : expected == String.self ? "a string" : "a list of objects"
            throw RPCError(400, "\"\(key)\" must be \(what)")
        } catch {
            throw RPCError(400, "request body is not valid: \(error)")
        }
    }

    private func ambiguous(_ node: String, _ candidates: [Device]) -> RPCError {
        let names = candidates.map { "\($0.name) (\($0.nodeId))" }.joined(separator: ", ")
        return RPCError(409, "\(quoted(node)) names several devices and not exactly one is healthy: \(names)")
    }

    // MARK: Responses

    /// The plan as README "Plan output" JSON, plus `text`: the same plan as `run` prints it.
    private func plan200(_ plan: Plan) -> Response {
        encoded(200, RPCWire.PlanAnswer(plan))
    }

    private func encodable(_ status: Int, _ value: some Encodable) throws -> Response {
        raw(status, try wireEncoder.encode(value))
    }

    private func encoded(_ status: Int, _ value: some Encodable) -> Response {
        raw(status, (try? wireEncoder.encode(value)) ?? Data("{}".utf8))
    }
}

private let wireEncoder: JSONEncoder = {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return encoder
}()

func raw(_ status: Int, _ data: Data) -> Response {
    var headers = HTTPFields()
    headers[.contentType] = "application/json"
    return Response(status: HTTPResponse.Status(code: status), headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
}

/// An error answer: `{"error": message}` with its status.
struct RPCError: Error {
    var status: Int
    var message: String
    /// For 405: the method the path takes.
    var allow: String?

    init(_ status: Int, _ message: String, allow: String? = nil) {
        self.status = status
        self.message = message
        self.allow = allow
    }

    var response: Response {
        var response = raw(status, (try? wireEncoder.encode(RPCWire.Failure(message))) ?? Data("{}".utf8))
        if let allow { response.headers[.allow] = allow }
        // The rest of an oversized body is not read: the connection is closed instead.
        if status == 413 { response.headers[.connection] = "close" }
        return response
    }
}


