import Foundation
import Logging
import TSDNSConfig
import TSDNSCore
import Synchronization
import TSDNSHTTP

/// Jittered exponential backoff for transient failures, bounded in attempts and in time.
public struct RetryPolicy: Sendable {
    public var maxAttempts: Int
    public var baseDelay: Duration
    public var maxDelay: Duration
    /// No retry starts later than this after the first attempt.
    public var budget: Duration

    public init(maxAttempts: Int = 5, baseDelay: Duration = .milliseconds(250), maxDelay: Duration = .seconds(10), budget: Duration = .seconds(40)) {
        self.maxAttempts = maxAttempts
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
        self.budget = budget
    }

    /// The wait before attempt `attempt + 1`: full exponential step, then 50–100 % of it.
    public func delay(afterAttempt attempt: Int) -> Duration {
        Backoff(base: baseDelay, max: maxDelay).delay(after: attempt)
    }
}

public enum TailscaleAPIError: Error, Sendable, CustomStringConvertible, Equatable {
    /// Network errors, timeouts, 429 and 5xx that outlasted the retries.
    case transient(String)
    /// 400/401/403/404 and other client errors, with the API's `message`.
    case permanent(status: Int, message: String)
    /// A response that does not decode as the API documents it.
    case malformed(String)

    public var description: String {
        switch self {
        case .transient(let message): return "Tailscale API unavailable: \(message)"
        case .permanent(let status, let message): return "Tailscale API refused (HTTP \(status)): \(message)"
        case .malformed(let message): return "Tailscale API sent a response that does not decode: \(message)"
        }
    }

    public var isCredentialRejected: Bool {
        if case .permanent(let status, _) = self { return status == 401 || status == 403 }
        return false
    }
}

/// The subset of the Tailscale API v2 this program uses: one devices list for the whole
/// tailnet, the global nameservers, and split DNS.
public final class TailscaleClient: Sendable {
    public let baseURL: String
    public let tailnet: String
    private let http: HTTPClient
    private let retry: RetryPolicy
    private let logger: Logger
    private let auth: Authenticator
    private let onResponse: (@Sendable (String) -> Void)?

    /// `onResponse` sees each response's status code, or "error" for a transport failure.
    public init(
        baseURL: String, tailnet: String, credential: Credential,
        http: HTTPClient = HTTPClient(options: HTTPClientOptions(totalTimeout: .seconds(15))), retry: RetryPolicy = RetryPolicy(),
        logger: Logger = Logger(label: "tsdns.tailscale"),
        onResponse: (@Sendable (String) -> Void)? = nil
    ) {
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        self.baseURL = base
        self.tailnet = tailnet
        self.http = http
        self.retry = retry
        self.logger = logger
        self.onResponse = onResponse
        self.auth = Authenticator(credential: credential)
    }

    // MARK: Endpoints

    public func listDevices() async throws -> [Device] {
        // Required: a body without the key is not an empty tailnet, it is a broken answer.
        // The list is most of a run's bytes: a one-pass decoder, not JSONDecoder.
        // It is decoded as it arrives (each attempt with a stream of its own), so the body is
        // never held whole.
        let path = tailnetPath("devices")
        let streams = Mutex<DeviceListStream?>(nil)
        _ = try await perform("GET", path, body: nil) {
            let stream = DeviceListStream()
            streams.withLock { $0 = stream }
            return stream
        }
        do {
            guard let stream = streams.withLock({ $0 }) else { throw DeviceListError(path: "", message: "no body", offset: 0) }
            return try stream.finish()
        } catch {
            throw TailscaleAPIError.malformed("GET \(path): \(error)")
        }
    }

    public func nameservers() async throws -> [String] {
        struct Body: Decodable { var dns: [String] }
        let body: Body = try await call("GET", tailnetPath("dns/nameservers"), what: "nameservers")
        return body.dns
    }

    /// Replaces the global list. Returns the list the API now holds.
    @discardableResult
    public func setNameservers(_ list: [String]) async throws -> [String] {
        struct Body: Decodable { var dns: [String]? }
        let payload = try JSONSerialization.data(withJSONObject: ["dns": list])
        let body: Body = try await call("POST", tailnetPath("dns/nameservers"), body: payload, what: "nameservers")
        return body.dns ?? []
    }

    /// The split-DNS map; a domain mapped to null has no nameservers.
    public func splitDNS() async throws -> [String: [String]] {
        let body: [String: [String]?] = try await call("GET", tailnetPath("dns/split-dns"), what: "split-dns")
        return body.compactMapValues { $0 }
    }

