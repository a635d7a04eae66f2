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
    // The stream must give the same answer fed as the input says: a first piece cut at one
    // byte's share of the input, the rest in chunks of another byte's size, in batches of a
    // third byte's, for one input in four (a chunk cuts one batch at most, so small chunks
    // make many; batches start a thread, which costs more than the rest of a run).
    let knob = { (position: Int) -> Int in count == 0 ? 0 : Int(bytes[position * (count - 1) / 3]) }
    let batchSize = knob(2) % 4 == 0 ? knob(2) % 160 : 0
    let stream = DeviceListStream(expectedLength: count, batchSize: batchSize)
    let cut = knob(0) * count / 256
    let step = 1 + knob(1) % 96
    let raw = UnsafeRawBufferPointer(body)
    stream.consume(UnsafeRawBufferPointer(rebasing: raw[..<cut]))
    var offset = cut
    while offset < count {
        stream.consume(UnsafeRawBufferPointer(rebasing: raw[offset..<min(count, offset + step)]))
        offset += step
    }
    let streamed: Result<[Device], DeviceListError>
    do throws(DeviceListError) { streamed = .success(try stream.finish()) } catch { streamed = .failure(error) }
    let whole: Result<[Device], DeviceListError>
    do throws(DeviceListError) { whole = .success(try DeviceListDecoder.decode(bytes: body)) } catch { whole = .failure(error) }
    precondition(streamed == whole, "the stream (cut at \(cut), chunks of \(step), batches of \(batchSize)) and the whole body disagree: \(streamed) vs \(whole)")

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
