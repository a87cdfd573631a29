import Foundation
import Glibc
import Testing

extension Integration {
    @Suite struct JournalStoreFailure {
        /// With the store's disk full, a retained publish that cannot be made durable is dropped
        /// and its client disconnected without acknowledgement, and the health check fails.
        /// Publishes still succeed while the segments prepared before the disk filled up have room.
        @Test func fullDiskRejectsPublish() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            mkdir(sandbox.cipherdir, 0o700)
            try Shell.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "journal-full-disk", sandbox.cipherdir])
            let template = try JournalMode.template(adding: "plugin_opt_segment_bytes 65536")
            let supervisor = try JournalMode.start(sandbox, name: "full", template: template)
            defer { supervisor.forceStop() }
            let client = JournalClient(supervisor)
            #expect(try client.publish("alice/before", "before-FULL-1313") == 0)

            // Fill the disk below gocryptfs until no block is left.
            let filler = "\(sandbox.cipherdir)/filler"
            try Shell.run(["sh", "-c", "dd if=/dev/zero of=\(filler) bs=64k 2>/dev/null; sync"], timeout: 60)
            var acknowledged: [String] = []
            var refused: String?
            for index in 0..<64 where refused == nil {
                let topic = "alice/full/\(index)"
                do {
                    #expect(try client.publish(topic, "while-FULL-\(index)") == 0)
                    acknowledged.append(topic)
                } catch is HarnessError {
                    refused = topic
                }
            }
            let rejected = try #require(refused, "64 publishes succeeded on a full disk")
            #expect(acknowledged.count < 40, "\(acknowledged.count) publishes succeeded on a full disk")
            #expect(JournalMode.waitForStatus(sandbox, "rejected_publishes", atLeast: 1) == 1)
            #expect((JournalMode.status(sandbox)["failed_writes"].flatMap { Int($0) } ?? 0) >= 1)
            #expect(try client.retained(["alice/#"])[rejected] == nil)
            let health = try supervisor.status()
            #expect(health.status == 1)
            #expect(health.output.contains("FAIL journal: a journal write failed"), "status: \(health.output)")

            unlink(filler)
            #expect(try client.publish("alice/after", "after-FULL-1515") == 0)
            let broker = try #require(supervisor.childPID(named: "mosquitto"))
            kill(broker, SIGKILL)
            #expect(supervisor.waitForExit() == 128 + SIGKILL)

            let restarted = try JournalMode.start(sandbox, name: "restarted")
            defer { restarted.forceStop() }
            let retained = try JournalClient(restarted).retained(["alice/#"])
            #expect(retained.keys.sorted() == (["alice/after", "alice/before"] + acknowledged).sorted())
            #expect(restarted.stop() == 0)
        }
    }
}
