import Foundation
import Testing
@testable import TSDNSKubernetes

func service(_ name: String, rv: String, namespace: String = "dns", annotations: [String: String] = ["tailscale.com/tags": "tag:dns"]) -> KubeService {
    var service = KubeService(namespace: namespace, name: name, annotations: annotations)
    service.metadata.resourceVersion = rv
    return service
}

@Suite("Watch streams: framing and decoding")
struct WatchStreamTests {
    func referenceEvents() throws -> [WatchEvent] {
        let text = try String(contentsOf: try fixture("watch-stream.jsonl"), encoding: .utf8)
        return try text.split(separator: "\n").map { try WatchEvent.decode(Data($0.utf8)) }
    }

    @Test func decodesTheReferenceStream() throws {
        let events = try referenceEvents()
        #expect(events.map(\.type) == ["ADDED", "ADDED", "ADDED", "BOOKMARK", "MODIFIED", "BOOKMARK", "DELETED", "ERROR"])
        guard case .error(let code, let reason, _) = events.last else { Issue.record("no ERROR"); return }
        #expect(code == 410 && reason == "Expired")
        guard case .bookmark(let version) = events[3] else { Issue.record("no BOOKMARK"); return }
        #expect(version == "48213")
    }

    /// Events split anywhere (37-byte chunks, one byte at a time) and with no newlines at
    /// all come out the same as line by line.
    @Test(arguments: [1, 7, 37, 4096])
    func framingReliesNeitherOnNewlinesNorOnChunks(_ size: Int) throws {
        let text = try String(contentsOf: try fixture("watch-stream.jsonl"), encoding: .utf8)
        let expected = try referenceEvents()
        for body in [Array(text.utf8), Array(text.replacingOccurrences(of: "\n", with: "").utf8)] {
            var framer = JSONObjectFramer()
            var events: [WatchEvent] = []
            for start in stride(from: 0, to: body.count, by: size) {
                for object in try framer.append(body[start..<min(start + size, body.count)]) {
                    events.append(try WatchEvent.decode(object))
                }
            }
            #expect(events == expected)
        }
    }

    @Test func bracesInsideStringsAndEscapedQuotesDoNotEndAnObject() throws {
        var framer = JSONObjectFramer()
        let tricky = #"{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"7","annotations":{"x":"}\"{]["}}}}"#
        let objects = try framer.append(Array((tricky + "\n" + tricky).utf8))
        #expect(objects.count == 2)
        #expect(try WatchEvent.decode(objects[0]) == .bookmark(resourceVersion: "7"))
    }

    @Test func malformedStreamsAreErrors() throws {
        var framer = JSONObjectFramer()
        #expect(throws: KubernetesError.self) { try framer.append(Array("garbage".utf8)) }
        var small = JSONObjectFramer(maxObjectSize: 64)
        #expect(throws: KubernetesError.self) { try small.append(Array(("{\"type\":\"ADDED\",\"object\":\"" + String(repeating: "x", count: 100)).utf8)) }
        #expect(throws: KubernetesError.self) { try WatchEvent.decode(Data(#"{"type":"SOMETHING","object":{}}"#.utf8)) }
        #expect(throws: KubernetesError.self) { try WatchEvent.decode(Data(#"{"type":"ADDED","object":{"metadata":{}}}"#.utf8)) }
    }
}

@Suite("The reflector's state machine")
struct ReflectorTests {
    let t0 = ContinuousClock.now

    /// LIST, then a watch from its resourceVersion with a timeout of 300–600 s.
    @Test func listsThenWatchesFromTheListsResourceVersion() {
        var reflector = Reflector()
        #expect(reflector.start() == .list)
        let (step, changed) = reflector.listed([service("a", rv: "10")], resourceVersion: "100", now: t0, random: 0)
        #expect(step == .watch(resourceVersion: "100", timeoutSeconds: 300))
        #expect(changed)
        var other = Reflector()
        #expect(other.listed([], resourceVersion: "5", now: t0, random: 1).step == .watch(resourceVersion: "5", timeoutSeconds: 600))
    }

    @Test func eventsChangeTheStoreBookmarksOnlyTheResourceVersion() {
        var reflector = Reflector()
        _ = reflector.listed([service("a", rv: "10")], resourceVersion: "100", now: t0, random: 0)
        #expect(reflector.apply(.added(service("b", rv: "101"))) == (true, false))
        #expect(reflector.apply(.bookmark(resourceVersion: "150")) == (false, false))
        #expect(reflector.resourceVersion == "150")
        #expect(reflector.services.keys.sorted() == ["dns/a", "dns/b"])
        // The same object again changes nothing; a new state does.
        #expect(reflector.apply(.modified(service("b", rv: "101"))).changed == false)
        #expect(reflector.apply(.modified(service("b", rv: "151", annotations: [:]))).changed == true)
        #expect(reflector.apply(.deleted(service("a", rv: "152"))) == (true, false))
        #expect(reflector.services.keys.sorted() == ["dns/b"])
        // A normal end (the server's timeout): watch again from the last resourceVersion at once.
        #expect(reflector.watchEnded(nil, now: t0, random: 0.5) == .watch(resourceVersion: "152", timeoutSeconds: 450))
        #expect(reflector.failures == 0)
    }

