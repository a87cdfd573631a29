import Foundation
import Glibc
import Testing

extension Integration {
    @Suite struct JournalCrash {
        /// Restarts only the broker after it dies, after one second, without a restart limit.
        static let restartEnvironment = [
            "SUPERVISOR_RESTART": "on-failure", "SUPERVISOR_RESTART_LIMIT": "1000", "SUPERVISOR_RESTART_WINDOW": "0.001",
        ]

        /// Waits until the supervisor logged `count` broker restarts and the broker's witness subscribed again.
        static func waitForRestart(_ supervisor: SupervisorUnderTest, count: Int, timeout: TimeInterval = 30) -> Bool {
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                let restarts = supervisor.supervisorLog.components(separatedBy: "restarted mosquitto (pid").count - 1
                let subscriptions = supervisor.brokerLog.components(separatedBy: "journal witness session is subscribed").count - 1
                if restarts >= count && subscriptions >= count + 1 {
                    return true
                }
                usleep(50_000)
            }
            return false
        }

        /// The publishing client sends SIGKILL to the broker the moment it reads the PUBACK.
        @Test func killAtPubackLosesNoMessage() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            let supervisor = try JournalMode.start(sandbox, name: "kill", environment: Self.restartEnvironment)
            defer { supervisor.forceStop() }
            let rounds = 50
            var missing: [String] = []
            for round in 0..<rounds {
                let broker = try #require(supervisor.childPID(named: "mosquitto"))
                let payload = "acknowledged-then-killed-\(round)"
                try JournalClient(supervisor).run(["publish", "--topic", "alice/kill/\(round)", "--qos", "1",
                                                   "--payload", Hex.encode(Array(payload.utf8)), "--kill-pid", String(broker)])
                try #require(Self.waitForRestart(supervisor, count: round + 1), "the broker did not come back after round \(round)")
                if try JournalClient(supervisor).retained(["alice/kill/\(round)"])["alice/kill/\(round)"]?.text != payload {
                    missing.append("alice/kill/\(round)")
                }
            }
            #expect(missing.isEmpty, "\(rounds - missing.count) of \(rounds) survived; missing: \(missing)")
            #expect(try JournalClient(supervisor).retained(["alice/kill/#"]).count == rounds)
            #expect(supervisor.stop() == 0)
        }

        /// Thousands of random sets and deletes at QoS 1 and 2 over 300 topics, with a crash or stop
        /// after each cycle. After each restart the retained state must equal the model exactly.
        /// Every failure message names the seed, and JOURNAL_MODEL_SEED repeats a run.
        @Test func randomizedModelMatchesAfterEveryRestart() throws {
            let seed = ProcessInfo.processInfo.environment["JOURNAL_MODEL_SEED"].flatMap { UInt64($0) }
                ?? UInt64.random(in: 1...UInt64.max)
            var random = SeededGenerator(seed: seed)
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            // Small segments and a low compaction limit make compactions run during the cycles, so
            // that some crashes hit one.
            try sandbox.write(try JournalMode.template(adding: "plugin_opt_segment_bytes 131072\nplugin_opt_compact_min_bytes 524288"),
                              to: sandbox.template, mode: 0o644)
            var supervisor = try JournalMode.start(sandbox, name: "model-0", environment: Self.restartEnvironment)
            defer { supervisor.forceStop() }
            var model: [String: RetainedValue] = [:]
            var brokerRestarts = 0
            var operations = 0
            var compactions = 0
            let cycles = 12

            for cycle in 0..<cycles {
                let count = Int(random.next(below: 201)) + 200
                var lines: [String] = []
                var planned: [(topic: String, value: RetainedValue?)] = []
                for index in 0..<count {
                    let topic = String(format: "alice/model/t%03d", Int(random.next(below: 300)))
                    let qos = Int(random.next(below: 2)) + 1
                    let delete = random.next(below: 4) == 0
                    let payload = delete ? "" : Hex.encode(Array("c\(cycle)-o\(index)-\(random.next())".utf8))
                    lines.append("{\"topic\":\"\(topic)\",\"payload\":\"\(payload)\",\"qos\":\(qos)}")
                    planned.append((topic, delete ? nil : RetainedValue(payload: payload, qos: qos, properties: [:])))
                }
                // 0-3: SIGKILL the broker; 4-6: SIGKILL gocryptfs; 7-8: SIGKILL the broker after the last
                // operation; 9: stop the supervisor with SIGTERM.
                let crash = Int(random.next(below: 10))
                let killAfter = crash < 7 ? count / 2 + Int(random.next(below: UInt64(count / 2))) : count - 1
                let victim = crash >= 4 && crash <= 6 ? "gocryptfs" : "mosquitto"
                var arguments = ["ops"]
                if crash != 9 {
                    let pid = try #require(supervisor.childPID(named: victim), "seed \(seed): no \(victim) in cycle \(cycle)")
                    arguments += ["--kill-pid", String(pid), "--kill-after", String(killAfter)]
                }
                try JournalClient(supervisor, clientID: "model-writer").run(arguments, input: lines.joined(separator: "\n") + "\n", timeout: 120)
                let applied = crash == 9 ? count : killAfter + 1
                for (topic, value) in planned.prefix(applied) {
                    model[topic] = value
                }
                operations += applied

                if victim == "mosquitto" && crash != 9 {
                    brokerRestarts += 1
                    try #require(Self.waitForRestart(supervisor, count: brokerRestarts), "seed \(seed): the broker did not restart in cycle \(cycle)")
                } else {
                    compactions += supervisor.brokerLog.components(separatedBy: "compacted the journal").count - 1
                    let expected: Int32 = crash == 9 ? 0 : 72 // 72: the store was lost
                    #expect(crash == 9 ? supervisor.stop() == expected : supervisor.waitForExit() == expected,
                            "seed \(seed): cycle \(cycle) ended unexpectedly; log:\n\(supervisor.supervisorLog)")
                    supervisor = try JournalMode.start(sandbox, name: "model-\(cycle + 1)", environment: Self.restartEnvironment)
                    brokerRestarts = 0
                }

                let actual = try JournalClient(supervisor).retained(["alice/model/#"], quiet: 0.7)
                let differences = Set(model.keys).union(actual.keys).sorted().filter { model[$0] != actual[$0] }
                #expect(differences.isEmpty, """
                    seed \(seed), cycle \(cycle) (\(victim), crash kind \(crash)): \(differences.count) topics differ from the model, \
                    first ones: \(differences.prefix(5).map { "\($0): expected \(model[$0]?.description ?? "none"), got \(actual[$0]?.description ?? "none")" })
                    """)
                if !differences.isEmpty {
                    break
                }
            }
            #expect(operations >= 2000, "seed \(seed): only \(operations) operations were acknowledged")
            compactions += supervisor.brokerLog.components(separatedBy: "compacted the journal").count - 1
            #expect(compactions > 0, "seed \(seed): no compaction ran during the cycles")
            print("journal model: seed \(seed), \(operations) operations in \(cycles) cycles, \(compactions) compactions")
            #expect(supervisor.stop() == 0)
        }
    }
}
