import Foundation
import Glibc
import Testing

extension Integration {
    @Suite struct DatabaseFailures {
        /// A damage done to mosquitto.db inside the store, and the reason the error line gives.
        struct DatabaseFault: Sendable, CustomTestStringConvertible {
            let testDescription: String
            /// Shell commands run with $M set to the store's plaintext view.
            let damage: String
            let reason: String
        }

        static let faults = [
            DatabaseFault(testDescription: "unreadable by mosquitto",
                          damage: "chown root:root \"$M/mosquitto.db\" && chmod 0600 \"$M/mosquitto.db\"",
                          reason: "user mosquitto cannot read it: Permission denied"),
            DatabaseFault(testDescription: "truncated", damage: "truncate -s -3 \"$M/mosquitto.db\"",
                          reason: "it is truncated"),
            DatabaseFault(testDescription: "zero-filled",
                          damage: "head -c \"$(stat -c %s \"$M/mosquitto.db\")\" /dev/zero > \"$M/mosquitto.db\"",
                          reason: "it contains only zero bytes"),
            DatabaseFault(testDescription: "not a Mosquitto database",
                          damage: "printf 'retained messages, but not in the Mosquitto format\\n' > \"$M/mosquitto.db\"",
                          reason: "it does not start with the Mosquitto database header"),
            DatabaseFault(testDescription: "empty", damage: ": > \"$M/mosquitto.db\"", reason: "it is empty"),
        ]

        /// Keeps a copy of the good database in the store, then damages the original.
        static func damage(_ sandbox: Sandbox, _ fault: DatabaseFault) throws -> String {
            let damaged = try sandbox.inspectStore("cp -p \"$M/mosquitto.db\" \"$M/good.db.copy\"\n\(fault.damage)")
            #expect(damaged.status == 0, "damaging the database failed: \(damaged.error)")
            return try #require(try sandbox.storeFileHash("mosquitto.db"))
        }

        /// The default rejects the file and does not start the broker, because Mosquitto 2.0 would
        /// start empty and overwrite the file at its next save. The file stays exactly as it was.
        @Test(arguments: faults)
        func badDatabaseRefused(_ fault: DatabaseFault) throws {
            let sandbox = try Sandbox.seeded()
            defer { sandbox.remove() }
            let damagedHash = try Self.damage(sandbox, fault)
            let database = sandbox.mountpoint + "/mosquitto.db"

            let supervisor = try SupervisorUnderTest(sandbox: sandbox)
            defer { supervisor.forceStop() }
            FailureChecks.expectExit(supervisor, code: 71, errorLine: [
                "the broker database \(database) is unusable because \(fault.reason)",
                "the broker was not started", "SUPERVISOR_BAD_DATABASE=move-aside",
            ])
            #expect(supervisor.supervisorLog.contains("unmounted \(sandbox.mountpoint)"))
            #expect(try sandbox.storeFileHash("mosquitto.db") == damagedHash, "the refused database was changed")

            let restored = try sandbox.inspectStore("mv \"$M/good.db.copy\" \"$M/mosquitto.db\"")
            #expect(restored.status == 0, "restoring the database failed: \(restored.error)")
            try FailureChecks.expectStoreIntact(sandbox)
        }

        /// SUPERVISOR_BAD_DATABASE=move-aside keeps the bad file under a timestamped name, logs
        /// it, and starts the broker with an empty database.
        @Test(arguments: [faults[0], faults[1]])
        func badDatabaseMovedAside(_ fault: DatabaseFault) throws {
            let sandbox = try Sandbox.seeded()
            defer { sandbox.remove() }
            let damagedHash = try Self.damage(sandbox, fault)
            let database = sandbox.mountpoint + "/mosquitto.db"

            let supervisor = try SupervisorUnderTest(sandbox: sandbox, environment: ["SUPERVISOR_BAD_DATABASE": "move-aside"])
            defer { supervisor.forceStop() }
            try supervisor.waitUntilRunning()
            let warning = supervisor.supervisorLog.split(separator: "\n").first { $0.contains("moved the unusable broker database") }
            let line = try #require(warning.map(String.init), "no move-aside line; log:\n\(supervisor.supervisorLog)")
            #expect(line.contains("supervisor warning: moved the unusable broker database \(database) to \(database).bad-"))
            #expect(line.contains("because \(fault.reason)"))
            #expect(line.contains("starts with an empty database"))
            #expect(try supervisor.allRetained(topic: "alice/#") == [])
            #expect(supervisor.stop() == 0)
            FailureChecks.expectNothingLeftOnMountpoint(sandbox)
            FailureChecks.expectNoSecret(in: supervisor)

            let listing = try sandbox.inspectStore("ls \"$M\"")
            let aside = try #require(listing.output.split(separator: "\n").first { $0.hasPrefix("mosquitto.db.bad-") })
            #expect(aside.count == "mosquitto.db.bad-20260101T000000Z".count, "timestamp format of \(aside)")
            #expect(try sandbox.storeFileHash(String(aside)) == damagedHash, "the moved file differs from the bad one")
            try FailureChecks.expectStoreIntact(sandbox, retained: [])
        }
    }
}
