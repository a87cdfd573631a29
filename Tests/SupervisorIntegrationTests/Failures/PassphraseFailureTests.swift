import Foundation
import Glibc
import Testing

extension Integration {
    @Suite struct PassphraseFailures {
        @Test func passfileMissing() throws {
            let sandbox = try Sandbox.seeded()
            defer { sandbox.remove() }
            unlink(sandbox.passfile)
            let before = CipherdirSnapshot(sandbox)

            let supervisor = try SupervisorUnderTest(sandbox: sandbox)
            defer { supervisor.forceStop() }
            FailureChecks.expectExit(supervisor, code: 65, errorLine: [
                "cannot read passfile \(sandbox.passfile)", "No such file or directory", "SUPERVISOR_PASSFILE",
            ])
            #expect(CipherdirSnapshot(sandbox) == before)

            try sandbox.write(sandbox.passphrase + "\n", to: sandbox.passfile, mode: 0o600)
            try FailureChecks.expectStoreIntact(sandbox)
        }

        @Test func passfileIsDirectory() throws {
            let sandbox = try Sandbox.seeded()
            defer { sandbox.remove() }
            unlink(sandbox.passfile)
            mkdir(sandbox.passfile, 0o700)
            let before = CipherdirSnapshot(sandbox)

            let supervisor = try SupervisorUnderTest(sandbox: sandbox)
            defer { supervisor.forceStop() }
            FailureChecks.expectExit(supervisor, code: 65, errorLine: [
                "cannot read passfile \(sandbox.passfile)", "Is a directory", "first line is the passphrase",
            ])
            #expect(CipherdirSnapshot(sandbox) == before)

            rmdir(sandbox.passfile)
            try sandbox.write(sandbox.passphrase + "\n", to: sandbox.passfile, mode: 0o600)
            try FailureChecks.expectStoreIntact(sandbox)
        }

        /// Root reads a mode 0000 file only through CAP_DAC_OVERRIDE, which the supervisor lacks
        /// here. In a rootless container, root lacks it for files of unmapped host users.
        @Test func passfileUnreadableWithoutDACOverride() throws {
            let sandbox = try Sandbox.seeded()
            defer { sandbox.remove() }
            chmod(sandbox.passfile, 0)
            // gocryptfs gives the cipherdir the owner of the mount root, the broker user. Root
            // without CAP_DAC_OVERRIDE could not write it, so it would fail before the passfile.
            chown(sandbox.cipherdir, 0, 0)
            let before = CipherdirSnapshot(sandbox)

            let dropped = "-dac_override,-dac_read_search"
            let supervisor = try SupervisorUnderTest(
                sandbox: sandbox, commandPrefix: ["setpriv", "--inh-caps=\(dropped)", "--bounding-set=\(dropped)"])
            defer { supervisor.forceStop() }
            FailureChecks.expectExit(supervisor, code: 65, errorLine: [
                "cannot read passfile \(sandbox.passfile)", "Permission denied", "readable by root",
            ])
            #expect(CipherdirSnapshot(sandbox) == before)

            chmod(sandbox.passfile, 0o400)
            try FailureChecks.expectStoreIntact(sandbox)
        }

        @Test(arguments: ["", "\n", "\nthe passphrase on the second line\n"])
        func passfileWithEmptyFirstLine(content: String) throws {
            let sandbox = try Sandbox.seeded()
            defer { sandbox.remove() }
            try sandbox.write(content, to: sandbox.passfile, mode: 0o600)
            let before = CipherdirSnapshot(sandbox)

            let supervisor = try SupervisorUnderTest(sandbox: sandbox)
            defer { supervisor.forceStop() }
            FailureChecks.expectExit(supervisor, code: 65, errorLine: [
                "the passphrase in \(sandbox.passfile) is empty", "first line",
            ])
            #expect(CipherdirSnapshot(sandbox) == before)

            try sandbox.write(sandbox.passphrase + "\n", to: sandbox.passfile, mode: 0o600)
            try FailureChecks.expectStoreIntact(sandbox)
        }

