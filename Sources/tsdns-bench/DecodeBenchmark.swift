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
