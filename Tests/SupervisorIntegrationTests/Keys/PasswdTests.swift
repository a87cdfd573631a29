import Foundation
import Glibc
import Testing

extension Integration {
    @Suite struct Passwd {
        @Test func changeWithBrokerStopped() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            try KeyTestSupport.publish([("alice/door", "front-door-OPEN-4711")], sandbox: sandbox)
            let configBefore = try #require(KeyTestSupport.contents(sandbox.cipherdir + "/gocryptfs.conf"))

            // The new passphrase comes through a standard input pipe, the old one from the passfile.
            let result = try KeyTestSupport.run("passwd", ["--new-passfile", "-"], sandbox: sandbox,
                                                input: KeyTestSupport.newPassphrase + "\n")
            #expect(result.status == 0, "passwd failed: \(result.error)")
            #expect(result.output.contains("changed the passphrase of the gocryptfs store in \(sandbox.cipherdir)"))
            #expect(result.output.contains("put the new passphrase in \(sandbox.passfile)"))
            #expect(KeyTestSupport.contents(sandbox.cipherdir + "/gocryptfs.conf") != configBefore)
            #expect(!FileManager.default.fileExists(atPath: sandbox.cipherdir + "/gocryptfs.conf.tmp"))

            let withOld = try KeyTestSupport.readRetained(sandbox: sandbox, passfile: sandbox.passfile, count: 1)
            #expect(withOld.lines == nil)
            #expect(withOld.exitCode == 65)
            #expect(withOld.log.contains("wrong passphrase"))

            let newPassfile = try KeyTestSupport.writePassfile(KeyTestSupport.newPassphrase, named: "new", in: sandbox)
            let withNew = try KeyTestSupport.readRetained(sandbox: sandbox, passfile: newPassfile, count: 1)
            #expect(withNew.lines == ["alice/door front-door-OPEN-4711"], "log:\n\(withNew.log)")
            #expect(withNew.exitCode == 0)

            #expect(!result.error.contains(KeyTestSupport.newPassphrase))
            #expect(!result.error.contains(sandbox.passphrase))
            let findings = PlaintextScanner.scan([sandbox.cipherdir],
                                                 for: ["front-door-OPEN-4711", sandbox.passphrase, KeyTestSupport.newPassphrase])
            #expect(findings.isEmpty, "plaintext found: \(findings)")
        }

        /// passwd only rewrites gocryptfs.conf, so it works while the supervisor's broker runs:
        /// the mount keeps its master key, and the next start needs the new passphrase.
        @Test func changeWhileBrokerRuns() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            let newPassfile = try KeyTestSupport.writePassfile(KeyTestSupport.newPassphrase, named: "new", in: sandbox)
            let supervisor = try SupervisorUnderTest(sandbox: sandbox)
            defer { supervisor.forceStop() }
            try supervisor.waitUntilRunning()
            #expect(try supervisor.publish(topic: "alice/before", message: "published-before-passwd").status == 0)
            #expect(sandbox.isMounted, "the host must see the supervisor's mount for this test")

            let result = try KeyTestSupport.run("passwd", ["--new-passfile", newPassfile], sandbox: sandbox)
            #expect(result.status == 0, "passwd failed: \(result.error)")
            #expect(result.output.contains("the mount on \(sandbox.mountpoint) keeps working"))

