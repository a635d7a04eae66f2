import Foundation
import Testing
import TSDNSCore
@testable import TSDNSTailscale

/// The reference: what `JSONDecoder` makes of a devices body.
private struct Body: Decodable { var devices: [Device] }

private func reference(_ data: Data) -> [Device]? {
    (try? JSONDecoder().decode(Body.self, from: data))?.devices
}

private func fast(_ data: Data) -> Result<[Device], DeviceListError> {
    do throws(DeviceListError) {
        return .success(try DeviceListDecoder.decode(data))
    } catch {
        return .failure(error)
    }
}

/// What a stream makes of `bytes` fed in chunks of the sizes `chunk` picks (cut to what is
/// left), then finished.
private func streamed(_ bytes: [UInt8], by stream: DeviceListStream, chunk: () -> Int) -> Result<[Device], DeviceListError> {
    var offset = 0
    while offset < bytes.count {
        let size = min(bytes.count - offset, chunk())
        bytes[offset..<(offset + size)].withUnsafeBytes { stream.consume($0) }
        offset += size
    }
    do throws(DeviceListError) {
        return .success(try stream.finish())
    } catch {
        return .failure(error)
    }
}

/// The property every input must keep: if the new decoder accepts it, JSONDecoder accepts
/// it too, with an equal result. Returns whether the new decoder accepted it, and what
/// went wrong if the property broke.
private func check(_ data: Data) -> (accepted: Bool, failure: String?) {
    guard case .success(let devices) = fast(data) else { return (false, nil) }
    let shown = String(decoding: data.prefix(300), as: UTF8.self)
    guard let expected = reference(data) else { return (true, "accepted what JSONDecoder refuses: \(shown)") }
    return (true, devices == expected ? nil : "differs from JSONDecoder: \(shown)")
}

@discardableResult
private func agree(_ data: Data, _ comment: Comment? = nil) -> Bool {
    let (accepted, failure) = check(data)
    if let failure { Issue.record("\(failure) \(comment?.rawValue ?? "")") }
    return accepted
}

/// CPU-bound work on a thread of its own: tests share a cooperative pool of as many
/// threads as cores, and a long loop on it would stall every other test's waits.
private func onOwnThread<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread { continuation.resume(returning: work()) }.start()
    }
}

private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("TSDNSCoreTests/Fixtures")

@Suite("Device list decoder")
struct DeviceListDecoderTests {
    @Test func theRealFixturesDecodeAsJSONDecoderDecodesThem() throws {
        let data = try Data(contentsOf: fixtures.appendingPathComponent("devices.json"))
        let expected = try #require(reference(data))
        #expect(!expected.isEmpty)
        #expect(try DeviceListDecoder.decode(data) == expected)
        // One device, wrapped as a list.
        let one = try Data(contentsOf: fixtures.appendingPathComponent("device.json"))
        let wrapped = Data("{\"devices\": [".utf8) + one + Data("]}".utf8)
        #expect(agree(wrapped))
    }

    static let minimal = #"{"nodeId":"n1","name":"a.ts.net","hostname":"a","addresses":["100.64.0.1"]}"#

