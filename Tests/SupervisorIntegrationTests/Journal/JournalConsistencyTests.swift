import Foundation
import Glibc
import Testing

/// The broker's retained state and the journal agree across a crash: each case ends with a
/// SIGKILL of the broker, so the restarted broker gets its retained messages from the journal
/// replay on top of an older (or no) mosquitto.db.
extension Integration {
    @Suite struct JournalConsistency {
        /// Kills the broker, waits for the supervisor to exit with 128+SIGKILL and starts another one.
        static func crashAndRestart(_ supervisor: SupervisorUnderTest, _ sandbox: Sandbox, name: String) throws -> SupervisorUnderTest {
            let broker = try #require(supervisor.childPID(named: "mosquitto"))
            kill(broker, SIGKILL)
            #expect(supervisor.waitForExit() == 128 + SIGKILL)
            return try JournalMode.start(sandbox, name: name)
        }

        @Test func unreleasedQoS2PublishIsNotReplayed() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            let first = try JournalMode.start(sandbox, name: "first")
            defer { first.forceStop() }
            let client = JournalClient(first)
            #expect(try client.publish("alice/unreleased", "never-RELEASED-1111", qos: 2, extra: ["--no-release"]) == 0)
            #expect(try client.publish("alice/released", "released-QOS2-2222", qos: 2) == 0)
            #expect(try client.retained(["alice/#"]).keys.sorted() == ["alice/released"])
            #expect(JournalMode.waitForStatus(sandbox, "pending_qos2", atLeast: 1) == 1)

            let second = try Self.crashAndRestart(first, sandbox, name: "second")
            defer { second.forceStop() }
            let retained = try JournalClient(second).retained(["alice/#"])
            #expect(retained.keys.sorted() == ["alice/released"])
            #expect(retained["alice/released"]?.text == "released-QOS2-2222")
            #expect(retained["alice/released"]?.qos == 2)
            #expect(second.stop() == 0)
        }