    @Test func anInStream410RelistsAndADeletionDuringTheGapIsSeen() {
        var reflector = Reflector()
        _ = reflector.listed([service("a", rv: "10"), service("b", rv: "11")], resourceVersion: "100", now: t0, random: 0)
        let outcome = reflector.apply(.error(code: 410, reason: "Expired", message: "too old resource version: 100 (120)"))
        #expect(outcome == (false, true))
        #expect(reflector.watchEnded(nil, now: t0, random: 0) == .list)
        // b was deleted while the watch was gone: the relist no longer has it.
        let (step, changed) = reflector.listed([service("a", rv: "10")], resourceVersion: "130", now: t0, random: 0)
        #expect(changed)
        #expect(reflector.services.keys.sorted() == ["dns/a"])
        #expect(step == .watch(resourceVersion: "130", timeoutSeconds: 300))
        #expect(reflector.relists == 1)
        // Relisting the same state is no change.
        #expect(reflector.listed([service("a", rv: "10")], resourceVersion: "131", now: t0, random: 0).changed == false)
    }

    @Test func anHTTP410RelistsAtOnce() {
        var reflector = Reflector()
        _ = reflector.listed([], resourceVersion: "100", now: t0, random: 0)
        let gone = KubernetesError.status(code: 410, reason: "Expired", message: "", retryAfter: nil)
        #expect(reflector.watchEnded(gone, now: t0, random: 0) == .list)
        #expect(reflector.failures == 0)
    }

    @Test func errorsBackOffDoublingToThirtySecondsAndResetAfterTwoMinutesOfHealth() {
        var reflector = Reflector()
        _ = reflector.listed([], resourceVersion: "100", now: t0, random: 0)
        let refused = KubernetesError.transport("connection refused", timedOut: false)
        var now = t0
        var waits: [Duration] = []
        for _ in 0..<8 {
            guard case .wait(let until) = reflector.watchEnded(refused, now: now, random: 1) else { Issue.record("no wait"); return }
            waits.append(until - now)
            now = until
            // After the wait: the watch again, from the same resourceVersion.
            #expect(reflector.resume(random: 0) == .watch(resourceVersion: "100", timeoutSeconds: 300))
        }
        #expect(waits == [.milliseconds(800), .milliseconds(1600), .milliseconds(3200), .milliseconds(6400), .milliseconds(12800), .milliseconds(25600), .seconds(30), .seconds(30)])
        // Jitter: half to all of the step.
        var jittered = Reflector()
        _ = jittered.listed([], resourceVersion: "1", now: t0, random: 0)
        #expect(jittered.watchEnded(refused, now: t0, random: 0) == .wait(until: t0 + .milliseconds(400)))

        // The watch opens and stays healthy for two minutes: the next failure starts over.
        reflector.watchOpened(now: now)
        now += .seconds(119)
        guard case .wait(let short) = reflector.watchEnded(refused, now: now, random: 1) else { Issue.record("no wait"); return }
        #expect(short - now == .seconds(30))  // not healthy long enough
        _ = reflector.resume(random: 0)
        reflector.watchOpened(now: now)
        now += .seconds(120)
        guard case .wait(let reset) = reflector.watchEnded(refused, now: now, random: 1) else { Issue.record("no wait"); return }
        #expect(reset - now == .milliseconds(800))
    }

    @Test func retryAfterIsHonouredAndAFailedListIsListedAgain() {
        var reflector = Reflector()
        let throttled = KubernetesError.status(code: 429, reason: "", message: "Too many requests", retryAfter: .seconds(5))
        #expect(reflector.listFailed(throttled, now: t0, random: 1) == .wait(until: t0 + .seconds(5)))
        #expect(reflector.resume(random: 0) == .list)
    }

    @Test func aMalformedStreamRelistsAfterABackoff() {
        var reflector = Reflector()
        _ = reflector.listed([], resourceVersion: "100", now: t0, random: 0)
        let step = reflector.watchEnded(KubernetesError.malformed("watch event: object.metadata.name: is missing"), now: t0, random: 1)
        #expect(step == .wait(until: t0 + .milliseconds(800)))
        #expect(reflector.resume(random: 0) == .list)
    }
}