    static let accepted: [(String, String)] = [
        ("minimal", #"{"devices":[\#(minimal)]}"#),
        ("empty list", #"{"devices":[]}"#),
        ("every kept key", #"{"devices":[{"id":"1","nodeId":"n1","name":"a.ts.net","hostname":"a","addresses":["100.64.0.1","fd7a:115c:a1e0::1"],"tags":["tag:dns"],"authorized":true,"connectedToControl":false,"lastSeen":"2026-11-26T10:00:00Z","expires":"2027-05-25T10:00:00Z","keyExpiryDisabled":false,"isExternal":false}]}"#),
        ("nulls are absent", #"{"devices":[{"id":null,"nodeId":"n1","name":"a","hostname":"a","addresses":[],"tags":null,"authorized":null,"connectedToControl":null,"lastSeen":null,"expires":null,"keyExpiryDisabled":null,"isExternal":null}]}"#),
        ("empty timestamps are absent", #"{"devices":[{"nodeId":"n1","name":"a","hostname":"a","addresses":[],"lastSeen":"","expires":""}]}"#),
        ("fractional and offset timestamps", #"{"devices":[{"nodeId":"n1","name":"a","hostname":"a","addresses":[],"lastSeen":"2026-11-26T10:00:00.123456Z","expires":"2026-11-26T12:00:00+02:00"}]}"#),
        ("escapes in kept strings", #"{"devices":[{"nodeId":"n\"1\\","name":"\u0061\/b","hostname":"\ud83d\ude00 \t\n\b\f\r","addresses":["\u0031"]}]}"#),
        ("escapes and unicode in skipped values", #"{"devices":[{"nodeId":"n1","name":"a","hostname":"ünï","addresses":[],"os":"\ud83d\ude00\u00e9\\","x":{"y":[1,-2.5e-3,true,null,"\"",{}]}}]}"#),
        ("unknown keys everywhere", #"{"extra":{"a":[[[]]]},"devices":[{"nodeId":"n1","name":"a","hostname":"a","addresses":[],"user":"u@example.com","postureStatus":{},"clientConnectivity":{"endpoints":["1.2.3.4:41641"],"latency":{"fra":{"latencyMs":12.5,"preferred":true}}}}],"more":0}"#),
        ("duplicate keys: the first wins", #"{"devices":[{"nodeId":"n1","nodeId":"n2","name":"a","hostname":"a","hostname":"b","addresses":["1"],"addresses":2,"tags":null,"tags":["tag:x"]}]}"#),
        ("duplicate devices key: the first wins", #"{"devices":[],"devices":[\#(minimal)]}"#),
        ("whitespace everywhere", " \n\t{ \"devices\" : [ { \"nodeId\" : \"n1\" , \"name\" : \"a\" , \"hostname\" : \"a\" , \"addresses\" : [ \"x\" , \"y\" ] } ] } \r\n"),
        ("a byte order mark", "\u{FEFF}{\"devices\":[]}"),
        ("id falls back to nodeId", #"{"devices":[{"nodeId":"nX","name":"a","hostname":"a","addresses":[]}]}"#),
        // Keys are compared as bytes; written with escapes they are still the same keys.
        ("escaped kept keys", #"{"d\u0065vices":[{"node\u0049d":"n1","n\u0061me":"a","hostnam\u0065":"h","\u0061ddresses":["100.64.0.1"],"t\u0061gs":["tag:dns"],"lastSe\u0065n":"2026-11-26T10:00:00Z","isExtern\u0061l":true}]}"#),
        ("keys that are nearly kept keys", #"{"devices":[{"nodeId":"n1","nodeid":"x","nodeIds":"y","name":"a","hostname":"a","addresses":[],"tag":["t"],"Tags":["u"],"lastseen":"z","expire":"w"}]}"#),
        ("an escaped canonical timestamp", #"{"devices":[{"nodeId":"n1","name":"a","hostname":"a","addresses":[],"lastSeen":"2026-11-26T10:00:00\u005a"}]}"#),
    ]

    @Test func handMadeDocumentsAreAcceptedAndAgree() {
        for (name, text) in Self.accepted {
            #expect(agree(Data(text.utf8), "\(name)"), "refused: \(name)")
        }
    }

    /// Strict RFC 8259: some of these JSONDecoder lets through (a trailing comma, a leading
    /// zero); refusing more than it is allowed, accepting more is not.
    static let refused: [(String, String, String)] = [
        ("not JSON", "nope", "the body is not a JSON object"),
        ("empty", "", "the body is empty"),
        ("missing devices", #"{"device":[]}"#, #"missing key "devices""#),
        ("null devices", #"{"devices":null}"#, "devices: is null"),
        ("a missing required key", #"{"devices":[{"nodeId":"n1","name":"a","addresses":[]}]}"#, #"devices[0]: missing key "hostname""#),
        ("a null required key", #"{"devices":[{"nodeId":"n1","name":"a","hostname":null,"addresses":[]}]}"#, #"devices[0]: "hostname" is null"#),
        ("a wrong type", #"{"devices":[\#(minimal),{"nodeId":"n2","name":"a","hostname":"a","addresses":[],"authorized":"yes"}]}"#, "devices[1].authorized: expected true or false"),
        ("a bad timestamp", #"{"devices":[{"nodeId":"n1","name":"a","hostname":"a","addresses":[],"lastSeen":"yesterday"}]}"#, #"devices[0].lastSeen: "yesterday" is not an RFC 3339 timestamp at byte"#),
        ("a lone surrogate", #"{"devices":[{"nodeId":"\ud800","name":"a","hostname":"a","addresses":[]}]}"#, "a lone surrogate"),
        ("a raw control character", "{\"devices\":[{\"nodeId\":\"a\u{01}\",\"name\":\"a\",\"hostname\":\"a\",\"addresses\":[]}]}", "a control character"),
        ("a trailing comma", #"{"devices":[\#(minimal),]}"#, "devices[1]: expected a device object"),
        ("a leading zero", #"{"devices":[],"n":01}"#, "unexpected '1'"),
        ("truncated", #"{"devices":[{"nodeId":"n1","name":"a""#, "unexpected end"),
        ("garbage after", #"{"devices":[]} x"#, "unexpected 'x'"),
        ("an invalid escape", #"{"devices":[],"s":"\q"}"#, "an invalid escape"),
    ]

    @Test func malformedDocumentsAreRefusedWithPathAndOffset() {
        for (name, text, message) in Self.refused {
            let data = Data(text.utf8)
            guard case .failure(let error) = fast(data) else {
                Issue.record("accepted: \(name)")
                continue
            }
            #expect(error.description.contains(message), "\(name): \(error)")
        }
        #expect(fast(Data([0x7B, 0x22, 0x64, 0xFF, 0x22, 0x3A, 0x31, 0x7D])).isFailure, "invalid UTF-8 in a key")
        let deep = String(repeating: "[", count: 600) + String(repeating: "]", count: 600)
        #expect(fast(Data("{\"devices\":[],\"x\":\(deep)}".utf8)).isFailure, "nesting is bounded")
    }

    /// Strings are skipped eight bytes at a time: a quote, a backslash, a control character
    /// or a non-ASCII byte at every position of a word, and near the end of the body, must
    /// be seen exactly where it is.
    @Test func everyByteOfAWordIsLookedAt() {
        for length in 0..<20 {
            for position in 0...length {
                for special in [#"\""#, #"\\"#, #"\u00e9"#, "é", "😀"] {
                    let padding = String(repeating: "x", count: position)
                    let tail = String(repeating: "y", count: length - position)
                    let text = padding + special + tail
                    let document = #"{"devices":[{"nodeId":"\#(text)","name":"a","hostname":"a","addresses":[],"os":"\#(text)"}],"s":"\#(text)"}"#
                    #expect(agree(Data(document.utf8), "\(length) \(position) \(special)"), "refused: \(document)")
                }
                let raw = String(repeating: "x", count: position) + "\u{01}" + String(repeating: "y", count: length - position)
                let controlled = #"{"devices":[],"s":"\#(raw)"}"#
                guard case .failure(let error) = fast(Data(controlled.utf8)) else {
                    Issue.record("accepted a control character at \(position) of \(length)")
                    continue
                }
                #expect(error.offset == 19 + position, "\(error)")
                let unterminated = #"{"devices":[],"s":""# + String(repeating: "x", count: length)
                #expect(fast(Data(unterminated.utf8)).isFailure, "an unterminated string of \(length)")
            }
        }
        // Invalid UTF-8 in a skipped string, in the middle of a long ASCII run.
        let invalid = Data(#"{"devices":[],"s":"abcdefghijklmnop"#.utf8) + Data([0xC3, 0x28]) + Data(#"qrstuvwx"}"#.utf8)
        #expect(fast(invalid).isFailure)
    }

    /// Keys are compared a word at a time: a key one bit away from a kept one, at any
    /// position and bit (within printable ASCII), is another key. Its value has the wrong
    /// type for the kept key, so reading it as that key refuses the document, which
    /// JSONDecoder accepts.
    @Test func aKeyOneBitOffIsAnotherKey() {
        let wrongValue = [
            "id": "true", "nodeId": "true", "name": "true", "hostname": "true", "addresses": "1", "tags": "1",
            "authorized": #""x""#, "connectedToControl": #""x""#, "keyExpiryDisabled": #""x""#, "isExternal": #""x""#,
            "lastSeen": #""x""#, "expires": #""x""#, "devices": "1",
        ]
        let device = #"{"nodeId":"n1","name":"a","hostname":"a","addresses":["100.64.0.1"]}"#
        for (key, value) in wrongValue {
            for position in 0..<key.utf8.count {
                for bit in 0..<7 {
                    var near = Array(key.utf8)
                    near[position] ^= 1 << bit
                    guard (0x20...0x7E).contains(near[position]), near[position] != 0x22, near[position] != 0x5C else { continue }
                    let other = String(decoding: near, as: UTF8.self)
                    let document = key == "devices"
                        ? #"{"\#(other)":\#(value),"devices":[\#(device)]}"#
                        : #"{"devices":[{"\#(other)":\#(value),"# + device.dropFirst() + "]}"
                    #expect(agree(Data(document.utf8)), "refused: \(document)")
                }
            }
        }
    }

    /// A key that is the same bytes as the one at its place in the device before is taken
    /// without being read again: devices in one order (as the API sends them), each with a
    /// chance of a key at some place written otherwise (escaped, one letter off, cut short,
    /// longer, spaced, dropped, duplicated, opened with `'`, or an unknown key put in).
    /// Whole and streamed in batches of a few devices, the result is JSONDecoder's,
    /// refusals included.
    @Test func aKeyInTheOrderOfTheDeviceBeforeIsStillReadAsItIs() async {
        let failures = await onOwnThread { () -> [String] in
            var generator = Generator(seed: 7)
            var failures: [String] = []
            let keys = ["addresses", "id", "nodeId", "name", "hostname", "tags", "lastSeen", "expires", "authorized",
                        "connectedToControl", "keyExpiryDisabled", "isExternal", "user"]
            func value(_ key: String, _ n: Int) -> String {
                switch key {
                case "addresses": return #"["100.64.0.\#(n % 250)"]"#
                case "tags": return #"["tag:\#(n)"]"#
                case "lastSeen", "expires": return generator.timestamp()
                case "authorized", "connectedToControl", "keyExpiryDisabled", "isExternal": return n % 2 == 0 ? "true" : "false"
                default: return #""\#(key)-\#(n)""#
                }
            }
            for round in 0..<1_500 {
                var devices: [String] = []
                for n in 0..<generator.int(2...6) {
                    var members = keys.map { (key: #""\#($0)""#, name: $0) }
                    if generator.chance(50) {
                        let place = generator.int(0...(members.count - 1))
                        let name = members[place].name
                        switch generator.int(0...8) {
                        case 0: members[place].key = "\"" + name.prefix(1) + #"\u00"# + String(Array(name.utf8)[1], radix: 16) + name.dropFirst(2) + "\""
                        case 1: members[place].key = "\"" + name.dropLast() + String(UnicodeScalar(Array(name.utf8).last! ^ 1)) + "\""
                        case 2: members[place].key = "\"" + name.dropLast() + "\""
                        case 3: members[place].key = "\"" + name + "x\""
                        case 4: members[place].key = " \"" + name + "\" "
                        case 5: members.remove(at: place)
                        case 6: members.insert(members[place], at: generator.int(0...members.count))
                        case 7: members[place].key = "'" + name + "\""  // not JSON: both refuse
                        default: members.insert((#""other""#, "other"), at: place)
                        }
                    }
                    devices.append("{" + members.map { "\($0.key):\(value($0.name, round * 10 + n))" }.joined(separator: ",") + "}")
                }
                let data = Data(#"{"devices":[\#(devices.joined(separator: ","))]}"#.utf8)
                let expected = reference(data)
                if (try? fast(data).get()) != expected { failures.append(String(decoding: data, as: UTF8.self)) }
                let stream = DeviceListStream(batchSize: 64)
                if (try? streamed(Array(data), by: stream, chunk: { 16 }).get()) != expected {
                    failures.append("streamed: " + String(decoding: data, as: UTF8.self))
                }
            }
            return failures
        }
        #expect(failures.count == 0, "\(failures.prefix(2))")
    }

    /// An error inside a value names its key as decoded, even when the key was escaped.
    @Test func anEscapedKeyIsNamedDecodedInErrors() {
        let document = #"{"devices":[{"nodeId":"n1","name":"a","hostname":"a","addresses":[],"lastSe\u0065n":"soon"}]}"#
        guard case .failure(let error) = fast(Data(document.utf8)) else {
            Issue.record("accepted a bad timestamp")
            return
        }
        #expect(error.path == "devices[0].lastSeen", "\(error)")
    }

    @Test func randomValidDocumentsAgree() async {
        let failures = await onOwnThread { () -> [String] in
            var generator = Generator(seed: 0x7D5_2026)
            var failures: [String] = []
            for _ in 0..<300 {
                let document = generator.document(devices: generator.int(0...6))
                let (accepted, failure) = check(Data(document.utf8))
                if !accepted { failures.append("refused a valid document: \(document.prefix(300))") }
                if let failure { failures.append(failure) }
            }
            return failures
        }
        #expect(failures.isEmpty, "\(failures.prefix(5).joined(separator: "\n"))")
    }

    /// Seeded mutation fuzzing: whatever the new decoder accepts, JSONDecoder must accept
    /// with an equal result. `TSDNS_FUZZ_ITERATIONS` runs longer (`make fuzz`).
    @Test func mutatedDocumentsNeverDisagree() async {
        let iterations = ProcessInfo.processInfo.environment["TSDNS_FUZZ_ITERATIONS"].flatMap(Int.init) ?? 100_000
        let (accepted, failures) = await onOwnThread { () -> (Int, [String]) in
            var generator = Generator(seed: 0xF022)
            var accepted = 0
            var failures: [String] = []
            for round in 0..<iterations {
                var bytes = Array(generator.document(devices: generator.int(0...2)).utf8)
                for _ in 0..<generator.int(1...3) { generator.mutate(&bytes) }
                let (ok, failure) = check(Data(bytes))
                if ok { accepted += 1 }
                if let failure, failures.count < 10 { failures.append("round \(round): \(failure)") }
            }
            return (accepted, failures)
        }
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
        #expect(accepted > iterations / 50, "the mutations leave some documents valid: \(accepted)")
    }

    /// The stream decodes chunk by chunk and must give, for every body and every way of
    /// cutting it, exactly what the whole-body decoder gives: the same devices, or the
    /// same error with the same path and byte offset.
    @Test func theStreamAgreesWithTheWholeBodyDecoderHoweverTheBodyIsCut() async {
        let failures = await onOwnThread { () -> [String] in
            var generator = Generator(seed: 0x57_2E_A4)
            var failures: [String] = []
            var bodies: [[UInt8]] = Self.accepted.map { Array($0.1.utf8) } + Self.refused.map { Array($0.1.utf8) }
            bodies += [
                #"{"devices":[],"devices":[\#(Self.minimal)]}"#, #"{"devices":[\#(Self.minimal)],"x":{"y":[1,2]}} "#,
                #"{"devices":[\#(Self.minimal)] , "z":1 "#, #"{"devices":[\#(Self.minimal)"#, #"{"devices":["#,
                #"{"devices":[{"nodeId":"a\"}{"}]}"#, #"{"devices":[{"a":[}]}]}"#, "\u{FEFF} {\n\"devices\" :\t[ ] }",
                #"{"devices":[\#(Self.minimal),]}"#, #"{"devices":[\#(Self.minimal) \#(Self.minimal)]}"#, #"{"devices":[1]}"#,
                "{" + String(repeating: " ", count: 5000) + #""devices":[\#(Self.minimal)]}"#,
            ].map { Array($0.utf8) }
            for _ in 0..<3000 {
                var bytes = Array(generator.document(devices: generator.int(0...3)).utf8)
                if generator.chance(60) { for _ in 0..<generator.int(1...3) { generator.mutate(&bytes) } }
                bodies.append(bytes)
            }
            for bytes in bodies {
                let whole = fast(Data(bytes))
                for (growth, batchSize) in [(1, 0), (7, 1), (1 << 14, 64)] {
                    let stream = DeviceListStream(expectedLength: bytes.count, retryGrowth: growth, batchSize: batchSize)
                    let result = streamed(bytes, by: stream) { generator.chance(30) ? generator.int(1...3) : generator.int(1...200) }
                    if result != whole, failures.count < 10 {
                        failures.append("\(String(decoding: bytes.prefix(200), as: UTF8.self)): whole \(whole), streamed \(result)")
                    }
                }
            }
            return failures
        }
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
    }

    /// Batches: lists long enough to be cut many times, where `},{"` also stands inside
    /// devices (nested lists of objects, strings), with devices wrong here and there: the
    /// same devices or the same error as the whole-body decoder, and both the second thread
    /// and the putting back of a batch were used.
    @Test func batchesAgreeWithTheWholeBodyDecoder() async {
        let (failures, beside, putBack) = await onOwnThread { () -> ([String], Int, Int) in
            var generator = Generator(seed: 0xBA_7C_4E5)
            var failures: [String] = []
            var beside = 0, putBack = 0
            for round in 0..<400 {
                var devices = (0..<generator.int(20...60)).map { generator.device($0) }
                // A false boundary inside a device: a list of objects, a string ending in `},{`.
                for _ in 0..<generator.int(0...3) {
                    let index = generator.int(0...(devices.count - 1))
                    let fake = generator.chance(50) ? #""x":[{"a":1},{"b":[{"c":2},{"d":3}]}],"# : #""y":"},{","#
                    devices[index].insert(contentsOf: fake, at: devices[index].index(after: devices[index].startIndex))
                }
                var bytes = Array((#"{"devices":["# + devices.joined(separator: ",") + "]}").utf8)
                if round % 4 == 3 { for _ in 0..<generator.int(1...2) { generator.mutate(&bytes) } }
                let whole = fast(Data(bytes))
                for batchSize in [1, 50, 400, 2000] {
                    let stream = DeviceListStream(expectedLength: bytes.count, batchSize: batchSize)
                    let result = streamed(bytes, by: stream) { generator.int(1...700) }
                    beside += stream.batchesDecodedBeside
                    putBack += stream.batchesPutBack ? 1 : 0
                    if result != whole, failures.count < 10 {
                        failures.append("batch \(batchSize), \(String(decoding: bytes.prefix(300), as: UTF8.self)): whole \(whole), streamed \(result)")
                    }
                }
            }
            return (failures, beside, putBack)
        }
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
        #expect(beside > 0, "no batch was decoded on the second thread")
        #expect(putBack > 0, "no batch was put back")
    }

    /// A list in chunks of libcurl's size is let go of as it is decoded: the window holds a
    /// partial device, a chunk and a few batches, never the body (a prefix check once sent
    /// every body whose first chunk was over 4 KB down the decode-it-whole path).
    @Test func theWindowStaysSmallWhateverTheFirstChunk() throws {
        // 8 MB of devices, in libcurl's reads of up to 128 KiB (`HTTPClient.readSize`).
        let read = 128 << 10
        let body = Array((#"{"devices":["# + Array(repeating: Self.minimal, count: 100_000).joined(separator: ",") + "]}").utf8)
        for first in [read, 100, DeviceListStream.prefixLimit + 1] {
            let stream = DeviceListStream(expectedLength: body.count)
            var size = first  // the first chunk, then libcurl's
            #expect(try streamed(body, by: stream) { defer { size = read }; return size }.get().count == 100_000)
            // A read, a partial device and a few batches of 128 KiB (about 0.8 MB).
            #expect(stream.windowPeak < 1 << 20, "first chunk \(first): \(stream.windowPeak) of \(body.count) bytes held")
        }
    }

    /// However small the chunks, the search for a place to cut looks at each byte of the body
    /// once: in a body with spaces it finds none, and looking through all that waits at every
    /// chunk made the fuzzer's first input take 10 s.
    @Test func theSearchForACutLooksAtEachByteOnce() throws {
        let pretty = try Array(Data(contentsOf: fixtures.appendingPathComponent("devices.json")))
        let compact = Array((#"{"devices":["# + Array(repeating: Self.minimal, count: 500).joined(separator: ",") + "]}").utf8)
        for body in [pretty, compact] {
            let whole = fast(Data(body))
            for (chunk, batchSize) in [(1, 52), (6, 52), (1, 1), (700, 4096)] {
                let stream = DeviceListStream(expectedLength: body.count, batchSize: batchSize)
                #expect(streamed(body, by: stream) { chunk } == whole)
                #expect(stream.boundaryBytesSearched <= body.count, "chunks of \(chunk), batches of \(batchSize): \(stream.boundaryBytesSearched) bytes searched in \(body.count)")
            }
        }
    }

    /// The second thread ends with its stream: at `finish`, and when a transfer that failed
    /// midway drops the stream unfinished.
    @Test func theDecodeThreadEndsWithItsStream() throws {
        let body = Array((#"{"devices":["# + Array(repeating: Self.minimal, count: 2_000).joined(separator: ",") + "]}").utf8)
        var workers: [BatchWorker] = []
        for finished in [true, false] {
            let stream = DeviceListStream(expectedLength: body.count, batchSize: 1_024)
            let cut = finished ? body.count : body.count / 2
            var offset = 0
            while offset < cut {
                let size = min(cut - offset, 4_096)
                body[offset..<(offset + size)].withUnsafeBytes { stream.consume($0) }
                offset += size
            }
            workers.append(try #require(stream.worker))
            if finished { #expect(try stream.finish().count == 2_000) }
        }
        for worker in workers { #expect(worker.waitForExit(timeout: .seconds(10))) }
    }

    /// The length a server announces sizes the list, but never beyond the body cap: a lie
    /// is not an allocation.
    @Test func anAnnouncedLengthIsNotTrusted() throws {
        let stream = DeviceListStream(expectedLength: Int.max)
        Data(#"{"devices":[\#(Self.minimal)]}"#.utf8).withUnsafeBytes { stream.consume($0) }
        #expect(try stream.finish().map(\.nodeId) == ["n1"])
    }

    /// 1 to 2200: the Julian years before 1582 included, where a naive fast path is wrong.
    @Test func canonicalTimestampsMatchTheFullParser() async {
        let mismatches = await onOwnThread { () -> [String] in
        var mismatches: [String] = []
        var generator = Generator(seed: 42)
        for _ in 0..<5000 {
            let text = String(
                format: "%04d-%02d-%02dT%02d:%02d:%02dZ", generator.int(1...2200), generator.int(1...12), generator.int(1...31),
                generator.int(0...23), generator.int(0...59), generator.int(0...59)
            )
            // The fast path where it applies, the full parser where not: always the full parser's answer.
            if DeviceListDecoderTests.canonical(text) != Timestamp.parse(text) { mismatches.append(text) }
        }
        return mismatches
        }
        #expect(mismatches.isEmpty, "\(mismatches.prefix(10))")
    }

    static func canonical(_ text: String) -> Date? {
        let data = Data(#"{"devices":[{"nodeId":"n","name":"a","hostname":"a","addresses":[],"lastSeen":"\#(text)"}]}"#.utf8)
        return (try? DeviceListDecoder.decode(data))?.first?.lastSeen
    }
}

extension Result {
    var isFailure: Bool { if case .failure = self { true } else { false } }
}

/// Random devices bodies from a seed: valid JSON with kept and unknown keys, escapes,
/// nulls, nesting; and mutations of them.
struct Generator {
    var state: UInt64

    init(seed: UInt64) { state = seed | 1 }

    mutating func next() -> UInt64 {
        // xorshift64*
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 2_685_821_657_736_338_717
    }

    mutating func int(_ range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(next() % UInt64(range.count))
    }

    mutating func chance(_ percent: Int) -> Bool { int(0...99) < percent }

    mutating func string() -> String {
        let pieces = ["a", "dns", "-", ".", "ü", "\\\"", "\\\\", "\\/", "\\n", "\\t", "\\u0041", "\\u00e9", "\\ud83d\\ude00", "😀", " ", "0"]
        return "\"" + (0..<int(0...6)).map { _ in pieces[int(0...(pieces.count - 1))] }.joined() + "\""
    }

    mutating func timestamp() -> String {
        switch int(0...5) {
        case 0: return "\"\""
        case 1: return "null"
        case 2: return String(format: "\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"", int(2000...2030), int(1...12), int(1...28), int(0...23), int(0...59), int(0...59), int(0...999))
        default: return String(format: "\"%04d-%02d-%02dT%02d:%02d:%02dZ\"", int(2000...2030), int(1...12), int(1...28), int(0...23), int(0...59), int(0...59))
        }
    }

    mutating func value(depth: Int = 0) -> String {
        switch int(0...(depth > 3 ? 3 : 5)) {
        case 0: return string()
        case 1: return ["true", "false", "null"][int(0...2)]
        case 2: return ["0", "-1", "12.5", "1e3", "-0.25E-2", "123456789"][int(0...5)]
        case 3: return "[]"
        case 4: return "[" + (0..<int(0...3)).map { _ in value(depth: depth + 1) }.joined(separator: ",") + "]"
        default: return "{" + (0..<int(0...3)).map { _ in "\(string()):\(value(depth: depth + 1))" }.joined(separator: ",") + "}"
        }
    }


    mutating func device(_ n: Int) -> String {
        var fields: [String] = [
            "\"nodeId\":\"n\(n)\"", "\"name\":\(string())", "\"hostname\":\(string())",
            "\"addresses\":[" + (0..<int(0...2)).map { _ in "\"100.64.0.\(int(1...254))\"" }.joined(separator: ",") + "]",
        ]
        if chance(60) {
            let id = "\"\(next() % 100_000)\""
            fields.append("\"id\":" + (chance(15) ? "null" : id))
        }
        if chance(60) {
            let tags = "[" + (0..<int(0...2)).map { _ in "\"tag:\(["dns", "web", "k8s"][int(0...2)])\"" }.joined(separator: ",") + "]"
            fields.append("\"tags\":" + (chance(15) ? "null" : tags))
        }
        for key in ["authorized", "connectedToControl", "keyExpiryDisabled", "isExternal"] where chance(60) {
            let value = chance(50) ? "true" : "false"
            fields.append("\"\(key)\":" + (chance(15) ? "null" : value))
        }
        for key in ["lastSeen", "expires"] where chance(60) { fields.append("\"\(key)\":\(timestamp())") }
        for _ in 0..<int(0...3) { fields.append("\(string()):\(value())") }
        if chance(10) { fields.append(fields[int(0...(fields.count - 1))]) }  // a duplicate key
        // Shuffle.
        for index in fields.indices.reversed() where index > 0 { fields.swapAt(index, int(0...index)) }
        let space = chance(30) ? " " : ""
        return "{" + fields.joined(separator: ",\(space)") + "}"
    }

    mutating func document(devices count: Int) -> String {
        var members = ["\"devices\":[" + (0..<count).map { device($0) }.joined(separator: ",") + "]"]
        if chance(30) { members.append("\"extra\":\(value())") }
        if chance(50) { members.reverse() }
        return "{" + members.joined(separator: ",") + "}"
    }

    mutating func mutate(_ bytes: inout [UInt8]) {
        guard !bytes.isEmpty else { return }
        let position = int(0...(bytes.count - 1))
        let interesting: [UInt8] = Array("{}[]\",:\\0-.eE ntfu".utf8) + [0x00, 0x1F, 0x7F, 0xC3, 0xA9, 0xFF, 0xED, 0xA0]
        switch int(0...4) {
        case 0: bytes[position] = interesting[int(0...(interesting.count - 1))]
        case 1: bytes.insert(interesting[int(0...(interesting.count - 1))], at: position)
        case 2: bytes.remove(at: position)
        case 3: bytes = Array(bytes.prefix(position))
        default: bytes[position] ^= UInt8(1 << int(0...7))
        }
    }
}