        /// A PUBREL that comes after a restart, to a session that mosquitto.db kept, applies the
        /// message then; the journal's pending record gives it its properties back.
        @Test func qos2ReleasedAfterRestartIsJournaled() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            let first = try JournalMode.start(sandbox, name: "first")
            defer { first.forceStop() }
            let client = JournalClient(first, version: 5, clientID: "late-releaser")
            #expect(try client.publish("alice/late", "late-RELEASE-3333", qos: 2,
                                       extra: ["--no-release", "--persistent", "--content-type", "text/x-late"]) == 0)
            #expect(first.stop() == 0)

            let second = try JournalMode.start(sandbox, name: "second")
            defer { second.forceStop() }
            let released = try JournalClient(second, version: 5, clientID: "late-releaser").run(["release", "--mid", "1"]) as? [String: Any]
            #expect(released?["session_present"] as? Bool == true)
            #expect(released?["reason"] as? Int == 0)

            let third = try Self.crashAndRestart(second, sandbox, name: "third")
            defer { third.forceStop() }
            let late = try #require(try JournalClient(third, version: 5).retained(["alice/#"])["alice/late"])
            #expect(late.text == "late-RELEASE-3333")
            #expect(late.properties["content_type"] as? String == "text/x-late")
            #expect(third.stop() == 0)
        }

        @Test func rejectedPublishesAreNotReplayed() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            // One QoS 1 or 2 message in flight and one queued per client fill the receive quota fast.
            let template = try JournalMode.template(adding: "message_size_limit 64\nmax_inflight_messages 1\nmax_queued_messages 1")
            let first = try JournalMode.start(sandbox, name: "first", template: template)
            defer { first.forceStop() }

            let bob = JournalClient(first, username: "bob", version: 5)
            #expect(try bob.publish("alice/acl-denied", "denied-BY-ACL-4444") == 0x87)
            let alice = JournalClient(first, version: 5)
            let tooLarge = String(repeating: "L", count: 100)
            #expect(try alice.publish("alice/too-large", tooLarge) >= 0x80)
            // MQTT 3.1.1 has no reason codes: the broker sends a plain PUBACK for the publish it drops
            // over quota, after the plugin journaled it; the plugin then writes an undo record.
            let v3 = JournalClient(first, clientID: "quota-v3")
            let dropped = try v3.run(["hold", "--held", "alice/held-1", "--held", "alice/held-2",
                                      "--topic", "alice/over-quota-v3", "--payload", Hex.encode(Array("over-QUOTA-5555".utf8))]) as? [String: Any]
            #expect(dropped?["reasons"] as? [Int] == [0, 0, 0])
            #expect(JournalMode.waitForStatus(sandbox, "undo_records", atLeast: 1) == 1)
            // MQTT 5 refuses the QoS 2 publish over quota with 0x97 (quota exceeded).
            let v5 = JournalClient(first, version: 5, clientID: "quota-v5")
            let refused = try v5.run(["hold", "--held", "alice/held-3", "--held", "alice/held-4",
                                      "--topic", "alice/after-quota-v5", "--payload", Hex.encode(Array("after-QUOTA-5656".utf8))]) as? [String: Any]
            #expect(refused?["reasons"] as? [Int] == [0, 0x97, 0])
            #expect(try alice.publish("alice/accepted", "accepted-6666") == 0)
            let expected = ["alice/accepted", "alice/after-quota-v5"]
            #expect(try alice.retained(["alice/#"]).keys.sorted() == expected)

            let second = try Self.crashAndRestart(first, sandbox, name: "second")
            defer { second.forceStop() }
            #expect(try JournalClient(second).retained(["alice/#"]).keys.sorted() == expected)
            #expect(second.stop() == 0)
        }

        /// A will message never passes the plugin's message callback; the witness session sees
        /// the broker apply it, and the plugin journals it without its MQTT v5 properties.
        @Test func retainedWillSurvivesBrokerKill() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            let first = try JournalMode.start(sandbox, name: "first")
            defer { first.forceStop() }
            try JournalClient(first, clientID: "will-owner").run(["will", "--topic", "alice/will", "--payload", Hex.encode(Array("gone-OFFLINE-7777".utf8))])
            #expect(JournalMode.waitForStatus(sandbox, "observed_records", atLeast: 1) == 1)
            #expect(try JournalClient(first).retained(["alice/#"])["alice/will"]?.text == "gone-OFFLINE-7777")

            let second = try Self.crashAndRestart(first, sandbox, name: "second")
            defer { second.forceStop() }
            let will = try JournalClient(second).retained(["alice/#"])["alice/will"]
            #expect(will?.text == "gone-OFFLINE-7777")
            #expect(will?.qos == 1)
            #expect(second.stop() == 0)
        }

        @Test func expiredMessageDoesNotComeBack() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            let first = try JournalMode.start(sandbox, name: "first")
            defer { first.forceStop() }
            let client = JournalClient(first, version: 5)
            #expect(try client.publish("alice/short", "short-LIVED-8888", extra: ["--expiry", "2"]) == 0)
            #expect(try client.publish("alice/long", "long-LIVED-9999", extra: ["--expiry", "3600"]) == 0)
            let broker = try #require(first.childPID(named: "mosquitto"))
            kill(broker, SIGKILL)
            #expect(first.waitForExit() == 128 + SIGKILL)
            Thread.sleep(forTimeInterval: 3)

            let second = try JournalMode.start(sandbox, name: "second")
            defer { second.forceStop() }
            let retained = try JournalClient(second, version: 5).retained(["alice/#"])
            #expect(retained.keys.sorted() == ["alice/long"])
            let remaining = retained["alice/long"]?.properties["expiry"] as? Int ?? 0
            #expect(remaining > 3500, "remaining expiry interval \(remaining)")
            #expect(remaining <= 3600, "remaining expiry interval \(remaining)")
            #expect(second.stop() == 0)
        }

        /// Replaying a retained message delivers it to matching subscriptions; a persistent session
        /// restored from mosquitto.db that already had the message must not get it again.
        @Test func persistentSessionGetsNoReplayedMessage() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            let first = try JournalMode.start(sandbox, name: "first")
            defer { first.forceStop() }
            let subscriber = JournalClient(first, clientID: "persistent-reader")
            let subscribed = try subscriber.run(["session", "--subscribe", "alice/#", "--quiet", "0.2"]) as? [String: Any]
            #expect(subscribed?["session_present"] as? Bool == false)
            #expect(try JournalClient(first).publish("alice/news", "news-ONCE-1212") == 0)
            let live = try subscriber.run(["session", "--quiet", "0.5"]) as? [String: Any]
            #expect((live?["received"] as? [[String: Any]])?.count == 1)
            // SIGUSR1 makes the broker save mosquitto.db: the session, its subscription, no queued message.
            first.signal(SIGUSR1)
            #expect(first.waitForLog("Saving in-memory database"))

            let second = try Self.crashAndRestart(first, sandbox, name: "second")
            defer { second.forceStop() }
            let after = try JournalClient(second, clientID: "persistent-reader").run(["session", "--quiet", "1.0"]) as? [String: Any]
            #expect(after?["session_present"] as? Bool == true)
            #expect((after?["received"] as? [[String: Any]])?.isEmpty == true, "replayed to the session: \(after ?? [:])")
            #expect(try JournalClient(second).retained(["alice/#"])["alice/news"]?.text == "news-ONCE-1212")
            #expect(second.stop() == 0)
        }

        /// No wildcard subscription of the witness matches a topic that starts with `$`, so the
        /// plugin cannot see the release of a QoS 2 publish there and rejects it at PUBLISH.
        @Test func dollarTopicQoS2IsRejected() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            try sandbox.write("pattern readwrite %u/#\nuser alice\ntopic readwrite $app/#\n", to: sandbox.acl, mode: 0o644)
            let first = try JournalMode.start(sandbox, name: "first")
            defer { first.forceStop() }
            let client = JournalClient(first)
            #expect(throws: HarnessError.self) { try client.publish("$app/qos2", "dollar-QOS2-1717", qos: 2) }
            #expect(JournalMode.waitForStatus(sandbox, "rejected_publishes", atLeast: 1) == 1)
            #expect(first.brokerLog.contains("QoS 2 retained publishes to topics that start with $ are not supported in journal mode"))
            #expect(try client.publish("$app/qos1", "dollar-QOS1-1818") == 0)
            #expect(try client.retained(["$app/#"]).keys.sorted() == ["$app/qos1"])

            let second = try Self.crashAndRestart(first, sandbox, name: "second")
            defer { second.forceStop() }
            let retained = try JournalClient(second).retained(["$app/#"])
            #expect(retained.keys.sorted() == ["$app/qos1"])
            #expect(retained["$app/qos1"]?.text == "dollar-QOS1-1818")
            #expect(second.stop() == 0)
        }

        @Test func sysTopicsAreNotJournaled() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            // Mosquitto lets clients write under $SYS only to a bridge's connection state topic.
            try sandbox.write("pattern readwrite %u/#\nuser alice\ntopic readwrite $SYS/broker/connection/#\n",
                              to: sandbox.acl, mode: 0o644)
            let supervisor = try JournalMode.start(sandbox, name: "sys")
            defer { supervisor.forceStop() }
            let client = JournalClient(supervisor)
            #expect(try client.publish("alice/before", "before-SYS") == 0)
            let before = JournalMode.waitForStatus(sandbox, "records_written", atLeast: 1)
            #expect(try client.publish("$SYS/broker/connection/journal-test/state", "1") == 0)
            #expect(try client.retained(["$SYS/broker/connection/#"])["$SYS/broker/connection/journal-test/state"]?.text == "1")
            Thread.sleep(forTimeInterval: 1.5)
            #expect(JournalMode.status(sandbox)["records_written"].flatMap { Int($0) } == before)
            #expect(supervisor.stop() == 0)
        }
    }
}
