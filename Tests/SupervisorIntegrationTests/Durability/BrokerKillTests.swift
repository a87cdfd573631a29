import Foundation
import Glibc
import Testing

extension Integration.Durability {
    /// SIGKILL of the broker a set time after the PUBACK of a retained QoS 1 message, then a
    /// new supervisor on the same store. That is what a container runtime does under the
    /// default restart policy, which ends the supervisor when the broker dies.
    @Suite struct BrokerKill {
        static let trials = 50

        /// Each trial's message, acknowledged 20 ms before the kill, is back after the restart,
        /// and so is every earlier trial's message.
        @Test func messageAcknowledged20msBeforeKillSurvives() throws {
            let seed = DurabilityFixture.seed()
            var generator = SeededGenerator(seed: seed)
            let sandbox = try Sandbox(passphrase: DurabilityFixture.uniquePassphrase())
            defer { sandbox.remove() }
            var audit = ConfidentialityAudit(sandbox: sandbox)

            var survivors: [String: [UInt8]] = [:]
            var lostTrials: [String] = []
            var measuredDelays: [Double] = []
            for trial in 0...Self.trials {
                let supervisor = try SupervisorUnderTest(sandbox: sandbox, name: "trial-\(trial)")
                defer { supervisor.forceStop() }
                try supervisor.waitUntilRunning()
                let client = DurabilityClient(supervisor, clientID: "kill-trial-\(trial)-\(getpid())")
                let retained = try client.retained()
                if trial > 0 {
                    let previous = "alice/kill/\(trial - 1)"
                    if retained[previous] != survivors[previous] {
                        lostTrials.append("trial \(trial - 1) (\(DurabilityFixture.machineLoad()))")
                    }
                }
                if trial == Self.trials {
                    #expect(DurabilityFixture.differences(expected: survivors, actual: retained) == [],
                            "after \(Self.trials) kills (seed \(seed))")
                    audit.checkProcesses(of: supervisor)
                    #expect(supervisor.stop() == 0, "log:\n\(supervisor.supervisorLog)")
                    break
                }

                let message = RetainedMessage(topic: "alice/kill/\(trial)",
                                              payload: Array("kill-\(trial)-".utf8) + DurabilityFixture.binaryBytes(16, using: &generator))
                audit.add([message])
                let broker = try #require(supervisor.childPID(named: "mosquitto"))
                let measured = try client.killAfterAcknowledgement(of: message, pid: broker, delay: DurabilityFixture.safeDelay)
                measuredDelays.append(measured)
                #expect(measured >= DurabilityFixture.safeDelay)
                // A much later kill would test a wider window than the one promised.
                #expect(measured < DurabilityFixture.safeDelay + 15, "trial \(trial): SIGKILL sent \(measured) ms after the PUBACK")
                #expect(supervisor.waitForExit() == 128 + SIGKILL, "trial \(trial); log:\n\(supervisor.supervisorLog)")
                survivors[message.topic] = message.payload
                audit.checkAtRest()
            }
            #expect(lostTrials == [], "messages acknowledged \(DurabilityFixture.safeDelay) ms before SIGKILL were lost (seed \(seed))")
            let sorted = measuredDelays.sorted()
            if let shortest = sorted.first, let longest = sorted.last {
                print("broker kill: \(Self.trials - lostTrials.count)/\(Self.trials) survived; PUBACK to SIGKILL \(shortest)...\(longest) ms")
            }
            audit.checkAtRest()
        }

        /// Control for the test above: a SIGKILL right after the PUBACK loses the message,
        /// because Mosquitto 2.0.11 sends the PUBACK before it saves. If this ever fails, the
        /// broker saves before acknowledging and docs/durability.md must be updated.
        @Test func killAtAcknowledgementLosesMessage() throws {
            let sandbox = try Sandbox(passphrase: DurabilityFixture.uniquePassphrase())
            defer { sandbox.remove() }
            var audit = ConfidentialityAudit(sandbox: sandbox)

            let trials = 5
            var lost = 0
            for trial in 0...trials {
                let supervisor = try SupervisorUnderTest(sandbox: sandbox, name: "trial-\(trial)")
                defer { supervisor.forceStop() }
                try supervisor.waitUntilRunning()
                let client = DurabilityClient(supervisor)
                let retained = try client.retained()
                if trial > 0 && retained["alice/instant/\(trial - 1)"] == nil {
                    lost += 1
                }
                if trial == trials {
                    #expect(supervisor.stop() == 0, "log:\n\(supervisor.supervisorLog)")
                    break
                }
                let message = RetainedMessage(topic: "alice/instant/\(trial)", text: "instant-kill-\(trial)-\(getpid())")
                audit.add([message])
                let broker = try #require(supervisor.childPID(named: "mosquitto"))
                let measured = try client.killAfterAcknowledgement(of: message, pid: broker, delay: 0)
                #expect(measured < 1, "trial \(trial): SIGKILL sent \(measured) ms after the PUBACK")
                #expect(supervisor.waitForExit() == 128 + SIGKILL, "trial \(trial); log:\n\(supervisor.supervisorLog)")
            }
            #expect(lost >= 1, "all \(trials) messages killed at their PUBACK survived")
            print("kill at PUBACK: \(lost)/\(trials) lost")
            audit.checkAtRest()
        }
    }
}
