import Foundation
import Testing
import TSDNSConfig

@Suite("Config loading: files and their limits")
struct ConfigLoaderTests {
    let directory: URL = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("tsdns-loader-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }()

    func file(_ name: String, _ contents: String) throws -> String {
        let path = directory.appendingPathComponent(name).path
        try contents.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func errors(_ path: String, environment: [String: String] = ["TAILSCALE_API_KEY": "tskey-test"]) -> [String] {
        do {
            _ = try ConfigLoader(environment: environment).load(path: path, for: .reconcile)
            return []
        } catch {
            return error.issues.map(\.description)
        }
    }

    @Test func aDirectoryStdinOrMissingFileSaysWhat() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        #expect(errors(directory.path) == ["\(directory.path): cannot read the config file: it is a directory, not a file"])
        #expect(errors(directory.appendingPathComponent("nope.yaml").path).first?.hasSuffix("cannot read the config file: no such file") == true)
    }

    @Test func invalidUTF8NamesTheByte() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("bad.yaml").path
        try Data([0x73, 0x79, 0x6E, 0x63, 0x3A, 0x0A, 0xFF, 0xFE]).write(to: URL(fileURLWithPath: path))
        #expect(errors(path) == ["\(path): the file is not UTF-8 text (byte 6)"])
    }

    @Test func aConfigOverOneMebibyteIsRefused() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = try file("big.yaml", "# " + String(repeating: "x", count: 1 << 20) + "\n")
        #expect(errors(path) == ["\(path): cannot read the config file: it is larger than 1 MiB"])
    }

    @Test func anEmptyOrWhitespaceTokenFileIsAConfigError() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let blank = try file("blank-token", "  \n\t\n")
        let config = try file("config.yaml", "rpc:\n  tokenFile: \(blank)\n")
        #expect(errors(config) == [#"\#(config):2: rpc.tokenFile: file "\#(blank)" is empty or only whitespace"#])
        let zero = try file("zero.yaml", "rpc:\n  tokenFile: /dev/zero\n")
        #expect(errors(zero).first?.contains("larger than 64 KiB") == true, "\(errors(zero))")
    }

    @Test func pullModeWithUnsourcedRemoveLoadsWithoutWarnings() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = try file("k8s.yaml", "resolvers:\n  unsourced: remove\nkubernetes:\n  clusters:\n    - name: prod\n")
        let resolved = try ConfigLoader(environment: ["TAILSCALE_API_KEY": "tskey-test"]).load(path: config, for: .reconcile)
        #expect(resolved.warnings.isEmpty)
        #expect(resolved.config.resolvers.unsourced == .remove)
        #expect(resolved.config.clusters.map(\.name) == ["prod"])
    }
}
