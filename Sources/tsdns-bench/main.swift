// `make bench`: measures the built tsdns-reconcile against simulated tailnets and prints the
// numbers. Not a test. Usage:
//   tsdns-bench [BINARY]                          one-shot runs against 10,000 devices
//   tsdns-bench loop [BINARY] [MINUTES] [RPS]     the loop under RPC load: RSS and latency
//   tsdns-bench probe                             a healthcheck's DNS probes (needs dnsmasq)
//   tsdns-bench watch [BINARY]                    Service created → nameserver write, run + watch
//   tsdns-bench reuse                             connection reuse against a TLS simulator
//   tsdns-bench decode                            the devices body decoded in process, inventory
//   tsdns-bench serve                             the one-shot runs' tailnet, until interrupted
import Foundation

var arguments = Array(CommandLine.arguments.dropFirst())
let mode = ["loop", "probe", "watch", "reuse", "serve", "decode"].contains(arguments.first ?? "") ? arguments.removeFirst() : "once"
let binary = arguments.first
    ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("tsdns-reconcile").path
if mode == "decode" {
    try await decodeBenchmark()
} else if mode == "serve" {
    try serveBenchTailnet()
} else if mode == "probe" {
    try await probeBenchmark()
} else if mode == "reuse" {
    try await reuseBenchmark()
} else if mode == "watch" {
    try await watchBenchmark(binary: binary)
} else if mode == "loop" {
    let minutes = arguments.count > 1 ? Double(arguments[1]) ?? 10 : 10
    let rate = arguments.count > 2 ? Int(arguments[2]) ?? 10 : 10
    try await loopBenchmark(binary: binary, minutes: minutes, requestsPerSecond: rate)
} else {
    try onceBenchmark(binary: binary)
}
