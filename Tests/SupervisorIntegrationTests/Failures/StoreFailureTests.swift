import Foundation
import Glibc
import SupervisorCore
import Testing

extension Integration {
    @Suite struct StoreFailures {
        /// A missing cipherdir is created for a new store, with a warning that names the setting,
        /// because it may also mean that the store's volume is mounted somewhere else.
        @Test func cipherdirMissingIsCreatedWithWarning() throws {
            let sandbox = try Sandbox.seeded()
            defer { sandbox.remove() }
            let elsewhere = sandbox.root + "/volume/not-mounted-yet"

            let supervisor = try SupervisorUnderTest(sandbox: sandbox, environment: ["SUPERVISOR_CIPHERDIR": elsewhere])
            defer { supervisor.forceStop() }
            try supervisor.waitUntilRunning()
            let log = supervisor.supervisorLog
            #expect(log.contains("supervisor warning: created the missing cipherdir \(elsewhere) for a new store"))
            #expect(log.contains("SUPERVISOR_CIPHERDIR"))
            #expect(log.contains("initialized a new gocryptfs store in \(elsewhere)"))
            #expect(try supervisor.allRetained(topic: "alice/#") == [])
            #expect(supervisor.stop() == 0)
            FailureChecks.expectNothingLeftOnMountpoint(sandbox)
            try FailureChecks.expectStoreIntact(sandbox)
        }

        /// A missing cipherdir on a read-only filesystem, inside the namespace only.
        @Test func cipherdirCannotBeCreated() throws {
            let sandbox = try Sandbox.seeded()
            defer { sandbox.remove() }
            let readOnly = sandbox.root + "/read-only"
            mkdir(readOnly, 0o755)
            let impossible = readOnly + "/cipher"
            let setup = """
                mount --make-private \(sandbox.root)
                mount --bind \(readOnly) \(readOnly)
                mount -o remount,bind,ro \(readOnly)
                """

            let supervisor = try SupervisorUnderTest(sandbox: sandbox, environment: ["SUPERVISOR_CIPHERDIR": impossible],
                                                     namespaceSetup: setup)
            defer { supervisor.forceStop() }
            FailureChecks.expectExit(supervisor, code: 67, errorLine: [
                "cannot create the cipherdir \(impossible)", "Read-only file system", "mount a volume there",
            ])
            try FailureChecks.expectStoreIntact(sandbox)
        }

        @Test func cipherdirIsFile() throws {
            let sandbox = try Sandbox.seeded()
            defer { sandbox.remove() }

            let supervisor = try SupervisorUnderTest(sandbox: sandbox, environment: ["SUPERVISOR_CIPHERDIR": sandbox.acl])
            defer { supervisor.forceStop() }
            FailureChecks.expectExit(supervisor, code: 67, errorLine: [
                "the cipherdir \(sandbox.acl) is not a directory", "mount a directory or volume there",
            ])
            try FailureChecks.expectStoreIntact(sandbox)
        }

        /// A volume mounted read-only: the namespace gets a read-only bind mount of the cipherdir.
        @Test func cipherdirNotWritable() throws {
            let sandbox = try Sandbox.seeded()
            defer { sandbox.remove() }
            let before = CipherdirSnapshot(sandbox)
            let setup = """
                mount --make-private \(sandbox.root)
                mount --bind \(sandbox.cipherdir) \(sandbox.cipherdir)
                mount -o remount,bind,ro \(sandbox.cipherdir)
                """

            let supervisor = try SupervisorUnderTest(sandbox: sandbox, namespaceSetup: setup)
            defer { supervisor.forceStop() }
            FailureChecks.expectExit(supervisor, code: 67, errorLine: [
                "the cipherdir \(sandbox.cipherdir) is not writable", "Read-only file system", "read-write",
            ])
            #expect(CipherdirSnapshot(sandbox) == before)
            try FailureChecks.expectStoreIntact(sandbox)
        }

        @Test func cipherdirWithOtherFiles() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            mkdir(sandbox.cipherdir, 0o700)
            try sandbox.write("not a store\n", to: sandbox.cipherdir + "/notes.txt", mode: 0o644)
            try sandbox.write("data\n", to: sandbox.cipherdir + "/data.bin", mode: 0o644)
            let before = CipherdirSnapshot(sandbox)

