import Foundation
import Logging
import TSDNSCore
import TSDNSSimulator
import TSDNSTailscale

/// `tsdns-reconcile demo`: the real reconciler against a simulated tailnet, narrated.
public struct Demo: Sendable {
    public var write: @Sendable (String) -> Void
    public var logger: Logger

    public init(logger: Logger, write: @escaping @Sendable (String) -> Void) {
        self.logger = logger
        self.write = write
    }

    public func run() async throws {
        let tailnet = try SimulatedTailnet(tailnet: "demo.example.com")
        defer { tailnet.stop() }
        let prod1 = SimulatedDevices.device(1, hostname: "dns-prod-1")
        let old = SimulatedDevices.device(3, hostname: "dns-old", connected: false)
        let prod2 = SimulatedDevices.device(7, hostname: "dns-prod-2")
        let laptop = SimulatedDevices.device(20, hostname: "laptop", tags: nil)
        tailnet.setDevices([prod1, old, prod2, laptop])
        tailnet.setNameservers(["1.1.1.1", prod1.addresses[0], old.addresses[0]])

        var config = Config()
        config.resolvers.tags = ["tag:dns"]
        let client = TailscaleClient(baseURL: tailnet.baseURL, tailnet: "-", credential: .apiKey(tailnet.apiKey), logger: logger)
        let reconciler = Reconciler(client: client, config: config, tailnet: tailnet.tailnetName, logger: logger)

        write("""
        A simulated tailnet is serving the Tailscale API on \(tailnet.baseURL).
        Devices: dns-prod-1 (tag:dns, connected), dns-old (tag:dns, disconnected for an hour),
                 dns-prod-2 (tag:dns, connected, new), laptop (untagged).
        Global nameservers: \(tailnet.nameservers.joined(separator: ", "))

        1. A dry run (`run --dry-run`) reads everything and writes nothing:

        """)
        let dry = try await reconciler.run(RunRequest(mode: .sync, dryRun: true, failureThreshold: 1))
        write(PlanRenderer.text(dry.plan))
        write("   writes so far: \(tailnet.mutatingRequests.count)\n\n2. A real run (`run --once`) applies the same plan:\n\n")
        let real = try await reconciler.run(RunRequest(mode: .sync, dryRun: false, failureThreshold: 1))
        write(PlanRenderer.text(real.plan))
        write("   global nameservers now: \(tailnet.nameservers.joined(separator: ", "))\n\n3. A second run finds nothing to do and writes nothing:\n\n")
        tailnet.clearLog()
        let again = try await reconciler.run(RunRequest(mode: .sync, dryRun: false, failureThreshold: 1))
        write(PlanRenderer.text(again.plan))
        let requests = tailnet.requests.map { "\($0.method) \($0.path)" }
        write("   requests: \(requests.joined(separator: "; "))\n")
    }
}
