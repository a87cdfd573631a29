import Foundation
import Glibc
import Testing

/// Recovery and compaction of the journal's segment files, through the supervisor on the
/// encrypted store. Template lines `plugin_opt_NAME VALUE` reach the journal plugin, because the
/// supervisor puts the plugin's own line first in the configuration.
extension Integration {
    @Suite struct JournalRecovery {
        /// Runs a shell script in the supervisor's mount namespace, as root.
        static func shell(_ supervisor: SupervisorUnderTest, _ script: String) throws -> CommandResult {
            try supervisor.inNamespace(["/bin/sh", "-c", script])
        }

        /// Freezes the broker, changes the journal with `script`, kills the broker and waits for
        /// the supervisor to start it again.
        static func tamperWhileStopped(_ supervisor: SupervisorUnderTest, restarts: Int, _ script: String) throws {
            let broker = try #require(supervisor.childPID(named: "mosquitto"))
            kill(broker, SIGSTOP)
            let result = try shell(supervisor, script)
            #expect(result.status == 0, "tampering failed: \(result.error)")
            kill(broker, SIGKILL)
            try #require(JournalCrash.waitForRestart(supervisor, count: restarts), "the broker did not come back")
        }

        @Test func tornTailIsCutOff() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            let supervisor = try JournalMode.start(sandbox, name: "torn", environment: JournalCrash.restartEnvironment)
            defer { supervisor.forceStop() }
            let client = JournalClient(supervisor)
            for index in 0..<5 {
                #expect(try client.publish("alice/torn/\(index)", "kept-\(index)") == 0)
            }
            let segment = "\(sandbox.mountpoint)/journal/0000000000000001.seg"
            // The segment was prepared full of zeros. Its records end where the journal's used bytes
            // in the status end, because it is the only segment.
            func recordsEnd() throws -> Int {
                try #require(JournalMode.status(sandbox)["journal_bytes"].flatMap { Int($0) })
            }
            #expect(JournalMode.waitForStatus(sandbox, "records_written", atLeast: 5) == 5)

            // Random bytes where the next record would start, as a write cut short leaves them.
            try Self.tamperWhileStopped(supervisor, restarts: 1,
                                        "head -c 3000 /dev/urandom | dd of=\(segment) bs=4096 seek=\(try recordsEnd() / 4096) conv=notrunc 2>/dev/null")
            #expect(supervisor.brokerLog.contains("cut the torn tail of 0000000000000001.seg"))
            var retained = try client.retained(["alice/torn/#"])
            #expect(retained.count == 5)

            // The first 40 bytes of a valid record: its header promises more than the file holds.
            #expect(try client.publish("alice/torn/5", "kept-5") == 0)
            #expect(JournalMode.waitForStatus(sandbox, "records_written", atLeast: 1) == 1)
            let end = try recordsEnd()
            try Self.tamperWhileStopped(supervisor, restarts: 2,
                                        "dd if=\(segment) bs=1 skip=\(end - 4096) count=40 2>/dev/null | dd of=\(segment) bs=4096 seek=\(end / 4096) conv=notrunc 2>/dev/null")
            retained = try client.retained(["alice/torn/#"])
            #expect(retained.keys.sorted() == (0..<6).map { "alice/torn/\($0)" })
            #expect(retained["alice/torn/5"]?.text == "kept-5")
            #expect(supervisor.brokerLog.components(separatedBy: "cut the torn tail").count - 1 == 2, "broker log: \(supervisor.brokerLog)")
            #expect(supervisor.stop() == 0)
        }

        @Test func damagedSealedSegmentStopsTheBroker() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            let template = try JournalMode.template(adding: "plugin_opt_segment_bytes 16384")
            let supervisor = try JournalMode.start(sandbox, name: "damaged", template: template)
            defer { supervisor.forceStop() }
            let client = JournalClient(supervisor)
            for index in 0..<8 {
                #expect(try client.publish("alice/damaged/\(index)", "value-\(index)") == 0)
            }
            // A segment has room for three records of 4 KiB after its header, so the first one is sealed now.
            // Byte 4130 lies in the fixed fields of its first record, which starts at byte 4096.
            let first = "\(sandbox.mountpoint)/journal/0000000000000001.seg"
            let broker = try #require(supervisor.childPID(named: "mosquitto"))
            kill(broker, SIGSTOP)
            let damaged = try Self.shell(supervisor, "printf 'XXXXXXXX' | dd of=\(first) bs=1 seek=4130 conv=notrunc 2>/dev/null")
            #expect(damaged.status == 0)
            kill(broker, SIGKILL)
            #expect(supervisor.waitForExit() == 128 + SIGKILL)

