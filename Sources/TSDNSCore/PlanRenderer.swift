import Foundation

public enum OutputFormat: String, Sendable, CaseIterable {
    case text, json, markdown
}

/// Renders a plan as the README ("The plan") shows it: text lines, a Markdown table, or one JSON object.
public enum PlanRenderer {
    public static func render(_ plan: Plan, as format: OutputFormat) -> String {
        switch format {
        case .text: return text(plan)
        case .json: return json(plan)
        case .markdown: return markdown(plan)
        }
    }

    /// Display order: additions, removals, blocked, kept, unmanaged.
    static let displayOrder: [PlanEntry.Action] = [.add, .remove, .blocked, .keep, .unmanaged]

    static func symbol(_ action: PlanEntry.Action) -> String {
        switch action {
        case .add: return "+"
        case .remove: return "-"
        case .blocked: return "!"
        case .keep: return "="
        case .unmanaged: return "·"
        }
    }

    static func note(_ entry: PlanEntry) -> String {
        switch entry.action {
        case .add: return "healthy, \(entry.reason)"
        case .blocked: return "kept: \(entry.ruleDescription ?? "safety")"
        default: return entry.reason
        }
    }

    static func header(_ target: TargetPlan, _ plan: Plan) -> String {
        "target \(target.target) (tailnet \(TerminalText.escape(plan.tailnet)))"
    }

    static func summary(_ target: TargetPlan) -> String {
        let adds = target.entries(.add).count
        let removes = target.entries(.remove).count
        let blocked = target.entries(.blocked).count
        let changes = adds + removes
        return "\(changes) \(changes == 1 ? "change" : "changes"): \(adds) to add, \(removes) to remove, \(blocked) blocked"
    }

    static func ordered(_ target: TargetPlan) -> [PlanEntry] {
        displayOrder.flatMap { target.entries($0) }
    }

    public static func text(_ plan: Plan) -> String {
        var lines: [String] = []
        for target in plan.targets {
            let entries = ordered(target)
            // Hostnames and addresses come from device owners: escaped before a terminal sees them.
            let rows = entries.map { (entry: $0, address: TerminalText.escape($0.address), node: TerminalText.escape($0.node ?? "")) }
            let addressWidth = max(10, rows.map(\.address.count).max() ?? 0) + 3
            let nodeWidth = max(15, rows.map(\.node.count).max() ?? 0) + 3
            lines.append(header(target, plan))
            for row in rows {
                let entry = row.entry
                let line = "  \(symbol(entry.action)) " + row.address.padding(addressWidth)
                    + row.node.padding(nodeWidth) + TerminalText.escape(note(entry))
                lines.append(line.trimmingTrailingSpaces())
            }
            lines.append(summary(target))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    public static func markdown(_ plan: Plan) -> String {
        var lines: [String] = []
        for target in plan.targets {
            lines.append("### \(header(target, plan))")
            lines.append("")
            lines.append("| | Address | Node | Reason |")
            lines.append("|---|---|---|---|")
            for entry in ordered(target) {
                let cells = [symbol(entry.action), entry.address, entry.node ?? "", note(entry)]
                    .map { TerminalText.escape($0).replacingOccurrences(of: "|", with: "\\|") }
                lines.append("| " + cells.joined(separator: " | ") + " |")
            }
            lines.append("")
            lines.append("**\(summary(target))**")
            lines.append("")
        }
        return lines.joined(separator: "\n")
    }

    public static func json(_ plan: Plan) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(JSONPlan(plan))) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self) + "\n"
    }
}

/// The JSON shape of a plan (README "Running it"). Keys may be added, never renamed.
public struct JSONPlan: Codable, Sendable, Equatable {
    public struct Item: Codable, Sendable, Equatable {
        public var address: String
        public var node: String?
        public var reason: String
        /// For blocked entries: the removal that was held back.
        public var detail: String?
    }

    public struct TargetItem: Codable, Sendable, Equatable {
        public var target: String
        public var changed: Bool
        public var current: [String]
        public var desired: [String]
        public var add: [Item]
        public var remove: [Item]
        public var blocked: [Item]
    }

    public var changed: Bool
    public var dryRun: Bool
    public var mode: String
    public var tailnet: String
    public var targets: [TargetItem]

    public init(_ plan: Plan) {
        changed = plan.changed
        dryRun = plan.dryRun
        mode = plan.mode.rawValue
        tailnet = plan.tailnet
        targets = plan.targets.map { target in
            TargetItem(
                target: target.target.description,
                changed: target.changed,
                current: target.current,
                desired: target.desired,
                add: target.entries(.add).map { Item(address: $0.address, node: $0.node, reason: $0.reason) },
                remove: target.entries(.remove).map { Item(address: $0.address, node: $0.node, reason: $0.reason) },
                blocked: target.entries(.blocked).map {
                    Item(address: $0.address, node: $0.node, reason: $0.rule?.rawValue ?? "safety", detail: $0.reason)
                }
            )
        }
    }
}

extension JSONPlan.Item {
    // `node` is written as null where no device owns the address.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(address, forKey: .address)
        try c.encode(node, forKey: .node)
        try c.encode(reason, forKey: .reason)
        try c.encodeIfPresent(detail, forKey: .detail)
    }
}

extension String {
    func padding(_ width: Int) -> String {
        count >= width ? self + " " : self + String(repeating: " ", count: width - count)
    }

    func trimmingTrailingSpaces() -> String {
        var copy = self
        while copy.last == " " { copy.removeLast() }
        return copy
    }
}
