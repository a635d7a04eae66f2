import Foundation
import Testing
import TSDNSConfig

/// Every file in examples/ must be a valid config: they are what newcomers copy.
@Suite("examples/")
struct ExamplesTests {
    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("examples")

    static var files: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? [])
            .filter { $0.hasSuffix(".yaml") }.sorted()
    }

    @Test func thereAreExamples() {
        #expect(Self.files.contains("global.yaml"))
        #expect(Self.files.contains("split-dns.yaml"))
    }

    /// The man page is lint-clean (Debian's mandoc, installed by the Makefile).
    @Test func manPageLintsClean() throws {
        let page = Self.directory.deletingLastPathComponent().appendingPathComponent("man/tsdns-reconcile.1").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/mandoc")
        process.arguments = ["-T", "lint", "-W", "warning", page]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0 && text.isEmpty, "\(text)")
    }

    @Test(arguments: files)
    func exampleIsValid(_ name: String) throws {
        let path = Self.directory.appendingPathComponent(name).path
        let text = try String(contentsOfFile: path, encoding: .utf8)
        do {
            _ = try ConfigParser.parse(text, file: name)
        } catch {
            Issue.record("\(error.description)")
        }
    }
}