        @Test func wrongPassphrase() throws {
            let sandbox = try Sandbox.seeded()
            defer { sandbox.remove() }
            let wrong = "not-the-store-passphrase-\(getpid())"
            try sandbox.write(wrong + "\n", to: sandbox.passfile, mode: 0o600)
            let before = CipherdirSnapshot(sandbox)

            let supervisor = try SupervisorUnderTest(sandbox: sandbox)
            defer { supervisor.forceStop() }
            FailureChecks.expectExit(supervisor, code: 65, errorLine: [
                "wrong passphrase from \(sandbox.passfile) for the store in \(sandbox.cipherdir)", "Password incorrect",
                "provide the store's current passphrase",
            ], secrets: [wrong])
            #expect(CipherdirSnapshot(sandbox) == before)

            try sandbox.write(sandbox.passphrase + "\n", to: sandbox.passfile, mode: 0o600)
            try FailureChecks.expectStoreIntact(sandbox)
        }

        /// A passfile's content and the passphrase gocryptfs reads from it: the first line, byte
        /// for byte, with nothing expanded or trimmed.
        struct PassfileContent: Sendable, CustomTestStringConvertible {
            let content: String
            let passphrase: String
            let testDescription: String
        }

        static let specialPassfiles = [
            PassfileContent(content: "comma, dollar $HOME $(id) `id` \"double\" 'single' back\\slash\\n\n",
                            passphrase: "comma, dollar $HOME $(id) `id` \"double\" 'single' back\\slash\\n",
                            testDescription: "shell metacharacters"),
            PassfileContent(content: "  spaces around it  \n\n\n",
                            passphrase: "  spaces around it  ",
                            testDescription: "spaces and trailing newlines"),
            PassfileContent(content: "saved-with-crlf\r\n",
                            passphrase: "saved-with-crlf\r",
                            testDescription: "carriage return"),
        ]

        /// The store the supervisor creates opens with `gocryptfs -passfile` on the same file, so
        /// the supervisor reads the passfile exactly as gocryptfs does and never through a shell.
        @Test(arguments: specialPassfiles)
        func passfileReadAsGocryptfsReadsIt(_ passfile: PassfileContent) throws {
            let sandbox = try Sandbox(passphrase: passfile.passphrase)
            defer { sandbox.remove() }
            try sandbox.write(passfile.content, to: sandbox.passfile, mode: 0o600)

            let supervisor = try SupervisorUnderTest(sandbox: sandbox)
            defer { supervisor.forceStop() }
            try supervisor.waitUntilRunning()
            #expect(supervisor.supervisorLog.contains("initialized a new gocryptfs store"))
            #expect(PlaintextScanner.processesWithSecretInCommandLine(passfile.passphrase).isEmpty)
            try FailureChecks.publishAndSettle(supervisor, topic: "alice/special", message: "special-payload")
            #expect(supervisor.stop() == 0)
            FailureChecks.expectNoSecret(in: supervisor)

            let opened = try sandbox.inspectStore("test -s \"$M/mosquitto.db\"", passfile: sandbox.passfile)
            #expect(opened.status == 0, "gocryptfs -passfile did not open the store: \(opened.error)")
            try FailureChecks.expectStoreIntact(sandbox, retained: ["alice/special special-payload"])
        }

        @Test func passfileWinsOverLegacyVariable() throws {
            let sandbox = try Sandbox.seeded()
            defer { sandbox.remove() }
            let legacy = "legacy-variable-value-\(getpid())"

            let supervisor = try SupervisorUnderTest(sandbox: sandbox, environment: ["GOCRYPT_PASSWORD": legacy])
            defer { supervisor.forceStop() }
            try supervisor.waitUntilRunning()
            #expect(supervisor.supervisorLog.contains(
                "both \(sandbox.passfile) and GOCRYPT_PASSWORD are set; using the passfile and ignoring GOCRYPT_PASSWORD"))
            #expect(try supervisor.retained(topic: "alice/#") == [SeededStore.retainedLine])
            #expect(supervisor.stop() == 0)
            FailureChecks.expectNoSecret(in: supervisor, secrets: [legacy])
            FailureChecks.expectNothingLeftOnMountpoint(sandbox)
        }
    }
}
