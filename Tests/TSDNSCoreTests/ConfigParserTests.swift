import Testing
@testable import TSDNSConfig
@testable import TSDNSCore

/// The issues a config text has, as `validate` prints them.
func configIssues(_ yaml: String) -> [String] {
    do {
        _ = try ConfigParser.parse(yaml, file: "config.yaml")
        return []
    } catch {
        return error.issues.map(\.description)
    }
}

@Suite("Config file")
struct ConfigParserTests {
    func issues(_ yaml: String) -> [String] { configIssues(yaml) }

    @Test func emptyFileMeansDefaults() throws {
        let config = try ConfigParser.parse("", file: "config.yaml").config
        #expect(config == Config())
        #expect(config.healthcheck.interval == .seconds(30))
        #expect(config.healthcheck.staleAfter == .seconds(300))
        #expect(config.sync.interval == .seconds(300))
        #expect(config.sync.pendingTTL == .seconds(600))
        #expect(config.safety.minResolvers == 1)
        #expect(config.safety.maxRemovals == 3)
        #expect(config.safety.protect == ["100.100.100.100"])
        #expect(config.resolvers.tags == ["tag:dns"])
        #expect(config.resolvers.targets == [.global])
        #expect(config.rpc.listen == "127.0.0.1:8053")
    }

    @Test func fullExampleDecodes() throws {
        let yaml = """
        tailscale:
          tailnet: example.com
          apiURL: https://api.tailscale.com
          oauth:
            clientID: k123CNTRL
            clientSecretFile: /etc/tsdns/oauth-secret
        resolvers:
          tags: ["tag:dns", "tag:resolver"]
          addressFamily: both
          target:
            global: false
            splitDNS: ["corp.example.com"]
        healthcheck:
          interval: 15s
          staleAfter: 2m
          failureThreshold: 2
          probe: none
        sync:
          interval: 1h30m
          pendingTTL: 90s
          exclusionTTL: 5m
        safety:
          minResolvers: 0
          maxRemovals: 5
          protect: ["10.0.0.53"]
        kubernetes:
          clusters:
            - name: prod
              context: prod
              namespace: dns
              annotation: "tailscale.com/tags=tag:dns"
        rpc:
          listen: 0.0.0.0:8053
          tokenFile: /etc/tsdns/rpc-token
        watch:
          cluster: prod
          server: http://dnsmon.example.ts.net:8053
        """
        let config = try ConfigParser.parse(yaml, file: "config.yaml").config
        #expect(config.tailscale.tailnet == "example.com")
        #expect(config.tailscale.oauth?.clientID == "k123CNTRL")
        #expect(config.resolvers.addressFamily == .both)
        #expect(config.resolvers.targets == [.splitDNS("corp.example.com")])
        #expect(config.healthcheck.failureThreshold == 2)
        #expect(config.sync.interval == .seconds(5400))
        #expect(config.safety.protect == ["10.0.0.53", "100.100.100.100"])
        #expect(config.clusters.first?.annotationKey == "tailscale.com/tags")
        #expect(config.clusters.first?.annotationValue == "tag:dns")
        #expect(config.watch.cluster == "prod")
    }

    @Test func unknownKeyNamesPathAndLine() {
        let yaml = """
        sync:
          interval: 5m
          intervall: 6m
        """
        #expect(issues(yaml) == ["config.yaml:3: sync.intervall: unknown key"])
    }

    @Test func emptyNamesAreErrorsNotSilentlyDropped() {
        #expect(issues("kubernetes:\n  clusters:\n    - name: \"\"\n") == ["config.yaml:3: kubernetes.clusters[0].name: is empty; a cluster needs a name (its sources read kubernetes:<name>/...)"])
        #expect(issues("tailscale:\n  oauth:\n    clientID: \"\"\n") == ["config.yaml:3: tailscale.oauth.clientID: is empty; omit it to use TAILSCALE_OAUTH_CLIENT_ID"])
    }

    @Test func unknownKeyWithCaseHint() {
        #expect(issues("safety:\n  maxremovals: 2\n") == [#"config.yaml:2: safety.maxremovals: unknown key (did you mean "maxRemovals"?)"#])
    }