    /// Updates only the named domains; an empty list clears a domain (sent as null).
    @discardableResult
    public func updateSplitDNS(_ changes: [String: [String]]) async throws -> [String: [String]] {
        let object = changes.mapValues { $0.isEmpty ? NSNull() as Any : $0 as Any }
        let payload = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        let body: [String: [String]?] = try await call("PATCH", tailnetPath("dns/split-dns"), body: payload, what: "split-dns")
        return body.compactMapValues { $0 }
    }

    // MARK: Transport

    private func tailnetPath(_ rest: String) -> String {
        "/api/v2/tailnet/\(PathSegment.encode(tailnet))/\(rest)"
    }

    private func call<T: Decodable>(_ method: String, _ path: String, body: Data? = nil, what: String) async throws -> T {
        let data = try await perform(method, path, body: body)
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch {
            throw TailscaleAPIError.malformed("\(method) \(path): \(describe(error))")
        }
    }

    /// Sends with the current bearer token; a 401 with OAuth mints a new token once. The
    /// whole call, token mint included, ends within the retry budget.
    /// `sink` makes each attempt's body sink; a 2xx body then goes there, not into the result.
    private func perform(
        _ method: String, _ path: String, body: Data?, sink: (@Sendable () -> any HTTPBodySink)? = nil
    ) async throws -> Data {
        let deadline = ContinuousClock.now + retry.budget
        let response = try await withRetries(remintOn401: auth.isOAuth, deadline: deadline) {
            let token = try await self.auth.token { try await self.mintToken(deadline: deadline) }
            var headers = [HTTPHeader("Authorization", "Bearer \(token)"), HTTPHeader("Accept", "application/json")]
            if body != nil { headers.append(HTTPHeader("Content-Type", "application/json")) }
            var request = HTTPRequest(method: method, url: self.baseURL + path, headers: headers, body: body)
            request.bodySink = sink?()
            return request
        }
        return response.body
    }

    private func mintToken(deadline: ContinuousClock.Instant) async throws -> (String, Duration) {
        guard case .oauth(let clientID, let clientSecret) = auth.credential else {
            preconditionFailure("only OAuth credentials mint tokens")
        }
        struct TokenBody: Decodable {
            var access_token: String
            var expires_in: Int?
        }
        var form = URLComponents()
        form.queryItems = [
            URLQueryItem(name: "client_id", value: clientID),
            URLQueryItem(name: "client_secret", value: clientSecret),
            URLQueryItem(name: "grant_type", value: "client_credentials"),
        ]
        let encoded = (form.percentEncodedQuery ?? "").replacingOccurrences(of: "+", with: "%2B")
        let request = HTTPRequest(
            method: "POST", url: baseURL + "/api/v2/oauth/token",
            headers: [HTTPHeader("Content-Type", "application/x-www-form-urlencoded"), HTTPHeader("Accept", "application/json")],
            body: Data(encoded.utf8)
        )
        let response = try await withRetries(remintOn401: false, deadline: deadline) { request }
        guard let body = try? JSONDecoder().decode(TokenBody.self, from: response.body) else {
            throw TailscaleAPIError.malformed("POST /api/v2/oauth/token: no access_token in the response")
        }
        return (body.access_token, .seconds(body.expires_in ?? 3600))
    }

