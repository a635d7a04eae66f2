import TSDNSConfig
import TSDNSProbe

extension ProbeSettings {
    /// `healthcheck.dns` as the probe takes it (the parser has checked every value).
    public init(_ config: Config.DNSProbe) {
        let transport: Transport = config.transport == .tcp ? .tcp : .udp
        self.init(
            name: config.name, type: DNSMessage.QueryType(name: config.type.rawValue) ?? .NS, port: config.port,
            timeout: config.timeout, transport: transport, proxy: config.proxy.isEmpty ? nil : SOCKS5Proxy(url: config.proxy),
            concurrency: config.concurrency
        )
    }
}
