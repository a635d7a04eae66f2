// swift-tools-version:6.1
import PackageDescription

// A binary with packed relocations needs glibc 2.36 or later to start: only where the build
// host (whose glibc the binary links against) has it, as Debian 12 and the image do.
#if os(Linux)
import Glibc
let packedRelocations: Bool = {
    var buffer = [CChar](repeating: 0, count: 64)
    guard confstr(Int32(_CS_GNU_LIBC_VERSION), &buffer, buffer.count) > 0 else { return false }
    // "glibc 2.36"
    let version = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        .split(separator: " ").last?.split(separator: ".").compactMap { Int($0) } ?? []
    return version.count >= 2 && (version[0], version[1]) >= (2, 36)
}()
// The executable exports none of its ~24,000 symbols (the Swift driver asks for all on Linux):
// nothing looks them up by name (libdispatch's `dispatch_async_swift_job`, which the
// concurrency runtime asks dlsym for, is not in the static libdispatch), and each one costs
// start-up: the runtime's dladdr at start walks them all, and every symbol libcurl's ~30
// libraries bind at their load is looked for in the executable first. Measured (interleaved
// medians): --help 12.5 → 11.6 ms, --version 12.1 → 11.1 ms, validate 17.2 → 15.2 ms; a dry
// run 1.3 to 3.3 ms less CPU.
let exportsNoSymbols = ["-Xlinker", "--no-export-dynamic"]
#else
let packedRelocations = false
let exportsNoSymbols: [String] = []
#endif

let package = Package(
    name: "tsdns-reconcile",
    products: [
        .executable(name: "tsdns-reconcile", targets: ["tsdns-reconcile"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        // Already in the graph through Hummingbird; named because the listener's limits use them.
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
    ],
    targets: [
        // libcurl, loaded when a command needs it (dlopen), with typed wrappers around its variadic C
        // API; the headers come from libcurl4-openssl-dev.
        .target(name: "CCurl", linkerSettings: [.linkedLibrary("dl")]),
        // OpenSSL's server side, for the simulators' HTTPS (libcurl is the client side).
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        // Pure core: addresses, devices, health, planner, plan rendering. No I/O.
        .target(name: "TSDNSCore"),
        // The config file: YAML to a validated model, errors with key path and line.
        .target(
            name: "TSDNSConfig",
            dependencies: ["TSDNSCore", .product(name: "Yams", package: "Yams")]
        ),
        // HTTP client on libcurl.
        .target(name: "TSDNSHTTP", dependencies: ["CCurl"]),
        // Tailscale API client: auth, retries, typed errors, decoding.
        .target(
            name: "TSDNSTailscale",
            dependencies: ["TSDNSCore", "TSDNSConfig", "TSDNSHTTP", .product(name: "Logging", package: "swift-log")]
        ),
        // The DNS probe: queries over UDP, TCP and SOCKS5 on a thread of its own.
        .target(name: "TSDNSProbe", dependencies: ["TSDNSCore"]),
        // Simulated tailnet: a real HTTP server on loopback with fault injection.
        .target(name: "TSDNSSimulator", dependencies: ["TSDNSCore"]),
        // The simulators' HTTPS (OpenSSL's server side), for tests and benchmarks only: the
        // shipped binary's demo serves plain HTTP and does not load OpenSSL.
        .target(name: "TSDNSSimulatorTLS", dependencies: ["TSDNSSimulator", "COpenSSL"]),
        // Kubernetes adapter: credentials as client-go resolves them, Services LIST and
        // WATCH over libcurl, the Service → device mapping.
        .target(
            name: "TSDNSKubernetes",
            dependencies: ["TSDNSCore", "TSDNSConfig", "TSDNSHTTP", .product(name: "Yams", package: "Yams"), .product(name: "Logging", package: "swift-log")]
        ),
        // Reconcile runs (read, plan, apply), the loop and its controller, metrics, config
        // loading, the RPC client for `ctl`.
        .target(
            name: "TSDNSRuntime",
            dependencies: [
                "TSDNSCore", "TSDNSConfig", "TSDNSHTTP", "TSDNSTailscale", "TSDNSProbe", "TSDNSKubernetes",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The RPC listener (CONTRACT §4) on Hummingbird, and the `run` service group.
        .target(
            name: "TSDNSServer",
            dependencies: [
                "TSDNSCore", "TSDNSHTTP", "TSDNSTailscale", "TSDNSConfig", "TSDNSRuntime", "TSDNSKubernetes",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ]
        ),
        // `tsdns-reconcile demo`: the real loop against the simulated tailnet, narrated.
        .target(
            name: "TSDNSDemo",
            dependencies: ["TSDNSCore", "TSDNSConfig", "TSDNSRuntime", "TSDNSServer", "TSDNSSimulator", .product(name: "Logging", package: "swift-log")]
        ),
        .executableTarget(
            name: "tsdns-reconcile",
            dependencies: [
                "TSDNSRuntime", "TSDNSServer", "TSDNSDemo", "TSDNSCore", "TSDNSConfig", "TSDNSHTTP", "TSDNSTailscale", "TSDNSKubernetes",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            // Start-up: the loader applies ~100,000 relative relocations to a position-
            // independent binary; packed (DT_RELR, lld) they take a fraction of the time.
            // Still PIE, so the image keeps its address randomisation.
            linkerSettings: [.unsafeFlags((packedRelocations ? ["-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs"] : []) + exportsNoSymbols)]
        ),
        // `make bench`: measures the built binary against a large simulated tailnet.
        .executableTarget(name: "tsdns-bench", dependencies: ["TSDNSSimulator", "TSDNSSimulatorTLS", "TSDNSCore", "TSDNSConfig", "TSDNSRuntime", "TSDNSProbe", "TSDNSHTTP", "TSDNSTailscale", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "TSDNSCoreTests", dependencies: ["TSDNSCore", "TSDNSConfig"], resources: [.copy("Fixtures")]),
        // The Tailscale adapter: the device-list decoder against JSONDecoder, by example and by fuzzing.
        .testTarget(name: "TSDNSTailscaleTests", dependencies: ["TSDNSTailscale", "TSDNSCore"]),
        // The Kubernetes adapter: kubeconfig resolution, annotation matching, mapping, paging.
        .testTarget(name: "TSDNSKubernetesTests", dependencies: ["TSDNSKubernetes", "TSDNSCore", "TSDNSConfig", "TSDNSHTTP", "TSDNSSimulator"], resources: [.copy("Fixtures")]),
        // Pure state machines and files of the runtime: scheduler, loop state, state file, backoff.
        .testTarget(name: "TSDNSRuntimeTests", dependencies: ["TSDNSRuntime", "TSDNSConfig", "TSDNSCore", "TSDNSHTTP"]),
        .testTarget(
            name: "TSDNSIntegrationTests",
            dependencies: [
                "TSDNSCore", "TSDNSConfig", "TSDNSHTTP", "TSDNSTailscale", "TSDNSSimulator", "TSDNSSimulatorTLS", "TSDNSRuntime", "TSDNSServer", "TSDNSProbe", "TSDNSKubernetes",
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
    ]
)
