import CoreMetrics
import Foundation
import TSDNSCore

/// The series of the README ("Metrics"), through swift-metrics with an explicit factory (no global
/// bootstrap), so each loop — and each test — has a registry of its own.
public struct ReconcileMetrics: Sendable {
    private let factory: any MetricsFactory

    public static let runResults = ["noop", "applied", "error", "blocked"]
    public static let probeResults = ["ok", "timeout", "servfail", "refused", "error"]
    public static let resolverStates = ["healthy", "unhealthy", "pending", "excluded"]

    public init(factory: any MetricsFactory) {
        self.factory = factory
    }

    /// Every series of a fixed label set, at 0, so alerts and rates work before the first
    /// event. `tsdns_healthcheck_total` counts healthcheck-only runs: a sync includes a
    /// healthcheck and is counted once, in `tsdns_sync_total`.
    public func exportZeros(targets: [Target], probes: Bool = false) {
        if probes {
            for result in Self.probeResults {
                Counter(label: "tsdns_probe_total", dimensions: [("result", result)], factory: factory).increment(by: 0)
            }
            _ = Timer(label: "tsdns_probe_duration_seconds", factory: factory)
        }
        for mode in [RunMode.sync, .healthcheck] {
            for result in Self.runResults {
                Counter(label: runSeries(mode), dimensions: [("result", result)], factory: factory).increment(by: 0)
            }
        }
        for target in targets {
            for state in Self.resolverStates { gauge(target, state, 0) }
        }
        Gauge(label: "tsdns_last_success_timestamp_seconds", factory: factory).record(0)
        _ = Timer(label: "tsdns_apply_duration_seconds", factory: factory)
    }

    /// A run that completed: `applied` when it wrote, `blocked` when a safety rule held
    /// back its only changes, `noop` otherwise.
    public func recordRun(mode: RunMode, plan: Plan, duration: Duration) {
        let blocked = plan.targets.contains { !$0.entries(.blocked).isEmpty }
        let result = plan.changed && !plan.dryRun ? "applied" : blocked ? "blocked" : "noop"
        Counter(label: runSeries(mode), dimensions: [("result", result)], factory: factory).increment()
        Timer(label: "tsdns_apply_duration_seconds", factory: factory).recordNanoseconds(Int64(duration.seconds * 1e9))
    }

    /// One count per probe by result, and the round trips of those that were answered.
    public func recordProbes(_ findings: some Sequence<ProbeFinding>) {
        for finding in findings {
            Counter(label: "tsdns_probe_total", dimensions: [("result", finding.result)], factory: factory).increment()
            if let roundTrip = finding.roundTrip {
                Timer(label: "tsdns_probe_duration_seconds", factory: factory).recordNanoseconds(Int64(roundTrip.seconds * 1e9))
            }
        }
    }

    public func recordFailure(mode: RunMode) {
        Counter(label: runSeries(mode), dimensions: [("result", "error")], factory: factory).increment()
    }

    public func recordSuccess(at date: Date) {
        Gauge(label: "tsdns_last_success_timestamp_seconds", factory: factory).record(date.timeIntervalSince1970)
    }

    public func recordAPIResponse(api: String, code: String) {
        Counter(label: "tsdns_api_requests_total", dimensions: [("api", api), ("code", code)], factory: factory).increment()
    }

    /// Managed entries per target: healthy ones in the written list, unhealthy ones still
    /// known (removed, blocked, or below the failure threshold).
    public func recordInventory(_ result: RunResult, pending: Int, excluded: Int) {
        for target in result.plan.targets {
            var healthy = 0
            var unhealthy = 0
            for entry in target.entries where entry.action != .unmanaged {
                let device = entry.nodeId.flatMap { id in result.inventory.devices.first { $0.nodeId == id } }
                if let device, result.inventory.health(of: device).isHealthy, entry.action != .remove {
                    healthy += 1
                } else {
                    unhealthy += 1
                }
            }
            gauge(target.target, "healthy", healthy)
            gauge(target.target, "unhealthy", unhealthy)
        }
        recordPendingAndExcluded(pending: pending, excluded: excluded, targets: result.plan.targets.map(\.target))
    }

    public func recordPendingAndExcluded(pending: Int, excluded: Int, targets: [Target]) {
        for target in targets {
            gauge(target, "pending", pending)
            gauge(target, "excluded", excluded)
        }
    }

    private func gauge(_ target: Target, _ state: String, _ value: Int) {
        Gauge(label: "tsdns_resolvers", dimensions: [("target", "\(target)"), ("state", state)], factory: factory).record(value)
    }

    private func runSeries(_ mode: RunMode) -> String {
        mode == .sync ? "tsdns_sync_total" : "tsdns_healthcheck_total"
    }
}
