import CCurl
import Foundation
import Synchronization

/// An HTTP client on libcurl. Every transfer runs on a thread of its own, because
/// `curl_easy_perform` blocks and must never occupy Swift concurrency's cooperative pool.
/// Proxies come from the environment (`https_proxy`, `no_proxy`, ...) as curl reads them.
public final class HTTPClient: Sendable {
    public let options: HTTPClientOptions
    /// Easy handles between requests: each keeps its connections open, so the next request
    /// to the same host reuses one (no new TCP or TLS handshake).
    private let handles = HandlePool()

    public init(options: HTTPClientOptions = HTTPClientOptions()) {
        self.options = options
    }

    /// Why libcurl cannot be used (it is not linked: loaded by the first transfer, or beside
    /// the start by `loadInBackground`), or nil.
    static var unavailable: String? { tsdns_curl_load().map { String(cString: $0) } }

    /// Starts loading libcurl on another thread, for a command that will send requests:
    /// the ~8 ms of loading overlap its start instead of delaying its first request.
    public static func loadInBackground() { tsdns_curl_load_in_background() }

    /// Waits for the load `loadInBackground` started, if any: the process must not exit
    /// (`exit()`, which runs destructors) while libcurl is being loaded and initialised on
    /// the other thread; `_exit` needs no wait.
    public static func settleBackgroundLoad() { tsdns_curl_settle() }

    /// The most a chunk of a body holds (libcurl's receive buffer).
    public static let readSize = 128 << 10

    /// Sends a request and collects the whole body.
    public func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        let transfer = Transfer(request: request, options: options, onChunk: nil, onHead: nil, pool: options.reuseConnections ? handles : nil)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<HTTPResponse, Error>) in
                let thread = Thread {
                    continuation.resume(with: transfer.perform())
                }
                thread.name = "tsdns-http"
                thread.start()
            }
        } onCancel: {
            transfer.cancel()
        }
    }

    /// Starts a streaming request. Returns once the response head has arrived; the body
    /// arrives as chunks in order. Ending the iteration (or cancelling) aborts the transfer.
    public func stream(_ request: HTTPRequest) async throws -> (HTTPResponseHead, AsyncThrowingStream<Data, Error>) {
        let (body, bodyContinuation) = AsyncThrowingStream<Data, Error>.makeStream()
        let head = HeadSignal()
        // The head is handed over as soon as the headers end: a watch with no events
        // still gets its status at once.
        let transfer = Transfer(request: request, options: options, onChunk: { transfer, chunk in
            head.deliver(transfer.currentHead())
            bodyContinuation.yield(chunk)
        }, onHead: { head.deliver($0) })
        bodyContinuation.onTermination = { _ in transfer.cancel() }
        let thread = Thread {
            let result = transfer.perform()
            switch result {
            case .success(let response):
                head.deliver(response.head)
                bodyContinuation.finish()
            case .failure(let error):
                head.fail(error)
                bodyContinuation.finish(throwing: error)
            }
        }
        thread.name = "tsdns-http-stream"
        thread.start()
        let responseHead = try await withTaskCancellationHandler {
            try await head.wait()
        } onCancel: {
            transfer.cancel()
        }
        return (responseHead, body)
    }
}

/// Delivers the response head exactly once to one waiter.
private final class HeadSignal: Sendable {
    private enum State {
        case empty
        case waiting(CheckedContinuation<HTTPResponseHead, Error>)
        case done(Result<HTTPResponseHead, Error>)
    }
    private let state = Mutex<State>(.empty)

    func deliver(_ head: HTTPResponseHead) { complete(.success(head)) }
    func fail(_ error: Error) { complete(.failure(error)) }

    private func complete(_ result: Result<HTTPResponseHead, Error>) {
        let waiter: CheckedContinuation<HTTPResponseHead, Error>? = state.withLock { state in
            switch state {
            case .empty:
                state = .done(result)
                return nil
            case .waiting(let continuation):
                state = .done(result)
                return continuation
            case .done:
                return nil
            }
        }
        waiter?.resume(with: result)
    }

    func wait() async throws -> HTTPResponseHead {
        try await withCheckedThrowingContinuation { continuation in
            let ready: Result<HTTPResponseHead, Error>? = state.withLock { state in
                if case .done(let result) = state { return result }
                state = .waiting(continuation)
                return nil
            }
            if let ready { continuation.resume(with: ready) }
        }
    }
}

