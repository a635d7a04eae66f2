// libFuzzer entry point for the device-list decoder, built with AddressSanitizer by
// `make fuzz` (not a SwiftPM target: libFuzzer brings its own main). It is compiled into
// one module with TSDNSCore's sources and the decoder's file.
//
// The property, as in the Swift mutation test of `make test`: whatever the scanner accepts,
// JSONDecoder accepts too, with an equal result. ASan adds: no read outside the body.
import Foundation

private struct Body: Decodable { var devices: [Device] }

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDeviceList(_ bytes: UnsafePointer<UInt8>, _ count: Int) -> Int32 {
    // An exact-size copy, so ASan sees a read one byte past the body.
    let data = Data(UnsafeBufferPointer(start: bytes, count: count))
    let decoded: [Device]
    do throws(DeviceListError) {
        decoded = try DeviceListDecoder.decode(data)
    } catch {
        // A refusal must say where: a path (possibly empty) and an offset inside the body.
        precondition(error.offset >= 0 && error.offset <= count, "error offset \(error.offset) outside a body of \(count) bytes")
        return 0
    }
    guard let expected = try? JSONDecoder().decode(Body.self, from: data).devices else {
        fatalError("the scanner accepted what JSONDecoder refuses: \(String(decoding: data.prefix(500), as: UTF8.self))")
    }
    precondition(decoded == expected, "the scanner and JSONDecoder disagree: \(String(decoding: data.prefix(500), as: UTF8.self))")
    return 0
}