            let supervisor = try SupervisorUnderTest(sandbox: sandbox)
            defer { supervisor.forceStop() }
            FailureChecks.expectExit(supervisor, code: 67, errorLine: [
                "the cipherdir \(sandbox.cipherdir) has no gocryptfs.conf but is not empty (data.bin, notes.txt)",
                "SUPERVISOR_CIPHERDIR",
            ])
            #expect(CipherdirSnapshot(sandbox) == before)
        }

        /// A store whose gocryptfs.conf was lost: the supervisor must not initialize over it.
        @Test func storeWithoutConfig() throws {
            let sandbox = try Sandbox.seeded()
            defer { sandbox.remove() }
            let config = sandbox.cipherdir + "/gocryptfs.conf"
            let saved = try Data(contentsOf: URL(fileURLWithPath: config))
            unlink(config)
            let before = CipherdirSnapshot(sandbox)

            let supervisor = try SupervisorUnderTest(sandbox: sandbox)
            defer { supervisor.forceStop() }
            FailureChecks.expectExit(supervisor, code: 67, errorLine: [
                "the cipherdir \(sandbox.cipherdir) has no gocryptfs.conf but is not empty (", "gocryptfs.diriv",
                "restore gocryptfs.conf from your backup",
            ])
            #expect(CipherdirSnapshot(sandbox) == before)

            try saved.write(to: URL(fileURLWithPath: config))
            chmod(config, 0o400)
            try FailureChecks.expectStoreIntact(sandbox)
        }