/// Idle easy handles of one client, at most `limit`. A handle is used by one transfer at a
/// time; a transfer that failed does not give its handle back, so a broken connection is
/// never reused.
final class HandlePool: Sendable {
    private let idle = Mutex<[Int]>([])
    static let limit = 8

    /// A handle with its connection cache, or nil (make a new one).
    func take() -> UnsafeMutableRawPointer? {
        idle.withLock { $0.popLast() }.flatMap { UnsafeMutableRawPointer(bitPattern: $0) }
    }

    func give(_ handle: UnsafeMutableRawPointer) {
        tsdns_curl_easy_reset(handle)
        let kept = idle.withLock { idle -> Bool in
            guard idle.count < Self.limit else { return false }
            idle.append(Int(bitPattern: handle))
            return true
        }
        if !kept { tsdns_curl_easy_cleanup(handle) }
    }

    deinit {
        for address in idle.withLock({ $0 }) {
            if let handle = UnsafeMutableRawPointer(bitPattern: address) { tsdns_curl_easy_cleanup(handle) }
        }
    }
}

/// One curl easy handle and everything its callbacks touch. Only the transfer thread
/// mutates the buffers; `cancel()` may come from anywhere, hence the atomic.
private final class Transfer: @unchecked Sendable {
    typealias ChunkHandler = @Sendable (Transfer, Data) -> Void

    let request: HTTPRequest
    let options: HTTPClientOptions
    let onChunk: ChunkHandler?
    let onHead: (@Sendable (HTTPResponseHead) -> Void)?
    private let cancelled = Atomic<Bool>(false)
    private var handle: UnsafeMutableRawPointer?
    private var status = 0
    private var headers: [String: String] = [:]
    private var body = Data()
    private var bodyTooLarge = false
    /// Bytes of body received (what the size cap counts), the Content-Length, and whether
    /// this response's body goes to the request's sink (decided at its first bytes).
    private var received = 0
    private var contentLength: Int?
    private var sinking: Bool?

    private let pool: HandlePool?

    init(request: HTTPRequest, options: HTTPClientOptions, onChunk: ChunkHandler?, onHead: (@Sendable (HTTPResponseHead) -> Void)?, pool: HandlePool? = nil) {
        self.request = request
        self.options = options
        self.pool = pool
        self.onChunk = onChunk
        self.onHead = onHead
    }

    func cancel() { cancelled.store(true, ordering: .relaxed) }
    var isCancelled: Bool { cancelled.load(ordering: .relaxed) }

