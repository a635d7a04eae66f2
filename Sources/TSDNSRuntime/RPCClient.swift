import Foundation
import TSDNSCore
import TSDNSHTTP

/// The client side of the RPC API, for `tsdns-reconcile ctl` (and the demo).
public struct RPCClient: Sendable {
    public static let defaultServer = "http://127.0.0.1:8053"

    public let server: String
    private let token: String?
    private let http: HTTPClient

    /// `proxy`: send through this proxy (`socks5h://`, `http://`); nil: the proxy
    /// environment variables, as curl reads them.
    public init(server: String, token: String?, timeout: Duration = .seconds(120), proxy: String? = nil) {
        var base = server
        while base.hasSuffix("/") { base.removeLast() }
        // `127.0.0.1:8053` means the loop's own plain-HTTP listener, not https.
        if !base.contains("://") { base = "http://" + base }
        self.server = base
        self.token = token
        self.http = HTTPClient(options: HTTPClientOptions(totalTimeout: timeout, proxy: proxy))
    }

    public struct Answer: Sendable {
        public var status: Int
        public var body: Data

        public var object: [String: Any]? {
            (try? JSONSerialization.jsonObject(with: body)) as? [String: Any]
        }
    }

    /// Sends one request; any 2xx is an answer, anything else a `CtlError` that says what to do.
    public func call(_ method: String, _ path: String, body: (any Encodable & Sendable)? = nil) async throws -> Answer {
        var headers = [HTTPHeader("Accept", "application/json")]
        if let token { headers.append(HTTPHeader("Authorization", "Bearer \(token)")) }
        var data: Data?
        if let body {
            data = try JSONEncoder().encode(body)
            headers.append(HTTPHeader("Content-Type", "application/json"))
        }
        let response: HTTPResponse
        do {
            response = try await http.send(HTTPRequest(method: method, url: server + path, headers: headers, body: data))
        } catch let error as HTTPClientError {
            throw CtlError.unreachable(server: server, reason: error.description)
        }
        let answer = Answer(status: response.status, body: response.body)
        guard (200..<300).contains(response.status) else {
            let message = answer.object?["error"] as? String
                ?? String(decoding: response.body.prefix(300), as: UTF8.self)
            if response.status == 401 { throw CtlError.unauthorized(message) }
            throw CtlError.server(status: response.status, message: message)
        }
        return answer
    }
}

public enum CtlError: Error, CustomStringConvertible {
    case unreachable(server: String, reason: String)
    case unauthorized(String)
    case server(status: Int, message: String)

    public var description: String {
        switch self {
        case .unreachable(let server, let reason):
            return "cannot reach tsdns-reconcile at \(server): \(reason)\n"
                + "Is `tsdns-reconcile run` running there? Set the address with --server or $TSDNS_SERVER."
        case .unauthorized(let message):
            return "the server refused the token (\(message)); pass the RPC token file with --token-file or $TSDNS_TOKEN_FILE"
        case .server(let status, let message):
            return "the server answered HTTP \(status): \(message)"
        }
    }
}

/// `ctl sources`: each source set and how its members stand.
public enum SourcesTable {
    public static func render(_ body: Data) -> String {
        guard let view = try? JSONDecoder().decode(SourcesView.self, from: body) else {
            return String(decoding: body.prefix(2000), as: UTF8.self) + "\n"
        }
        guard !view.sources.isEmpty else { return "no source sets\n" }
        var lines: [String] = []
        for set in view.sources {
            let counts = Dictionary(grouping: set.resolvers, by: \.state).mapValues(\.count)
            let summary = [MemberState.listed, .pending, .excluded].compactMap { state in counts[state].map { "\($0) \(state.rawValue)" } }
            lines.append("\(TerminalText.escape(set.name)) (updated \(set.updated)'): \(set.resolvers.count) \(set.resolvers.count == 1 ? "resolver" : "resolvers")\(summary.isEmpty ? "" : ", " + summary.joined(separator: ", "))")
            for member in set.resolvers {
                lines.append("  \(member.state.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0)) \(TerminalText.escape(member.node))  \(TerminalText.escape(member.source))")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// `ctl status`: the inventory as a table an operator can read at a glance.
public enum InventoryTable {
    /// `ok 1.2ms`, `timeout`, `-` where not probed.
    static func probeCell(_ probe: [String: Any]?) -> String {
        guard let probe, let result = probe["result"] as? String else { return "-" }
        guard let milliseconds = probe["roundTripMs"] as? Double else { return result }
        return "\(result) \(milliseconds)ms"
    }

    public static func render(_ inventory: [String: Any]) -> String {
        var lines: [String] = []
        // `desired` is what the last run wrote (or found in place).
        for target in inventory["targets"] as? [[String: Any]] ?? [] {
            let list = (target["desired"] as? [String] ?? target["current"] as? [String] ?? []).joined(separator: ", ")
            lines.append("target \(target["target"] as? String ?? "?"): \(list.isEmpty ? "(empty)" : list)")
        }
        let resolvers = inventory["resolvers"] as? [[String: Any]] ?? []
        let probing = resolvers.contains { $0["probe"] is [String: Any] }
        var rows = [["ADDRESS", "NODE", "HEALTH", "LISTED", "SOURCES"] + (probing ? ["DNS PROBE"] : []) + ["LAST SEEN"]]
        for resolver in resolvers {
            let healthy = resolver["healthy"] as? Bool ?? false
            let health: String = healthy ? "healthy" : "unhealthy" + ((resolver["problem"] as? String).map { ": \($0)" } ?? "")
            let listed: String = (resolver["excluded"] as? Bool ?? false) ? "no (excluded)" : (resolver["listed"] as? Bool ?? false) ? "yes" : "no"
            var row: [String] = [resolver["address"] as? String ?? "", resolver["node"] as? String ?? "-", health, listed]
            row.append((resolver["sources"] as? [String] ?? []).joined(separator: ", "))
            if probing { row.append(probeCell(resolver["probe"] as? [String: Any])) }
            row.append(resolver["lastSeen"] as? String ?? "-")
            rows.append(row.map(TerminalText.escape))
        }
        lines.append("")
        if resolvers.isEmpty {
            lines.append("no resolvers known yet")
        } else {
            let widths = rows[0].indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
            for row in rows {
                let cells = row.enumerated().map { index, cell in
                    index == row.count - 1 ? cell : cell.padding(toLength: widths[index] + 2, withPad: " ", startingAt: 0)
                }
                lines.append(cells.joined())
            }
        }
        let pending = inventory["pending"] as? [[String: Any]] ?? []
        lines.append("")
        lines.append("pending: " + (pending.isEmpty ? "none" : TerminalText.escape(pending.prefix(50).map {
            "\($0["node"] as? String ?? "?") (\($0["source"] as? String ?? "manual"), until \($0["expires"] as? String ?? "?"))"
        }.joined(separator: "; ")) + (pending.count > 50 ? "; … and \(pending.count - 50) more" : "")))
        let excluded = inventory["excluded"] as? [[String: Any]] ?? []
        lines.append("excluded: " + (excluded.isEmpty ? "none" : TerminalText.escape(excluded.map {
            "\($0["node"] as? String ?? "?") (until \($0["until"] as? String ?? "?"))"
        }.joined(separator: "; "))))
        lines.append("last sync: \(inventory["lastSync"] as? String ?? "never"), last healthcheck: \(inventory["lastHealthcheck"] as? String ?? "never")")
        if let error = inventory["lastError"] as? String { lines.append("last error: \(TerminalText.escape(error))") }
        return lines.joined(separator: "\n") + "\n"
    }
}