    @Test func badDurationMatchesTheContractExample() {
        let yaml = String(repeating: "\n", count: 11) + "sync:\n  interval: \"5 minutes\"\n"
        #expect(issues(yaml) == [#"config.yaml:13: sync.interval: "5 minutes" is not a duration (use Go style: 90s, 5m, 1h30m)"#])
    }

    @Test func wrongTypes() {
        let yaml = """
        resolvers:
          tags: tag:dns
          target:
            global: "yes"
        safety:
          minResolvers: one
          maxRemovals: -1
        healthcheck:
          failureThreshold: 0
        """
        #expect(issues(yaml) == [
            "config.yaml:2: resolvers.tags: must be a list",
            #"config.yaml:4: resolvers.target.global: "yes" is not true or false"#,
            #"config.yaml:6: safety.minResolvers: "one" is not a whole number"#,
            "config.yaml:7: safety.maxRemovals: -1 is below the minimum of 0",
            "config.yaml:9: healthcheck.failureThreshold: 0 is below the minimum of 1",
        ])
    }

    /// Booleans and numbers are recognised without the YAML resolver's regular
    /// expressions: YAML 1.1's boolean spellings, and whole numbers in decimal only (YAML
    /// 1.1 would read 010 as 8, 0x10 as 16 and 1_0 as 10, none of which reads as meant).
    @Test func booleansAndNumbersAsWritten() throws {
        for (text, value) in [("true", true), ("True", true), ("YES", true), ("on", true), ("false", false), ("No", false), ("OFF", false)] {
            let parsed = try ConfigParser.parse("resolvers:\n  target:\n    global: \(text)\n    splitDNS: [example.com]\n", file: "config.yaml")
            #expect(parsed.config.resolvers.global == value, "\(text)")
        }
        #expect(issues("resolvers:\n  target:\n    global: tRUE\n") == [#"config.yaml:3: resolvers.target.global: "tRUE" is not true or false"#])
        #expect(try ConfigParser.parse("safety:\n  maxRemovals: +3\n", file: "config.yaml").config.safety.maxRemovals == 3)
        #expect(try ConfigParser.parse("safety:\n  maxRemovals: 0\n", file: "config.yaml").config.safety.maxRemovals == 0)
        for text in ["010", "0x10", "0b1", "1_0", "1:30", "--1", "+-1", "1.0", "1e3", "99999999999999999999"] {
            #expect(issues("safety:\n  maxRemovals: \(text)\n") == [#"config.yaml:2: safety.maxRemovals: "\#(text)" is not a whole number"#], "\(text)")
        }
        #expect(issues("safety:\n  maxRemovals: \"3\"\n") == [#"config.yaml:2: safety.maxRemovals: "3" is a string; write the number without quotes"#])
    }

    @Test func badValues() {
        let yaml = """
        resolvers:
          tags: ["dns"]
          addressFamily: ipv5
        healthcheck:
          probe: ping
        tailscale:
          apiURL: api.tailscale.com
        """
        #expect(issues(yaml).sorted(by: lineOrder) == [
            #"config.yaml:2: resolvers.tags[0]: "dns" is not a tag (tags look like tag:dns)"#,
            #"config.yaml:3: resolvers.addressFamily: "ipv5" is not one of ipv4, ipv6, both"#,
            #"config.yaml:5: healthcheck.probe: "ping" is not one of none, dns"#,
            #"config.yaml:7: tailscale.apiURL: "api.tailscale.com" is not an http(s) URL"#,
        ])
    }

    @Test func listItemsAreIndexed() {
        let yaml = """
        kubernetes:
          clusters:
            - name: prod
            - name: prod
              annotation: novalue
            - context: x
        """
        #expect(issues(yaml) == [
            #"config.yaml:4: kubernetes.clusters[1].name: "prod" is used by another cluster"#,
            #"config.yaml:5: kubernetes.clusters[1].annotation: "novalue" is not key=value"#,
            "config.yaml:6: kubernetes.clusters[2].name: is required",
        ])
    }

    @Test func bothCredentialKindsIsAnError() {
        let yaml = """
        tailscale:
          apiKeyFile: /k
          oauth:
            clientID: x
        """
        #expect(issues(yaml) == ["config.yaml:3: tailscale.oauth: set either tailscale.apiKeyFile or tailscale.oauth, not both"])
    }

    @Test func nonLoopbackListenNeedsAToken() {
        #expect(issues("rpc:\n  listen: 0.0.0.0:8053\n") == [
            "config.yaml:2: rpc.tokenFile: is required when rpc.listen (0.0.0.0:8053) is not a loopback address",
        ])
        #expect(issues("rpc:\n  listen: \"[::1]:8053\"\n").isEmpty)
        #expect(issues("rpc:\n  listen: \"\"\n").isEmpty)
        #expect(issues("rpc:\n  listen: localhost\n") == [#"config.yaml:2: rpc.listen: "localhost" is not host:port"#])
    }

    @Test func nothingToManage() {
        #expect(issues("resolvers:\n  target:\n    global: false\n") == [
            "config.yaml:3: resolvers.target: manages nothing: set global: true or list splitDNS domains",
        ])
    }

    @Test func watchClusterMustExist() {
        #expect(issues("watch:\n  cluster: staging\n") == [#"config.yaml:2: watch.cluster: "staging" is not a name in kubernetes.clusters"#])
    }

    @Test func invalidYAMLHasALine() {
        let found = issues("sync:\n  interval: [5m\n")
        #expect(found.count == 1)
        #expect(found.first?.hasPrefix("config.yaml:") == true)
        #expect(found.first?.contains("invalid YAML") == true)
    }

    @Test func protectTakesAddressesAndResolverURLs() throws {
        #expect(issues("safety:\n  protect: [\"10.0.0.53\", \"fd00::53\", \"https://dns.example/dns-query\", notip]\n") == [
            #"config.yaml:2: safety.protect[3]: "notip" is not an IP address or an https:// resolver URL"#,
        ])
    }

    @Test func hugeDurationIsAnErrorNotACrash() {
        #expect(issues("sync:\n  interval: 99999999999h\n") == [#"config.yaml:2: sync.interval: "99999999999h" is too long a duration"#])
    }

    @Test func duplicateKeyIsOneLineWithItsLine() {
        let found = issues("sync:\n  interval: 5m\nsync:\n  interval: 6m\n")
        #expect(found.count == 1)
        #expect(found.first?.hasPrefix("config.yaml:") == true)
        #expect(found.first?.contains("appears twice") == true)
        #expect(found.first?.contains("\n") == false)
    }

    @Test func splitDomainsAreLowercased() throws {
        let config = try ConfigParser.parse("resolvers:\n  target:\n    splitDNS: [Corp.Example.COM]\n", file: "c.yaml").config
        #expect(config.resolvers.splitDNS == ["corp.example.com"])
    }

    @Test func topLevelMustBeAMapping() {
        #expect(issues("- a\n- b\n") == ["config.yaml:1: must be a mapping"])
    }

    @Test func nullValueKeepsTheDefault() throws {
        let config = try ConfigParser.parse("sync:\n  interval:\n", file: "c.yaml").config
        #expect(config.sync.interval == .seconds(300))
    }
}