    func currentHead() -> HTTPResponseHead {
        if let handle {
            var code = 0
            _ = tsdns_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &code)
            status = code
        }
        return HTTPResponseHead(status: status, headers: headers)
    }

    func perform() -> Result<HTTPResponse, Error> {
        if isCancelled { return .failure(HTTPClientError.cancelled) }
        if let reason = HTTPClient.unavailable { return .failure(HTTPClientError.unavailable(reason)) }
        guard let curl = pool?.take() ?? tsdns_curl_easy_init() else {
            return .failure(HTTPClientError.transport(curlCode: -1, message: "curl_easy_init failed", timedOut: false))
        }
        handle = curl
        var reusable = false
        defer {
            if reusable, let pool { pool.give(curl) } else { tsdns_curl_easy_cleanup(curl) }
            handle = nil
        }
        let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        defer { errorBuffer.deallocate() }

        var headerList: UnsafeMutablePointer<curl_slist>?
        // An empty Expect stops curl from waiting for "100 Continue" on larger bodies.
        for header in request.headers + [HTTPHeader("Expect", "")] {
            headerList = tsdns_curl_slist_append(headerList, "\(header.name): \(header.value)")
        }
        defer { tsdns_curl_slist_free_all(headerList) }

        let context = Unmanaged.passUnretained(self).toOpaque()
        _ = tsdns_curl_setopt_string(curl, CURLOPT_URL, request.url)
        _ = tsdns_curl_setopt_pointer(curl, CURLOPT_ERRORBUFFER, errorBuffer)
        _ = tsdns_curl_setopt_long(curl, CURLOPT_NOSIGNAL, 1)
        // Reads of up to 128 KiB, not 16: over plain HTTP a devices body of 6 MB came in 375
        // chunks, each a read and a pass of the stream's (a copy, a look for a place to cut).
        // Over TLS a read still returns one record, 16 KiB at most. Data is handed over as
        // soon as any arrives, so a watch's events do not wait for more.
        _ = tsdns_curl_setopt_long(curl, CURLOPT_BUFFERSIZE, HTTPClient.readSize)
        _ = tsdns_curl_setopt_long(curl, CURLOPT_FOLLOWLOCATION, 0)
        // An idle connection older than this is not reused (the server may have closed it).
        _ = tsdns_curl_setopt_long(curl, CURLOPT_MAXAGE_CONN, 30)
        _ = tsdns_curl_setopt_long(curl, CURLOPT_CONNECTTIMEOUT_MS, options.connectTimeout.milliseconds)
        // 0 is "no limit" to curl, so a limit that has run out becomes 1 ms.
        let limit = (request.timeout ?? options.totalTimeout).map { max(1, $0.milliseconds) } ?? 0
        _ = tsdns_curl_setopt_long(curl, CURLOPT_TIMEOUT_MS, limit)
        // Only HTTP(S): a scheme-less URL is HTTPS, never silently plain text.
        _ = tsdns_curl_setopt_string(curl, CURLOPT_PROTOCOLS_STR, "http,https")
        _ = tsdns_curl_setopt_string(curl, CURLOPT_DEFAULT_PROTOCOL, "https")
        if let lowSpeedTime = options.lowSpeedTime {
            _ = tsdns_curl_setopt_long(curl, CURLOPT_LOW_SPEED_LIMIT, options.lowSpeedLimit)
            _ = tsdns_curl_setopt_long(curl, CURLOPT_LOW_SPEED_TIME, max(1, lowSpeedTime.milliseconds / 1000))
        }
        _ = tsdns_curl_setopt_slist(curl, CURLOPT_HTTPHEADER, headerList)
        if let proxy = options.proxy { _ = tsdns_curl_setopt_string(curl, CURLOPT_PROXY, proxy) }
        var connectTo: UnsafeMutablePointer<curl_slist>?
        for entry in options.connectTo { connectTo = tsdns_curl_slist_append(connectTo, entry) }
        defer { tsdns_curl_slist_free_all(connectTo) }
        if connectTo != nil { _ = tsdns_curl_setopt_slist(curl, CURLOPT_CONNECT_TO, connectTo) }
        applyTLS(curl)
        applyMethodAndBody(curl)

        _ = tsdns_curl_setopt_data_cb(curl, CURLOPT_WRITEFUNCTION, { pointer, size, count, userdata in
            let transfer = Unmanaged<Transfer>.fromOpaque(userdata!).takeUnretainedValue()
            let length = size * count
            if transfer.isCancelled { return 0 }
            guard let pointer, length > 0 else { return length }
            if let onChunk = transfer.onChunk {
                onChunk(transfer, Data(bytes: pointer, count: length))
                return length
            }
            guard transfer.received + length <= transfer.options.maxBodySize else {
                transfer.bodyTooLarge = true
                return 0  // aborts the transfer
            }
            transfer.received += length
            if let sink = transfer.sink() {
                sink.consume(UnsafeRawBufferPointer(start: pointer, count: length))
            } else {
                // Straight into the reserved buffer: no intermediate copy of each chunk.
                pointer.withMemoryRebound(to: UInt8.self, capacity: length) { transfer.body.append($0, count: length) }
            }
            return length
        })
        _ = tsdns_curl_setopt_pointer(curl, CURLOPT_WRITEDATA, context)
        _ = tsdns_curl_setopt_data_cb(curl, CURLOPT_HEADERFUNCTION, { pointer, size, count, userdata in
            let transfer = Unmanaged<Transfer>.fromOpaque(userdata!).takeUnretainedValue()
            let length = size * count
            if let pointer { transfer.receiveHeaderLine(HeaderLine(UnsafeRawBufferPointer(start: pointer, count: length))) }
            return length
        })
        _ = tsdns_curl_setopt_pointer(curl, CURLOPT_HEADERDATA, context)
        // The progress callback runs about once a second even on an idle stream, so a
        // cancelled watch is noticed without waiting for the next byte.
        _ = tsdns_curl_setopt_long(curl, CURLOPT_NOPROGRESS, 0)
        _ = tsdns_curl_setopt_xferinfo_cb(curl, { userdata, _, _, _, _ in
            let transfer = Unmanaged<Transfer>.fromOpaque(userdata!).takeUnretainedValue()
            return transfer.isCancelled ? 1 : 0
        })
        _ = tsdns_curl_setopt_pointer(curl, CURLOPT_XFERINFODATA, context)

        let code = tsdns_curl_easy_perform(curl)
        if isCancelled { return .failure(HTTPClientError.cancelled) }
        if bodyTooLarge { return .failure(HTTPClientError.bodyTooLarge(url: request.url, limit: options.maxBodySize)) }
        guard code == CURLE_OK else {
            var message = String(cString: errorBuffer)
            if message.isEmpty { message = String(cString: tsdns_curl_easy_strerror(code)) }
            return .failure(HTTPClientError.transport(
                curlCode: Int(code.rawValue),
                message: "\(request.method) \(request.url): \(message)",
                timedOut: code == CURLE_OPERATION_TIMEDOUT
            ))
        }
        let response = HTTPResponse(head: currentHead(), body: body)
        reusable = true
        return .success(response)
    }

    /// The request's sink, when this response is a 2xx (known by its first body bytes).
    private func sink() -> (any HTTPBodySink)? {
        guard let bodySink = request.bodySink else { return nil }
        if sinking == nil {
            sinking = (200..<300).contains(currentHead().status)
            // A Content-Length is the server's word: never more than the body may be.
            if sinking == true { bodySink.begin(expectedLength: contentLength.map { min($0, options.maxBodySize) }) }
        }
        return sinking == true ? bodySink : nil
    }

    private func receiveHeaderLine(_ line: HeaderLine) {
        switch line {
        case .end:
            // End of a header block; 1xx blocks are followed by the real response.
            let head = currentHead()
            if head.status >= 200 { onHead?(head) }
        case .status:
            headers = [:]  // a new response (after 100 Continue or a proxy CONNECT)
        case .other:
            break
        case .field(let name, let value):
            // The body is collected in one buffer: reserve it once (a devices list is ~10 MB),
            // unless a sink takes it.
            if name == "content-length", onChunk == nil, let length = Int(value), length > 0 {
                contentLength = length
                if request.bodySink == nil { body.reserveCapacity(min(length, options.maxBodySize)) }
            }
            headers[name] = value
        }
    }

    private func applyMethodAndBody(_ curl: UnsafeMutableRawPointer) {
        switch request.method {
        case "GET": _ = tsdns_curl_setopt_long(curl, CURLOPT_HTTPGET, 1)
        case "POST": _ = tsdns_curl_setopt_long(curl, CURLOPT_POST, 1)
        // A HEAD answer has a Content-Length and no body: curl must not wait for one.
        case "HEAD": _ = tsdns_curl_setopt_long(curl, CURLOPT_NOBODY, 1)
        default: _ = tsdns_curl_setopt_string(curl, CURLOPT_CUSTOMREQUEST, request.method)
        }
        let body = request.body ?? Data()
        guard !body.isEmpty || ["POST", "PUT", "PATCH"].contains(request.method) else { return }
        _ = tsdns_curl_setopt_long(curl, CURLOPT_POSTFIELDSIZE, body.count)
        if body.isEmpty {
            _ = tsdns_curl_setopt_string(curl, CURLOPT_COPYPOSTFIELDS, "")
        } else {
            body.withUnsafeBytes { bytes in
                _ = tsdns_curl_setopt_pointer(curl, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: bytes.baseAddress!))
            }
        }
    }

    private func applyTLS(_ curl: UnsafeMutableRawPointer) {
        let tls = options.tls
        if let caFile = tls.caFile {
            _ = tsdns_curl_setopt_string(curl, CURLOPT_CAINFO, caFile)
        }
        if let pem = tls.caPEM { setBlob(curl, CURLOPT_CAINFO_BLOB, pem) }
        if let pem = tls.clientCertificatePEM {
            setBlob(curl, CURLOPT_SSLCERT_BLOB, pem)
            _ = tsdns_curl_setopt_string(curl, CURLOPT_SSLCERTTYPE, "PEM")
        }
        if let pem = tls.clientKeyPEM {
            setBlob(curl, CURLOPT_SSLKEY_BLOB, pem)
            _ = tsdns_curl_setopt_string(curl, CURLOPT_SSLKEYTYPE, "PEM")
        }
        if tls.insecureSkipVerify {
            _ = tsdns_curl_setopt_long(curl, CURLOPT_SSL_VERIFYPEER, 0)
            _ = tsdns_curl_setopt_long(curl, CURLOPT_SSL_VERIFYHOST, 0)
        }
    }

    private func setBlob(_ curl: UnsafeMutableRawPointer, _ option: CURLoption, _ data: Data) {
        var copy = data
        copy.withUnsafeMutableBytes { bytes in
            _ = tsdns_curl_setopt_blob(curl, option, bytes.baseAddress, bytes.count)
        }
    }
}