            let refused = try SupervisorUnderTest(sandbox: sandbox, environment: JournalMode.environment, name: "refused")
            defer { refused.forceStop() }
            let code = refused.waitForExit(timeout: 60)
            #expect(code != nil && code != 0, "supervisor log: \(refused.supervisorLog)")
            #expect(refused.supervisorLog.contains("0000000000000001.seg is damaged at byte 4096 although later segments exist; move the journal directory aside"),
                    "supervisor log: \(refused.supervisorLog)")
        }

        /// A crash at each step of a compaction: with part of the output written, with all of it
        /// written under its temporary name, and after the rename with the older segments still
        /// there. The next start removes what the compaction left and restores every message.
        @Test(arguments: ["compaction-partial", "compaction-written", "compaction-renamed"])
        func crashInsideCompaction(point: String) throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            // Small segments and no compaction: 1200 updates of 150 topics fill about 19 segments.
            let growing = try JournalMode.template(adding: "plugin_opt_segment_bytes 262144\nplugin_opt_compact_min_bytes 1073741824")
            let first = try JournalMode.start(sandbox, name: "grow", template: growing)
            defer { first.forceStop() }
            var model: [String: String] = [:]
            var lines: [String] = []
            for index in 0..<1200 {
                let topic = "alice/crash/\(index % 150)"
                let payload = "update-\(index)-" + String(repeating: "x", count: index % 7 * 50)
                model[topic] = payload
                lines.append("{\"topic\":\"\(topic)\",\"payload\":\"\(Hex.encode(Array(payload.utf8)))\",\"qos\":1}")
            }
            try JournalClient(first).run(["ops"], input: lines.joined(separator: "\n") + "\n", timeout: 300)
            #expect(JournalMode.status(sandbox)["compactions"] == "0")
            // A SIGKILL leaves no newer mosquitto.db, so every message must come from the journal.
            let broker = try #require(first.childPID(named: "mosquitto"))
            kill(broker, SIGKILL)
            #expect(first.waitForExit() == 128 + SIGKILL)

            // The start-up compaction runs before the broker serves, and the plugin kills its
            // broker at the requested step.
            try sandbox.write(JournalMode.template(adding: "plugin_opt_segment_bytes 262144\nplugin_opt_compact_min_bytes 1048576\nplugin_opt_test_crash_point \(point)"),
                              to: sandbox.template, mode: 0o644)
            let crashing = try SupervisorUnderTest(sandbox: sandbox, environment: JournalMode.environment, name: "crash")
            defer { crashing.forceStop() }
            // The broker died before it reported running, so the supervisor exits with its status.
            #expect(crashing.waitForExit(timeout: 60) == 128 + SIGKILL)
            #expect(crashing.brokerLog.contains("plugin_opt_test_crash_point reached"), "broker log: \(crashing.brokerLog)")

            let last = try JournalMode.start(sandbox, name: "after", template: growing)
            defer { last.forceStop() }
            let leftover = point == "compaction-renamed" ? "already contained in a compacted segment" : "left by an interrupted compaction"
            #expect(last.brokerLog.contains(leftover), "broker log: \(last.brokerLog)")
            let retained = try JournalClient(last).retained(["alice/crash/#"])
            #expect(retained.count == model.count)
            #expect(retained.mapValues(\.text) == model)
            #expect(last.stop() == 0)
        }

        /// Many updates of a few topics make the journal grow. Compaction brings it back to the live
        /// records while publishes continue, and the state stays exact across a crash.
        @Test func compactionKeepsStateWithShortPause() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            let template = try JournalMode.template(adding: "plugin_opt_segment_bytes 262144\nplugin_opt_compact_min_bytes 1048576")
            let supervisor = try JournalMode.start(sandbox, name: "compact", environment: JournalCrash.restartEnvironment,
                                                   template: template)
            defer { supervisor.forceStop() }
            var model: [String: String] = [:]
            var lines: [String] = []
            for index in 0..<3000 {
                let topic = "alice/compact/\(index % 40)"
                let payload = "update-\(index)"
                model[topic] = payload
                lines.append("{\"topic\":\"\(topic)\",\"payload\":\"\(Hex.encode(Array(payload.utf8)))\",\"qos\":\(index % 2 + 1)}")
            }
            try JournalClient(supervisor).run(["ops"], input: lines.joined(separator: "\n") + "\n", timeout: 300)
            #expect(JournalMode.waitForStatus(sandbox, "compactions", atLeast: 1) ?? 0 >= 1)
            let status = JournalMode.status(sandbox)
            let bytes = status["journal_bytes"].flatMap { Int($0) } ?? Int.max
            let pause = status["max_compaction_pause_ms"].flatMap { Double($0) } ?? .infinity
            // 3000 records of 4 KiB each were written (12 MB); live are 40 records.
            #expect(bytes < 3 * 1_048_576, "journal_bytes \(bytes)")
            #expect(pause < 100, "the broker paused \(pause) ms for a compaction")
            print("journal compaction: \(status["compactions"] ?? "?") compactions, journal \(bytes) bytes, longest pause \(pause) ms")

            let broker = try #require(supervisor.childPID(named: "mosquitto"))
            kill(broker, SIGKILL)
            try #require(JournalCrash.waitForRestart(supervisor, count: 1))
            let retained = try JournalClient(supervisor).retained(["alice/compact/#"])
            #expect(retained.mapValues(\.text) == model)
            #expect(supervisor.stop() == 0)
        }
    }
}
