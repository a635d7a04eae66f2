import Foundation
import Hummingbird
import Logging
import Prometheus
import TSDNSCore
import TSDNSRuntime
import TSDNSTailscale

/// The RPC API of CONTRACT §4. Routing is done here rather than with a router so that
/// every answer — 404, 405, 413 included — is the contract's `{"error": ...}` JSON.
struct RPCHandler: Sendable {
    static let maxBodySize = 64 * 1024

    let controller: Controller
    let registry: PrometheusCollectorRegistry
    let token: TokenFile?
    let logger: Logger

    func respond(_ request: Request) async -> Response {
        do {
            return try await route(request)
        } catch let error as RPCError {
            return error.response
        } catch ControllerError.shuttingDown {
            return RPCError(503, "shutting down").response
        } catch is CancellationError {
            return RPCError(503, "shutting down").response
        } catch let error as TailscaleAPIError {
            // The tailnet could not be read or written: nothing was written after the failure.
            if case .transient = error { return RPCError(503, error.description).response }
            return RPCError(500, error.description).response
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
            try allow(method, .get)
            return json(200, ["status": "ok"])
        case "/readyz":
            try allow(method, .get)
            let readiness = await controller.readiness
            var body: [String: Any] = ["status": readiness.ready ? "ready" : "not ready"]
            if let error = readiness.lastError { body["error"] = error }
            return json(readiness.ready ? 200 : 503, body)
        case "/metrics":
            try allow(method, .get)
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
            return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: registry.emitToString())))
        default:
            break
        }
        guard path.hasPrefix("/v1/") else { throw RPCError(404, "no such endpoint: \(path)") }
        try authorize(request)
        switch path {
        case "/v1/inventory":
            try allow(method, .get)
            return try encodable(200, await controller.inventory())
        case "/v1/sync", "/v1/healthcheck":
            try allow(method, .post)
            let dryRun = try await readBody(request, as: RunBody.self, empty: RunBody(), keys: ["dryRun"]).dryRun ?? false
            let mode: RunMode = path == "/v1/sync" ? .sync : .healthcheck
            let plan = dryRun ? try await controller.preview(mode) : try await controller.trigger(mode, event: true)
            return plan200(plan)
        case "/v1/resolvers":
            try allow(method, .post)
            let body = try await readBody(request, as: AddBody.self, empty: nil, keys: ["node", "source"])
            let node = body.node.trimmingCharacters(in: .whitespaces)
            guard !node.isEmpty else { throw RPCError(400, "\"node\" must not be empty") }
            let source = body.source.flatMap { $0.isEmpty ? nil : $0 } ?? "manual"
            switch try await controller.addResolver(node, source: source) {
            case .added(let plan): return plan200(plan)
            case .pending: return json(202, ["status": "pending"])
            case .ambiguous(let candidates): throw ambiguous(node, candidates)
            }
        default:
            let prefix = "/v1/resolvers/"
            guard path.hasPrefix(prefix), path.count > prefix.count else { throw RPCError(404, "no such endpoint: \(path)") }
            try allow(method, .delete)
            let raw = String(path.dropFirst(prefix.count))
            let node = raw.removingPercentEncoding ?? raw
            switch try await controller.removeResolver(node) {
            case .removed(let plan): return plan200(plan)
            case .notFound: throw RPCError(404, "no node \"\(node)\" in the tailnet and none pending")
            case .ambiguous(let candidates): throw ambiguous(node, candidates)
            }
        }
    }

    // MARK: Checks

    private func allow(_ method: HTTPRequest.Method, _ allowed: HTTPRequest.Method) throws {
        guard method == allowed else {
            throw RPCError(405, "method \(method.rawValue) not allowed; use \(allowed.rawValue)", allow: allowed.rawValue)
        }
    }

    private func authorize(_ request: Request) throws {
        guard let token else { return }
        guard let header = request.headers[.authorization] else { throw RPCError(401, "missing bearer token") }
        // The scheme is case-insensitive (RFC 7235); the token is not.
        guard header.lowercased().hasPrefix("bearer "), token.matches(String(header.dropFirst("Bearer ".count))) else {
            throw RPCError(401, "invalid bearer token")
        }
    }

    /// Reads at most 64 KiB and decodes it; each mistake in the body gets its own message.
    /// Unknown keys and nulls are refused: `{"dry_run": true}` must not become a real run.
    private func readBody<Body: Decodable>(_ request: Request, as type: Body.Type, empty: Body?, keys: Set<String>) async throws -> Body {
        if let length = request.headers[.contentLength].flatMap(Int.init), length > Self.maxBodySize {
            throw RPCError(413, "request body over \(Self.maxBodySize) bytes")
        }
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: Self.maxBodySize)
        } catch {
            throw RPCError(413, "request body over \(Self.maxBodySize) bytes")
        }
        let data = Data(buffer.readableBytesView)
        if data.allSatisfy({ [0x20, 0x0A, 0x0D, 0x09].contains($0) }) {
            if let empty { return empty }
            throw RPCError(400, "request body required: a JSON object")
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
        }
        do {
            return try JSONDecoder().decode(Body.self, from: data)
        } catch DecodingError.keyNotFound(let key, _) {
            throw RPCError(400, "\"\(key.stringValue)\" is required")
        } catch DecodingError.typeMismatch(let expected, let context), DecodingError.valueNotFound(let expected, let context) {
            guard let key = context.codingPath.first?.stringValue else { throw RPCError(400, "request body must be a JSON object") }
            throw RPCError(400, "\"\(key)\" must be \(expected == Bool.self ? "true or false" : "a string")")
        } catch {
            throw RPCError(400, "request body is not valid: \(error)")
        }
    }

    private func ambiguous(_ node: String, _ candidates: [Device]) -> RPCError {
        let names = candidates.map { "\($0.name) (\($0.nodeId))" }.joined(separator: ", ")
        return RPCError(409, "\"\(node)\" names several devices and not exactly one is healthy: \(names)")
    }

    // MARK: Responses

    /// The plan as CONTRACT §2 JSON, plus `text`: the same plan as `run` prints it.
    private func plan200(_ plan: Plan) -> Response {
        var object = (try? JSONSerialization.jsonObject(with: Data(PlanRenderer.json(plan).utf8))) as? [String: Any] ?? [:]
        object["text"] = PlanRenderer.text(plan)
        return json(200, object)
    }

    private func encodable(_ status: Int, _ value: some Encodable) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return raw(status, try encoder.encode(value))
    }
}

func json(_ status: Int, _ object: [String: Any]) -> Response {
    let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
    return raw(status, data)
}

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
        var response = json(status, ["error": message])
        if let allow { response.headers[.allow] = allow }
        return response
    }
}

struct RunBody: Decodable {
    var dryRun: Bool?
}

struct AddBody: Decodable {
    var node: String
    var source: String?
}