            #expect(try supervisor.publish(topic: "alice/after", message: "published-after-passwd").status == 0)
            #expect(try supervisor.retained(topic: "alice/#", count: 2).sorted()
                    == ["alice/after published-after-passwd", "alice/before published-before-passwd"])
            #expect(supervisor.stop() == 0)

            let withOld = try KeyTestSupport.readRetained(sandbox: sandbox, passfile: sandbox.passfile, count: 2)
            #expect(withOld.exitCode == 65)
            let withNew = try KeyTestSupport.readRetained(sandbox: sandbox, passfile: newPassfile, count: 2)
            #expect(withNew.lines == ["alice/after published-after-passwd", "alice/before published-before-passwd"],
                    "log:\n\(withNew.log)")
        }

        @Test func wrongOrUnchangedPassphraseRejected() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            try KeyTestSupport.initializeStore(sandbox)
            let configBefore = try #require(KeyTestSupport.contents(sandbox.cipherdir + "/gocryptfs.conf"))
            let wrong = try KeyTestSupport.writePassfile("not the passphrase", named: "wrong", in: sandbox)
            let newPassfile = try KeyTestSupport.writePassfile(KeyTestSupport.newPassphrase, named: "new", in: sandbox)

            let wrongOld = try KeyTestSupport.run("passwd", ["--old-passfile", wrong, "--new-passfile", newPassfile], sandbox: sandbox)
            #expect(wrongOld.status == 65)
            #expect(wrongOld.error.contains("does not open the store in \(sandbox.cipherdir)"))
            #expect(wrongOld.error.contains("--old-passfile"))

            let unchanged = try KeyTestSupport.run("passwd", ["--new-passfile", sandbox.passfile], sandbox: sandbox)
            #expect(unchanged.status == 65)
            #expect(unchanged.error.contains("is the same as the current one"))

            let missingFlag = try KeyTestSupport.run("passwd", [], sandbox: sandbox)
            #expect(missingFlag.status == 64)
            #expect(missingFlag.error.contains("missing --new-passfile"))

            let missingFile = try KeyTestSupport.run("passwd", ["--new-passfile", sandbox.root + "/secrets/absent"], sandbox: sandbox)
            #expect(missingFile.status == 65)
            #expect(missingFile.error.contains("--new-passfile \(sandbox.root)/secrets/absent"))

            #expect(KeyTestSupport.contents(sandbox.cipherdir + "/gocryptfs.conf") == configBefore)
            #expect(try KeyTestSupport.mount(sandbox.cipherdir, on: sandbox.mountpoint, passphrase: sandbox.passphrase) == 0)
            KeyTestSupport.unmount(sandbox.mountpoint)
        }

        @Test func leftoverTemporaryConfigExplained() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            try KeyTestSupport.initializeStore(sandbox)
            let newPassfile = try KeyTestSupport.writePassfile(KeyTestSupport.newPassphrase, named: "new", in: sandbox)
            let configBefore = try #require(KeyTestSupport.contents(sandbox.cipherdir + "/gocryptfs.conf"))
            let temporary = sandbox.cipherdir + "/gocryptfs.conf.tmp"
            try sandbox.write("{\"half\": \"written\"", to: temporary, mode: 0o400)

            let blocked = try KeyTestSupport.run("passwd", ["--new-passfile", newPassfile], sandbox: sandbox)
            #expect(blocked.status == 67)
            #expect(blocked.error.contains("\(temporary) is left from an interrupted passphrase change"))
            #expect(blocked.error.contains("delete \(temporary)"))
            #expect(KeyTestSupport.contents(sandbox.cipherdir + "/gocryptfs.conf") == configBefore)

            // gocryptfs itself reports the leftover file with exit code 24.
            let direct = try Shell.run(["gocryptfs", "-passwd", "--", sandbox.cipherdir],
                                       input: Data("\(sandbox.passphrase)\n\(KeyTestSupport.newPassphrase)\n".utf8))
            #expect(direct.status == 24)

            unlink(temporary)
            let retried = try KeyTestSupport.run("passwd", ["--new-passfile", newPassfile], sandbox: sandbox)
            #expect(retried.status == 0, "passwd failed: \(retried.error)")
            #expect(try KeyTestSupport.mount(sandbox.cipherdir, on: sandbox.mountpoint, passphrase: KeyTestSupport.newPassphrase) == 0)
            KeyTestSupport.unmount(sandbox.mountpoint)
        }

        @Test func storeInUseRejected() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            try KeyTestSupport.initializeStore(sandbox)
            let newPassfile = try KeyTestSupport.writePassfile(KeyTestSupport.newPassphrase, named: "new", in: sandbox)
            let configBefore = try #require(KeyTestSupport.contents(sandbox.cipherdir + "/gocryptfs.conf"))

            // A mount of the store that is not on the supervisor's mountpoint belongs to someone else.
            let elsewhere = sandbox.root + "/elsewhere"
            #expect(try KeyTestSupport.mount(sandbox.cipherdir, on: elsewhere, passphrase: sandbox.passphrase) == 0)
            let mounted = try KeyTestSupport.run("passwd", ["--new-passfile", newPassfile], sandbox: sandbox)
            KeyTestSupport.unmount(elsewhere)
            #expect(mounted.status == 76)
            #expect(mounted.error.contains("is mounted on \(elsewhere)"))

            // A rekey holds the store's lock exclusively.
            let directory = open(sandbox.cipherdir, O_RDONLY | O_DIRECTORY)
            #expect(flock(directory, LOCK_EX) == 0)
            let locked = try KeyTestSupport.run("passwd", ["--new-passfile", newPassfile], sandbox: sandbox)
            close(directory)
            #expect(locked.status == 76)
            #expect(locked.error.contains("`supervisor rekey` is working on the store"))

            // The journal of an interrupted rekey must be finished or rolled back first.
            let journal = sandbox.cipherdir + "/.supervisor-rekey.journal"
            try sandbox.write("phase=building\nmount-directory=/tmp/none\nkept-old-store=\n", to: journal, mode: 0o600)
            let interrupted = try KeyTestSupport.run("passwd", ["--new-passfile", newPassfile], sandbox: sandbox)
            unlink(journal)
            #expect(interrupted.status == 76)
            #expect(interrupted.error.contains("an interrupted `supervisor rekey` left its journal"))

            #expect(KeyTestSupport.contents(sandbox.cipherdir + "/gocryptfs.conf") == configBefore)
        }
    }
}