    /// Transient failures (network, timeout, 408, 429, 5xx) back off and retry within the
    /// policy; other statuses fail at once with the API's message.
    private func withRetries(
        remintOn401: Bool, deadline: ContinuousClock.Instant, _ makeRequest: () async throws -> HTTPRequest
    ) async throws -> HTTPResponse {
        let clock = ContinuousClock()
        var reminted = false
        var attempt = 0
        while true {
            attempt += 1
            var request = try await makeRequest()
            // No attempt outlives the deadline.
            let remaining = deadline - clock.now
            request.timeout = min(http.options.totalTimeout ?? remaining, remaining)
            let what = "\(request.method) \(request.url.dropFirst(baseURL.count))"
            let failure: String
            var retryAfter: Duration?
            do {
                let response = try await http.send(request)
                onResponse?(String(response.status))
                switch response.status {
                case 200..<300:
                    return response
                case 401 where remintOn401 && !reminted:
                    reminted = true
                    attempt -= 1
                    await auth.invalidate(ifCurrent: request.headers.first { $0.name == "Authorization" }?.value ?? "")
                    logger.notice("Tailscale API rejected the access token; minting a new one", metadata: ["request": "\(what)"])
                    continue
                case 408, 429, 500..<600:
                    failure = "\(what): HTTP \(response.status) \(apiMessage(response.body))"
                    retryAfter = response.header("Retry-After").flatMap(parseRetryAfter)
                default:
                    throw TailscaleAPIError.permanent(status: response.status, message: "\(what): \(apiMessage(response.body))")
                }
            } catch let error as HTTPClientError {
                if case .cancelled = error { throw CancellationError() }
                // Nothing was sent, and nothing will be: no retry, and not a request.
                if case .unavailable = error { throw error }
                onResponse?("error")
                failure = error.description
            }
            let wait = retryAfter ?? retry.delay(afterAttempt: attempt)
            guard attempt < retry.maxAttempts, clock.now + wait + .milliseconds(100) < deadline else {
                throw TailscaleAPIError.transient("\(failure) (gave up after \(attempt) \(attempt == 1 ? "attempt" : "attempts"))")
            }
            logger.warning("Tailscale API request failed; retrying", metadata: [
                "error": "\(failure)", "attempt": .stringConvertible(attempt), "retryIn": "\(DurationText.brief(wait))",
            ])
            try await Task.sleep(for: wait)
        }
    }
}

/// The API's `{"message": ...}`, or the start of whatever else it sent.
func apiMessage(_ body: Data) -> String {
    struct ErrorBody: Decodable { var message: String }
    if let decoded = try? JSONDecoder().decode(ErrorBody.self, from: body) { return decoded.message }
    let text = String(decoding: body.prefix(200), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    return text.isEmpty ? "(empty body)" : text
}

/// `Retry-After` as seconds or as an HTTP date.
func parseRetryAfter(_ value: String) -> Duration? {
    if let seconds = Double(value.trimmingCharacters(in: .whitespaces)) {
        guard seconds.isFinite, seconds >= 0 else { return nil }
        return .milliseconds(Int(min(seconds, 3600) * 1000))
    }
    let formatter = DateFormatter()
    formatter.locale = Locale(identifier: "en_US_POSIX")
    formatter.timeZone = TimeZone(identifier: "GMT")
    formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
    guard let date = formatter.date(from: value) else { return nil }
    return .milliseconds(max(0, Int(date.timeIntervalSinceNow * 1000)))
}

private func describe(_ error: Error) -> String {
    switch error {
    case DecodingError.dataCorrupted(let context):
        return context.debugDescription + (context.underlyingError.map { " (\($0.localizedDescription))" } ?? "")
    case DecodingError.keyNotFound(let key, let context):
        return "missing key \"\(key.stringValue)\" at \(path(context))"
    case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
        return "\(context.debugDescription) at \(path(context))"
    default:
        return "\(error)"
    }
}

private func path(_ context: DecodingError.Context) -> String {
    let text = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
    return text.isEmpty ? "the top level" : text
}

/// Holds the bearer token: the API key as is, or an OAuth access token minted on demand,
/// renewed before it expires and re-minted when the API rejects it.
final class Authenticator: Sendable {
    let credential: Credential
    private let cache = TokenCache()

    init(credential: Credential) { self.credential = credential }

    var isOAuth: Bool {
        if case .oauth = credential { return true }
        return false
    }

    func token(mint: @escaping @Sendable () async throws -> (String, Duration)) async throws -> String {
        switch credential {
        case .apiKey(let key): return key
        case .oauth: return try await cache.token(mint: mint)
        }
    }

    /// Forgets the token only if it is the one the API rejected, so concurrent 401s mint once.
    func invalidate(ifCurrent header: String) async { await cache.invalidate(ifCurrent: header) }
}

private actor TokenCache {
    private var token: String?
    private var renewAt: ContinuousClock.Instant = .now
    private var minting: Task<(String, Duration), Error>?

    func token(mint: @escaping @Sendable () async throws -> (String, Duration)) async throws -> String {
        if let token, ContinuousClock.now < renewAt { return token }
        // Concurrent callers share one mint.
        let task = minting ?? Task { try await mint() }
        minting = task
        defer { minting = nil }
        let (value, lifetime) = try await task.value
        token = value
        // Renew a quarter of the lifetime early, at most a minute.
        renewAt = .now + lifetime - min(lifetime / 4, .seconds(60))
        return value
    }

    func invalidate(ifCurrent header: String) {
        if let token, header == "Bearer \(token)" { self.token = nil }
    }
}

extension DeviceListStream: HTTPBodySink {}