        @Test(arguments: [
            ("truncated JSON", Data("{\n\t\"Creator\": \"gocryptfs v2.3\",\n\t\"EncryptedKey\": \"".utf8)),
            ("empty file", Data()),
            ("binary garbage", Data((0..<300).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) })),
        ])
        func corruptConfig(kind: String, content: Data) throws {
            let sandbox = try Sandbox.seeded()
            defer { sandbox.remove() }
            let config = sandbox.cipherdir + "/gocryptfs.conf"
            let saved = try Data(contentsOf: URL(fileURLWithPath: config))
            chmod(config, 0o600)
            try content.write(to: URL(fileURLWithPath: config))
            let before = CipherdirSnapshot(sandbox)

            let supervisor = try SupervisorUnderTest(sandbox: sandbox)
            defer { supervisor.forceStop() }
            FailureChecks.expectExit(supervisor, code: 67, errorLine: [
                "gocryptfs cannot use \(config)", "restore the file from your backup",
            ])
            #expect(CipherdirSnapshot(sandbox) == before, "the supervisor changed the store after a \(kind) config")

            try saved.write(to: URL(fileURLWithPath: config))
            chmod(config, 0o400)
            try FailureChecks.expectStoreIntact(sandbox)
        }

        /// Every fresh sandbox lacks the mountpoint, so this is the plain first start after seeding.
        @Test func mountpointMissingIsCreated() throws {
            let sandbox = try Sandbox.seeded()
            defer { sandbox.remove() }
            #expect(!FileManager.default.fileExists(atPath: sandbox.mountpoint))
            try FailureChecks.expectStoreIntact(sandbox)
            #expect(try String(contentsOfFile: sandbox.logs + "/clean-start.err", encoding: .utf8)
                .contains("created the missing mountpoint \(sandbox.mountpoint)"))
            var info = stat()
            #expect(stat(sandbox.mountpoint, &info) == 0)
            #expect(info.st_uid == 0)
            #expect(info.st_mode & 0o777 == 0o755)
        }

        @Test func mountpointIsFile() throws {
            let sandbox = try Sandbox.seeded()
            defer { sandbox.remove() }
            try sandbox.write("a file, not a directory\n", to: sandbox.mountpoint, mode: 0o644)
            let before = CipherdirSnapshot(sandbox)

            let supervisor = try SupervisorUnderTest(sandbox: sandbox)
            defer { supervisor.forceStop() }
            FailureChecks.expectExit(supervisor, code: 68, errorLine: [
                "the mountpoint \(sandbox.mountpoint) is not a directory", "SUPERVISOR_MOUNTPOINT",
            ])
            #expect(try String(contentsOfFile: sandbox.mountpoint, encoding: .utf8) == "a file, not a directory\n")
            #expect(CipherdirSnapshot(sandbox) == before)

            unlink(sandbox.mountpoint)
            try FailureChecks.expectStoreIntact(sandbox)
        }

        /// Files in the mountpoint may be plaintext left by a broker that ran without the mount;
        /// they are listed and left alone.
        @Test func mountpointNotEmpty() throws {
            let sandbox = try Sandbox.seeded()
            defer { sandbox.remove() }
            mkdir(sandbox.mountpoint, 0o755)
            try sandbox.write("plaintext left behind\n", to: sandbox.mountpoint + "/mosquitto.db", mode: 0o600)
            try sandbox.write("notes\n", to: sandbox.mountpoint + "/notes.txt", mode: 0o644)
            let before = CipherdirSnapshot(sandbox)

            let supervisor = try SupervisorUnderTest(sandbox: sandbox)
            defer { supervisor.forceStop() }
            FailureChecks.expectExit(supervisor, code: 68, errorLine: [
                "the mountpoint \(sandbox.mountpoint) is not empty (mosquitto.db, notes.txt)", "unencrypted",
                "move them away",
            ], mountpointEntries: ["mosquitto.db", "notes.txt"])
            #expect(try String(contentsOfFile: sandbox.mountpoint + "/mosquitto.db", encoding: .utf8) == "plaintext left behind\n")
            #expect(CipherdirSnapshot(sandbox) == before)

            unlink(sandbox.mountpoint + "/mosquitto.db")
            unlink(sandbox.mountpoint + "/notes.txt")
            try FailureChecks.expectStoreIntact(sandbox)
        }

        /// Another filesystem already mounted on the mountpoint, inside the namespace only.
        @Test func mountpointAlreadyMounted() throws {
            let sandbox = try Sandbox.seeded()
            defer { sandbox.remove() }
            mkdir(sandbox.mountpoint, 0o755)
            let setup = """
                mount --make-private \(sandbox.root)
                mount -t tmpfs other-volume \(sandbox.mountpoint)
                """

            let supervisor = try SupervisorUnderTest(sandbox: sandbox, namespaceSetup: setup)
            defer { supervisor.forceStop() }
            FailureChecks.expectExit(supervisor, code: 68, errorLine: [
                "\(sandbox.mountpoint) already has a tmpfs mount of other-volume", "unmount it",
            ])
            try FailureChecks.expectStoreIntact(sandbox)
        }

        /// A container killed with SIGKILL leaves a dead FUSE mount behind. The next start
        /// removes it, logs that, and runs on the store as it was.
        @Test func deadMountIsRecovered() throws {
            let sandbox = try Sandbox.seeded()
            defer { sandbox.remove() }
            let killed = try SupervisorUnderTest(sandbox: sandbox, name: "killed")
            defer { killed.forceStop() }
            try killed.waitUntilRunning()
            try FailureChecks.publishAndSettle(killed, topic: "alice/before-kill", message: "saved-before-kill")
            killed.forceStop()
            #expect(sandbox.isMounted, "the killed supervisor left no mount, so nothing is recovered")
            #expect(Mountpoint.liveness(of: sandbox.mountpoint) == ENOTCONN)

            let recovering = try SupervisorUnderTest(sandbox: sandbox, name: "recovering")
            defer { recovering.forceStop() }
            try recovering.waitUntilRunning()
            let log = recovering.supervisorLog
            #expect(log.contains("found a dead mount on \(sandbox.mountpoint)"))
            #expect(log.contains("removed the dead mount on \(sandbox.mountpoint)"))
            #expect(FailureChecks.errorLines(of: recovering).isEmpty)
            #expect(try recovering.retained(topic: "alice/#", count: 2).sorted()
                == ["alice/before-kill saved-before-kill", SeededStore.retainedLine])
            #expect(recovering.stop() == 0)
            FailureChecks.expectNothingLeftOnMountpoint(sandbox)
            FailureChecks.expectNoSecret(in: recovering)
            try FailureChecks.expectStoreIntact(sandbox, retained: ["alice/before-kill saved-before-kill", SeededStore.retainedLine])
        }
    }
}
