import Foundation
import TSDNSCore

/// The RPC API's bodies and answers (README "RPC API"), one type each, shared by the
/// listener and by `ctl`, so the two cannot drift apart.
public enum RPCWire {
    /// Limits that keep one request from holding unbounded memory.
    public static let maxNodeBytes = 256
    public static let maxSourceBytes = 256
    public static let maxSourceSetMembers = 10_000

    /// `POST /v1/sync`, `POST /v1/healthcheck`.
    public struct RunBody: Codable, Sendable {
        public var dryRun: Bool?
        public init(dryRun: Bool? = nil) { self.dryRun = dryRun }
        public static let keys: Set<String> = ["dryRun"]
    }

    /// `POST /v1/resolvers`.
    public struct AddBody: Codable, Sendable {
        public var node: String
        public var source: String?
        public init(node: String, source: String? = nil) {
            self.node = node
            self.source = source
        }
        public static let keys: Set<String> = ["node", "source"]
    }

    /// `PUT /v1/sources/{name}`: the whole set the source wants.
    public struct SourcesBody: Codable, Sendable {
        public struct Member: Codable, Sendable, Equatable {
            public var node: String
            /// Defaults to the set's name.
            public var source: String?
            public init(node: String, source: String? = nil) {
                self.node = node
                self.source = source
            }
        }
        public var resolvers: [Member]
        public init(resolvers: [Member]) { self.resolvers = resolvers }
        public static let keys: Set<String> = ["resolvers"]
        public static let memberKeys: Set<String> = ["node", "source"]
    }

    /// `{"status": ...}` of `/healthz`, `/readyz` and a pending add; `error` where not ready.
    public struct Status: Codable, Sendable {
        public var status: String
        public var error: String?
        public init(_ status: String, error: String? = nil) {
            self.status = status
            self.error = error
        }
    }

    /// Every error answer.
    public struct Failure: Codable, Sendable {
        public var error: String
        public init(_ error: String) { self.error = error }
    }

    /// A plan answer: the plan's JSON (README "Plan output") and `text`, the same plan as
    /// `run` prints it.
    public struct PlanAnswer: Codable, Sendable {
        public var plan: JSONPlan
        public var text: String

        public init(_ plan: Plan) {
            self.plan = JSONPlan(plan)
            self.text = PlanRenderer.text(plan)
        }

        enum CodingKeys: String, CodingKey { case text }

        public init(from decoder: any Decoder) throws {
            plan = try JSONPlan(from: decoder)
            text = try decoder.container(keyedBy: CodingKeys.self).decode(String.self, forKey: .text)
        }

        public func encode(to encoder: any Encoder) throws {
            try plan.encode(to: encoder)
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(text, forKey: .text)
        }
    }

    /// `[A-Za-z0-9._:-]{1,128}`.
    public static func isSourceName(_ name: String) -> Bool {
        (1...128).contains(name.utf8.count) && name.utf8.allSatisfy { byte in
            (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
                || byte == 0x2E || byte == 0x5F || byte == 0x3A || byte == 0x2D
        }
    }
}

/// `GET /v1/sources`.
public struct SourcesView: Codable, Sendable {
    public struct Member: Codable, Sendable, Equatable {
        public var node: String
        public var source: String
        public var state: MemberState
    }

    public struct Item: Codable, Sendable {
        public var name: String
        public var resolvers: [Member]
        public var updated: String
    }

    public var sources: [Item]
}