private func lineOrder(_ a: String, _ b: String) -> Bool {
    Int(a.split(separator: ":")[1])! < Int(b.split(separator: ":")[1])!
}

@Suite("Config limits and messages")
struct ConfigLimitTests {
    func issues(_ yaml: String) -> [String] { configIssues(yaml) }

    @Test func intervalsUnderOneSecondAreInvalid() {
        #expect(issues("healthcheck:\n  interval: 1ns\n") == [#"config.yaml:2: healthcheck.interval: "1ns" is shorter than the minimum of 1s"#])
        #expect(issues("sync:\n  interval: 500ms\n") == [#"config.yaml:2: sync.interval: "500ms" is shorter than the minimum of 1s"#])
        #expect(issues("watch:\n  resyncInterval: 10ms\n") == [#"config.yaml:2: watch.resyncInterval: "10ms" is shorter than the minimum of 1s"#])
        #expect(issues("healthcheck:\n  dns:\n    timeout: 5ms\n") == [#"config.yaml:3: healthcheck.dns.timeout: "5ms" is shorter than the minimum of 10ms"#])
        #expect(issues("healthcheck:\n  interval: 1s\n  dns:\n    timeout: 10ms\n").isEmpty)
    }

    @Test func aQuotedNumberIsCalledAString() {
        #expect(issues("safety:\n  maxRemovals: \"3\"\n") == [#"config.yaml:2: safety.maxRemovals: "3" is a string; write the number without quotes"#])
    }

