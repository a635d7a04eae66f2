import COpenSSL
import Foundation
import TSDNSSimulator
#if canImport(Glibc)
import Glibc
#endif

/// A TLS server identity, and optionally the CA whose client certificates it accepts: the
/// simulators' HTTPS in the tests and benchmarks (libcurl is the client side). The context
/// is built once; every connection shares it.
public final class ServerTLS: ServerSecurity, @unchecked Sendable {
    fileprivate let context: OpaquePointer

    public init(certificateChainFile: String, keyFile: String, clientCAFile: String? = nil) throws {
        // SSL_write cannot pass MSG_NOSIGNAL: a client that hangs up must not kill the process.
        signal(SIGPIPE, SIG_IGN)
        guard let context = SSL_CTX_new(TLS_server_method()) else { throw SimulatorError.socket("SSL_CTX_new failed") }
        self.context = context
        guard SSL_CTX_use_certificate_chain_file(context, certificateChainFile) == 1 else {
            throw SimulatorError.socket("cannot load the certificate \(certificateChainFile)")
        }
        guard SSL_CTX_use_PrivateKey_file(context, keyFile, SSL_FILETYPE_PEM) == 1 else {
            throw SimulatorError.socket("cannot load the key \(keyFile)")
        }
        if let clientCAFile {
            guard SSL_CTX_load_verify_locations(context, clientCAFile, nil) == 1 else {
                throw SimulatorError.socket("cannot load the client CA \(clientCAFile)")
            }
            // Ask for a certificate but admit clients without one: they may bring a token.
            SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
        }
    }

    deinit { SSL_CTX_free(context) }

    public func accept(_ descriptor: Int32) -> (any SecureChannel)? {
        guard let ssl = SSL_new(context) else { return nil }
        SSL_set_fd(ssl, descriptor)
        guard SSL_accept(ssl) == 1 else {
            SSL_free(ssl)
            return nil
        }
        return TLSChannel(ssl)
    }
}

/// One TLS connection after its handshake.
private final class TLSChannel: SecureChannel {
    private let ssl: OpaquePointer
    let peerName: String?

    init(_ ssl: OpaquePointer) {
        self.ssl = ssl
        var name: String?
        if SSL_get_verify_result(ssl) == X509_V_OK, let certificate = SSL_get1_peer_certificate(ssl) {
            defer { X509_free(certificate) }
            var buffer = [CChar](repeating: 0, count: 256)
            let length = X509_NAME_get_text_by_NID(X509_get_subject_name(certificate), NID_commonName, &buffer, Int32(buffer.count))
            if length > 0 {
                name = String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            }
        }
        peerName = name
    }

    func read(_ buffer: UnsafeMutableRawBufferPointer) -> Int {
        Int(SSL_read(ssl, buffer.baseAddress, Int32(clamping: buffer.count)))
    }

    func write(_ bytes: UnsafeRawBufferPointer) -> Int {
        Int(SSL_write(ssl, bytes.baseAddress, Int32(clamping: bytes.count)))
    }

    func close() {
        SSL_shutdown(ssl)
        SSL_free(ssl)
    }
}
