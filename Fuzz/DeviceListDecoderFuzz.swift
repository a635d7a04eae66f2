// libFuzzer entry point for the device-list decoder, built with AddressSanitizer by
// `make fuzz` (not a SwiftPM target: libFuzzer brings its own main). It is compiled into
// one module with TSDNSCore's sources and the decoder's file.
//
// The properties, as in the Swift tests of `make test`: the stream, however the body is cut,
// answers as the whole-body decoder does; whatever the scanner accepts,
// JSONDecoder accepts too, with an equal result. ASan adds: no read outside the body. (The
// other direction, that valid documents are accepted, is the Swift tests' generator's: the
// scanner is stricter than JSONDecoder on purpose, so a refusal proves nothing here.)
import Foundation

private struct Body: Decodable { var devices: [Device] }

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDeviceList(_ bytes: UnsafePointer<UInt8>, _ count: Int) -> Int32 {
    // libFuzzer's own buffer, exactly `count` bytes on the heap: ASan sees a read past it.
    let body = UnsafeBufferPointer(start: bytes, count: count)
    // The stream, fed in two pieces cut where the input says and in batches as small as the
    // input says (0: none), must give the same answer.
    let stream = DeviceListStream(expectedLength: count, batchSize: count > 1 ? Int(bytes[1]) : 0)
    let cut = count == 0 ? 0 : Int(bytes[0]) * count / 256
    stream.consume(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(body)[..<cut]))
    stream.consume(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(body)[cut...]))
    let streamed: Result<[Device], DeviceListError>
    do throws(DeviceListError) { streamed = .success(try stream.finish()) } catch { streamed = .failure(error) }
    let whole: Result<[Device], DeviceListError>
    do throws(DeviceListError) { whole = .success(try DeviceListDecoder.decode(bytes: body)) } catch { whole = .failure(error) }
    precondition(streamed == whole, "the stream (cut at \(cut)) and the whole body disagree: \(streamed) vs \(whole)")

    let decoded: [Device]
    do throws(DeviceListError) {
        decoded = try whole.get()
    } catch {
        // A refusal must say where: a path (possibly empty) and an offset inside the body.
        precondition(error.offset >= 0 && error.offset <= count, "error offset \(error.offset) outside a body of \(count) bytes")
        return 0
    }
    let data = Data(body)
    guard let expected = try? JSONDecoder().decode(Body.self, from: data).devices else {
        fatalError("the scanner accepted what JSONDecoder refuses: \(String(decoding: data.prefix(500), as: UTF8.self))")
    }
    precondition(decoded == expected, "the scanner and JSONDecoder disagree: \(String(decoding: data.prefix(500), as: UTF8.self))")
    return 0
}