    @Test func longValuesAreCutAndControlCharactersEscaped() throws {
        let found = issues("sync:\n  interval: \"\(String(repeating: "x", count: 5000))\\e[31m\"\n")
        let line = try #require(found.first)
        #expect(line.count < 200, "a long value is not echoed whole")
        #expect(line.contains("...\""))
        let escaped = issues("resolvers:\n  addressFamily: \"v4\\e[31m\"\n")
        #expect(escaped.first?.contains(#"v4\x1b[31m"#) == true)
        #expect(escaped.first?.contains("\u{1b}") == false)
    }

    @Test func unknownKeysAreEscapedAndCut() throws {
        let line = try #require(issues("\"evil\\e[31m\(String(repeating: "k", count: 200))\": 1\n").first)
        #expect(!line.contains("\u{1b}"))
        #expect(line.contains(#"evil\x1b[31m"#))
        #expect(line.count < 160)
    }

    @Test func atMostTwentyErrorsArePrinted() throws {
        let yaml = (0..<500).map { "unknown\($0): 1" }.joined(separator: "\n")
        do {
            _ = try ConfigParser.parse(yaml, file: "config.yaml")
            Issue.record("500 unknown keys must fail")
        } catch {
            #expect(error.issues.count == 500)
            let printed = error.description.split(separator: "\n")
            #expect(printed.count == 21)
            #expect(printed.last == "… and 480 more")
        }
    }

    @Test func newKeysParse() throws {
        let config = try ConfigParser.parse("""
        resolvers:
          unsourced: remove
        healthcheck:
          successThreshold: 3
          probe: dns
          dns:
            name: example.com
            type: A
            port: 5353
            timeout: 500ms
            transport: tcp
            proxy: socks5://127.0.0.1:1055
            concurrency: 8
        rpc:
          allowedHosts: [dnsmon.example.ts.net]
          maxConnections: 64
        state:
          file: /var/lib/tsdns-reconcile/state.json
        watch:
          resyncInterval: 2m
          proxy: socks5h://127.0.0.1:1055
          listen: 0.0.0.0:8054
        """, file: "c.yaml").config
        #expect(config.resolvers.unsourced == .remove)
        #expect(config.healthcheck.successThreshold == 3)
        #expect(config.healthcheck.dns.type == .A && config.healthcheck.dns.port == 5353 && config.healthcheck.dns.transport == .tcp)
        #expect(config.healthcheck.dns.timeout == .milliseconds(500))
        #expect(config.healthcheck.dns.proxy == "socks5://127.0.0.1:1055")
        #expect(config.rpc.allowedHosts == ["dnsmon.example.ts.net"] && config.rpc.maxConnections == 64)
        #expect(config.state.file == "/var/lib/tsdns-reconcile/state.json")
        #expect(config.watch.resyncInterval == .seconds(120) && config.watch.proxy == "socks5h://127.0.0.1:1055" && config.watch.listen == "0.0.0.0:8054")
        #expect(config.planSettings(mode: .sync).unsourced == .remove)
    }

    @Test func newKeysAreChecked() {
        #expect(issues("resolvers:\n  unsourced: delete\n") == [#"config.yaml:2: resolvers.unsourced: "delete" is not one of keep, remove"#])
        #expect(issues("healthcheck:\n  dns:\n    proxy: http://127.0.0.1:1055\n") == [#"config.yaml:3: healthcheck.dns.proxy: "http://127.0.0.1:1055" is not a socks5://HOST:PORT URL with an IP address or localhost"#])
        #expect(issues("healthcheck:\n  dns:\n    port: 70000\n") == ["config.yaml:3: healthcheck.dns.port: 70000 is above the maximum of 65535"])
        #expect(issues("rpc:\n  maxConnections: 0\n") == ["config.yaml:2: rpc.maxConnections: 0 is below the minimum of 1"])
        #expect(issues("watch:\n  listen: nowhere\n") == [#"config.yaml:2: watch.listen: "nowhere" is not host:port"#])
        #expect(issues("state:\n  path: x\n").first?.contains("state.path: unknown key") == true)
    }
}
