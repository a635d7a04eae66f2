import Foundation
import TSDNSCore
import TSDNSHTTP
import TSDNSTailscale

/// The devices body of the once benchmark, decoded in process: the scanner and the stream
/// against `JSONDecoder`, and the inventory built after the read, so the remaining time of
/// a dry run can be named.
func decodeBenchmark() async throws {
    let bench = try BenchTailnet()
    defer { bench.tailnet.stop(); try? FileManager.default.removeItem(at: bench.directory) }
    let response = try await HTTPClient().send(HTTPRequest(
        url: bench.tailnet.baseURL + "/api/v2/tailnet/-/devices", headers: [HTTPHeader("Authorization", "Bearer \(bench.tailnet.apiKey)")]
    ))
    let body = response.body
    let megabytes = Double(body.count) / 1_000_000
    print(String(format: "devices body: %d devices, %.1f MB", bench.devices.count, megabytes))

    func time(_ runs: Int, _ work: () throws -> Void) rethrows -> Double {
        var samples: [Double] = []
        for _ in 0..<runs {
            let start = ContinuousClock.now
            try work()
            samples.append((ContinuousClock.now - start).seconds)
        }
        return median(samples)
    }
    var devices: [Device] = []
    let scanner = try time(21) { devices = try DeviceListDecoder.decode(body) }
    print(String(format: "DeviceListDecoder: median %.1f ms (%.0f MB/s)", scanner * 1000, megabytes / scanner))
    // The decoder takes a key that is the same bytes as the one at its place in the device
    // before without reading it again; the API (and the simulator) send one order. The same
    // body with each device's keys in an order of its own shows what that saves.
    let shuffled = try shuffledKeys(body)
    let unordered = try time(21) { devices = try DeviceListDecoder.decode(shuffled) }
    print(String(format: "DeviceListDecoder, each device's keys in an order of its own: median %.1f ms (%.2f× the API's one order)", unordered * 1000, unordered / scanner))
    let streamed = try time(21) {
        let stream = DeviceListStream(expectedLength: body.count)
        body.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let end = min(raw.count, offset + HTTPClient.readSize)
                stream.consume(UnsafeRawBufferPointer(rebasing: raw[offset..<end]))
                offset = end
            }
        }
        devices = try stream.finish()
    }
    print(String(format: "DeviceListStream, %d KB chunks as curl hands them: median %.1f ms (%.2f× the whole-body scanner)", HTTPClient.readSize >> 10, streamed * 1000, streamed / scanner))
    struct Wire: Decodable { var devices: [Device] }
    let foundation = try time(5) { _ = try JSONDecoder().decode(Wire.self, from: body) }
    print(String(format: "JSONDecoder:       median %.1f ms (%.0f MB/s), %.1f× the scanner", foundation * 1000, megabytes / foundation, foundation / scanner))
    let floor = time(21) {
        // The floor: one pass over the bytes, looking at each (what validating UTF-8 costs).
        var sum: UInt64 = 0
        body.withUnsafeBytes { for byte in $0 { sum &+= UInt64(byte) } }
        if sum == 0 { print("") }
    }
    print(String(format: "one pass over the bytes: median %.1f ms", floor * 1000))
    let now = Date()
    let inventory = time(21) {
        _ = ResolverInventory(devices: devices, now: now, staleAfter: .seconds(300), resolverTags: ["tag:dns"])
    }
    print(String(format: "ResolverInventory of %d devices: median %.1f ms", devices.count, inventory * 1000))
}

/// The devices body with each device's keys in a seeded random order, the values as they were.
private func shuffledKeys(_ body: Data) throws -> Data {
    guard let object = try JSONSerialization.jsonObject(with: body) as? [String: Any],
          let devices = object["devices"] as? [[String: Any]] else { fatalError("the devices body is not {\"devices\":[...]}") }
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    var out = Array(#"{"devices":["#.utf8)
    for (position, device) in devices.enumerated() {
        if position > 0 { out.append(UInt8(ascii: ",")) }
        var keys = device.keys.sorted()
        for index in keys.indices.reversed() where index > 0 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            keys.swapAt(index, Int((state >> 33) % UInt64(index + 1)))
        }
        out.append(UInt8(ascii: "{"))
        for (number, key) in keys.enumerated() {
            if number > 0 { out.append(UInt8(ascii: ",")) }
            out += try JSONSerialization.data(withJSONObject: key, options: .fragmentsAllowed)
            out.append(UInt8(ascii: ":"))
            out += try JSONSerialization.data(withJSONObject: device[key]!, options: [.fragmentsAllowed, .withoutEscapingSlashes])
        }
        out.append(UInt8(ascii: "}"))
    }
    out += Array("]}".utf8)
    return Data(out)
}
