import HTTPTypes
import Hummingbird
import HummingbirdCore
import NIOCore
import NIOHTTPTypes
import Synchronization

/// How many connections the listener holds right now (README "RPC hardening"). Up to
/// `rpc.maxConnections` are served; the ones beyond are still accepted, answered at once
/// (`/healthz` 200, anything else 503) and closed by `ConnectionLimitGate`, so a flood of
/// idle connections can neither starve the probes nor the loop's own file descriptors.
/// Past the limit plus 64 (or twice it) the listener stops accepting until some close.
final class ConnectionCount: Sendable {
    let limit: Int
    private let open = Atomic<Int>(0)

    init(limit: Int) {
        self.limit = limit
    }

    var current: Int { open.load(ordering: .relaxed) }
    var overLimit: Bool { current > limit }

    func opened() { open.add(1, ordering: .relaxed) }
    func closed() { open.subtract(1, ordering: .relaxed) }

    /// The listener's accept policy, counting every connection.
    var delegate: Delegate { Delegate(count: self) }

    struct Delegate: AvailableConnectionsDelegate {
        let count: ConnectionCount
        mutating func connectionOpened() { count.opened() }
        mutating func connectionClosed() { count.closed() }
        func isAcceptingNewConnections() -> Bool { count.current < count.limit + max(64, count.limit) }
    }
}

/// Closes a connection once a response that says `Connection: close` has been written
/// (Hummingbird closes only on the request's word): after a 413 the rest of an oversized
/// body is not read, and a connection past the limit is answered and let go.
final class CloseAfterResponseHandler: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private var closing = false

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let part = unwrapOutboundIn(data)
        switch part {
        case .head(let head):
            closing = head.headerFields[.connection]?.lowercased() == "close"
            context.write(data, promise: promise)
        case .body:
            context.write(data, promise: promise)
        case .end:
            guard closing else {
                context.write(data, promise: promise)
                return
            }
            closing = false
            let written = context.eventLoop.makePromise(of: Void.self)
            written.futureResult.cascade(to: promise)
            context.writeAndFlush(data, promise: written)
            let contextBox = NIOLoopBound(context, eventLoop: context.eventLoop)
            written.futureResult.whenComplete { _ in contextBox.value.close(promise: nil) }
        }
    }
}

/// Judges each connection once, when it opens: one beyond `rpc.maxConnections` is answered
/// at its first request line (`/healthz` 200, anything else 503) and closed, without
/// reaching the handler. Connections opened within the limit are served as usual.
final class ConnectionLimitGate: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundOut = HTTPResponsePart

    private let count: ConnectionCount
    private var overLimit = false
    private var answered = false

    init(_ count: ConnectionCount) {
        self.count = count
    }

    func handlerAdded(context: ChannelHandlerContext) {
        overLimit = count.overLimit
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard overLimit else {
            context.fireChannelRead(data)
            return
        }
        guard case .head(let request) = unwrapInboundIn(data), !answered else { return }
        answered = true
        let healthz = request.path?.split(separator: "?").first == "/healthz"
        let body = healthz ? #"{"status":"ok"}"# : #"{"error":"too many connections (rpc.maxConnections=\#(count.limit)); try again"}"#
        var fields = HTTPFields()
        fields[.contentType] = "application/json"
        fields[.contentLength] = "\(body.utf8.count)"
        fields[.connection] = "close"
        context.write(wrapOutboundOut(.head(HTTPResponse(status: healthz ? .ok : .serviceUnavailable, headerFields: fields))), promise: nil)
        context.write(wrapOutboundOut(.body(context.channel.allocator.buffer(string: body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }
}
