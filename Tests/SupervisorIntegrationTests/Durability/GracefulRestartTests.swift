import Foundation
import Glibc
import Testing

extension Integration.Durability {
    @Suite struct GracefulRestart {
        /// 1000 distinct retained QoS 1 messages, 100 of them cleared again with an empty
        /// payload: after a stop (SIGTERM) and a start, exactly the other 900 come back.
        @Test func restartReturnsExactly900Messages() throws {
            let seed = DurabilityFixture.seed()
            var generator = SeededGenerator(seed: seed)
            let sandbox = try Sandbox(passphrase: DurabilityFixture.uniquePassphrase())
            defer { sandbox.remove() }
            var audit = ConfidentialityAudit(sandbox: sandbox)

            let published = (0..<1000).map { index in
                let number = String(index + 10000).dropFirst()
                return RetainedMessage(topic: "alice/graceful/\(number)",
                                       payload: Array("graceful-\(number)-".utf8) + DurabilityFixture.binaryBytes(24, using: &generator))
            }
            let clearedTopics = Set(published.indices.filter { $0 % 10 == 3 }.map { published[$0].topic })
            let clears = published.filter { clearedTopics.contains($0.topic) }.map { RetainedMessage(topic: $0.topic, payload: []) }
            var expected: [String: [UInt8]] = [:]
            for message in published where !clearedTopics.contains(message.topic) {
                expected[message.topic] = message.payload
            }
            #expect(clears.count == 100)
            #expect(expected.count == 900)
            let clientID = "graceful-publisher-\(getpid())"
            audit.add(published)
            audit.add(clientID: clientID)

            let first = try SupervisorUnderTest(sandbox: sandbox, name: "first")
            defer { first.forceStop() }
            try first.waitUntilRunning()
            let publisher = DurabilityClient(first, clientID: clientID, persistentSession: true)
            let publishSeconds = try publisher.publish(published, inFlight: 20)
            try publisher.publish(clears, inFlight: 20)
            print("graceful restart (seed \(seed)): published 1000 retained QoS 1 messages in \(publishSeconds) s")
            let beforeStop = try DurabilityClient(first).retained()
            #expect(DurabilityFixture.differences(expected: expected, actual: beforeStop) == [], "before the stop")
            audit.checkPlaintextVisibleThroughMount(sample: Array(published.prefix(3)))
            audit.checkProcesses(of: first)

            #expect(first.stop() == 0, "log:\n\(first.supervisorLog)")
            #expect(first.supervisorLog.contains("the broker saved \(sandbox.mountpoint)/mosquitto.db on stop"))
            audit.checkAtRest()

            let second = try SupervisorUnderTest(sandbox: sandbox, name: "second")
            defer { second.forceStop() }
            try second.waitUntilRunning()
            let afterRestart = try DurabilityClient(second).retained()
            #expect(afterRestart.count == 900)
            #expect(DurabilityFixture.differences(expected: expected, actual: afterRestart) == [], "after the restart (seed \(seed))")
            audit.checkProcesses(of: second)
            #expect(second.stop() == 0, "log:\n\(second.supervisorLog)")
            audit.checkAtRest()
        }
    }
}
