import Foundation
import Synchronization

/// A header of a simulated answer. The simulators have their own type so they need no
/// HTTP client (and no libcurl) to be linked.
public struct ServerHeader: Sendable, Equatable {
    public var name: String
    public var value: String

    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// A way for a simulated API to misbehave, and which requests it hits.
public struct SimulatedFault: Sendable {
    public enum Kind: Sendable, Equatable {
        /// Answer with this status and an error body, optionally with Retry-After.
        case status(Int, retryAfter: String? = nil)
        /// Answer normally, after a pause.
        case delay(Duration)
        /// 200 with a body that is not JSON.
        case malformedBody
        /// The real answer with half its body missing.
        case truncatedBody
        /// Close the connection without answering.
        case dropConnection
    }

    public var kind: Kind
    public var method: String?
    /// Matches request paths containing this text; nil matches every API path.
    public var path: String?
    /// How many requests it hits; nil for every one until cleared.
    public var times: Int?

    public init(_ kind: Kind, method: String? = nil, path: String? = nil, times: Int? = nil) {
        self.kind = kind
        self.method = method
        self.path = path
        self.times = times
    }
}

/// The faults a test has injected into a simulator, consumed request by request.
public final class FaultPlan: Sendable {
    private let faults = Mutex<[SimulatedFault]>([])
    /// What a fault without a path matches (the API's own paths, not its token endpoint).
    private let scope: @Sendable (String) -> Bool

    public init(scope: @escaping @Sendable (String) -> Bool = { _ in true }) {
        self.scope = scope
    }

    public func inject(_ fault: SimulatedFault) { faults.withLock { $0.append(fault) } }
    public func clear() { faults.withLock { $0.removeAll() } }

    /// The fault that hits this request, counting it against its `times`.
    public func take(method: String, path: String) -> SimulatedFault.Kind? {
        faults.withLock { faults in
            guard let index = faults.firstIndex(where: { fault in
                (fault.method == nil || fault.method == method) && (fault.path.map { path.contains($0) } ?? scope(path))
            }) else { return nil }
            let kind = faults[index].kind
            if let times = faults[index].times {
                if times <= 1 { faults.remove(at: index) } else { faults[index].times = times - 1 }
            }
            return kind
        }
    }

    /// The answer under `kind`: the normal one from `route`, changed or replaced.
    public static func answer(
        _ kind: SimulatedFault.Kind?, error: (Int) -> ServerResponse, malformed: Data, route: () -> ServerResponse
    ) -> ServerResponse {
        switch kind {
        case .status(let code, let retryAfter)?:
            var response = error(code)
            if let retryAfter { response.headers.append(ServerHeader("Retry-After", retryAfter)) }
            return response
        case .malformedBody?:
            return ServerResponse(status: 200, headers: [ServerHeader("Content-Type", "application/json")], body: malformed)
        case .dropConnection?:
            return ServerResponse(status: 200, fault: .dropConnection)
        case .delay(let pause)?:
            var response = route()
            response.delay = pause
            return response
        case .truncatedBody?:
            var response = route()
            response.fault = .truncateBody
            return response
        case nil:
            return route()
        }
    }
}

/// One request a simulator received, and the status it answered (nil until answered, or
/// when the connection was dropped).
public struct LoggedRequest: Sendable, Equatable {
    public var method: String
    public var path: String
    public var status: Int?
    public var body: String
    /// When the request arrived.
    public var at: ContinuousClock.Instant = .now
    /// Whether it changes the simulated system (a write).
    public var isMutating: Bool
}

/// Every request a simulator received, with how many writes were ever in progress at once.
public final class RequestLog: Sendable {
    private struct State {
        var entries: [LoggedRequest] = []
        var writesInFlight = 0
        var mostWritesAtOnce = 0
    }
    private let state = Mutex(State())

    public init() {}

    public var entries: [LoggedRequest] { state.withLock { $0.entries } }
    public var mostConcurrentWrites: Int { state.withLock { $0.mostWritesAtOnce } }
    public func clear() { state.withLock { $0.entries.removeAll() } }

    /// Records an arriving request; returns its index for `answered`.
    public func arrived(_ request: LoggedRequest) -> Int {
        state.withLock { state in
            state.entries.append(request)
            if request.isMutating {
                state.writesInFlight += 1
                state.mostWritesAtOnce = max(state.mostWritesAtOnce, state.writesInFlight)
            }
            return state.entries.count - 1
        }
    }

    public func answered(_ index: Int, status: Int?) {
        state.withLock { state in
            guard state.entries.indices.contains(index) else { return }
            state.entries[index].status = status
            if state.entries[index].isMutating { state.writesInFlight -= 1 }
        }
    }
}
