import Foundation
import Glibc
import Testing

extension Integration {
    @Suite struct Rekey {
        static let messages: [(topic: String, payload: String)] = [
            ("alice/door", "front-door-OPEN-4711"),
            ("alice/window", "window-TILTED-0815"),
            // Several gocryptfs blocks of 4 KiB, so the copy and the digest cover more than one block.
            ("alice/blob", "blob-" + String(repeating: "0123456789abcdef", count: 2048)),
        ]
        static var expectedLines: [String] { messages.map { "\($0.topic) \($0.payload)" }.sorted() }

        @Test func retainedMessagesSurvive() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            try KeyTestSupport.publish(Self.messages, sandbox: sandbox)
            let oldConfig = try #require(KeyTestSupport.contents(sandbox.cipherdir + "/gocryptfs.conf"))
            let newPassfile = try KeyTestSupport.writePassfile(KeyTestSupport.newPassphrase, named: "new", in: sandbox)

            let result = try KeyTestSupport.run("rekey", ["--new-passfile", newPassfile, "--mount-dir", sandbox.root + "/rekey-mnt"],
                                                sandbox: sandbox)
            #expect(result.status == 0, "rekey failed: \(result.error)")
            #expect(result.output.contains("rekeyed the gocryptfs store in \(sandbox.cipherdir) with a new master key"))
            #expect(result.output.contains("copied and verified (size and SHA-256) 1 files"))
            #expect(result.error.contains("rekey step 16 of 16: removed the journal"))
            let kept = KeyTestSupport.rekeyEntries(sandbox)
            #expect(kept.count == 1)
            let keptStore = sandbox.cipherdir + "/" + (kept.first ?? "")
            #expect(kept.first?.hasPrefix(".supervisor-rekey-old-") == true)
            #expect(result.output.contains("kept the old store in \(keptStore)"))
            #expect(KeyTestSupport.gocryptfsMounts(under: sandbox.root) == [])
            #expect((try? FileManager.default.contentsOfDirectory(atPath: sandbox.root + "/rekey-mnt")) == [])
            #expect(KeyTestSupport.contents(keptStore + "/gocryptfs.conf") == oldConfig)

            let withNew = try KeyTestSupport.readRetained(sandbox: sandbox, passfile: newPassfile, count: Self.messages.count)
            #expect(withNew.lines == Self.expectedLines, "log:\n\(withNew.log)")
            #expect(withNew.exitCode == 0)
            let withOld = try KeyTestSupport.readRetained(sandbox: sandbox, passfile: sandbox.passfile, count: Self.messages.count)
            #expect(withOld.lines == nil)
            #expect(withOld.exitCode == 65)

            // The old gocryptfs.conf with the old passphrase unlocks the old master key, which
            // decrypts nothing of the new store: no name in it can be decrypted.
            let probe = sandbox.root + "/probe-cipher"
            try Shell.run(["cp", "-a", sandbox.cipherdir, probe])
            try Shell.run(["rm", "-rf", probe + "/" + (kept.first ?? "missing")])
            try oldConfig.write(to: URL(fileURLWithPath: probe + "/gocryptfs.conf"))
            let probeMount = sandbox.root + "/probe-mnt"
            #expect(try KeyTestSupport.mount(probe, on: probeMount, passphrase: sandbox.passphrase) == 0)
            let visible = (try? FileManager.default.contentsOfDirectory(atPath: probeMount)) ?? ["unreadable"]
            KeyTestSupport.unmount(probeMount)
            #expect(visible == [])

            // The kept old store still opens with the old passphrase and contains the database.
            let keptMount = sandbox.root + "/kept-mnt"
            #expect(try KeyTestSupport.mount(keptStore, on: keptMount, passphrase: sandbox.passphrase) == 0)
            let keptFiles = (try? FileManager.default.contentsOfDirectory(atPath: keptMount)) ?? []
            KeyTestSupport.unmount(keptMount)
            #expect(keptFiles.contains("mosquitto.db"))

            let findings = PlaintextScanner.scan([sandbox.cipherdir, sandbox.root + "/rekey-mnt"],
                                                 for: Self.messages.flatMap { [$0.topic, $0.payload] }
                                                     + [sandbox.passphrase, KeyTestSupport.newPassphrase])
            #expect(findings.isEmpty, "plaintext found: \(findings)")
            #expect(!result.error.contains(KeyTestSupport.newPassphrase))
            #expect(!result.output.contains(sandbox.passphrase))
        }

        /// The cipherdir is often a volume's mount point, which cannot be renamed, so here it is
        /// a small tmpfs. A store too large for its free space is rejected before anything is
        /// written. With more space, the same store is rekeyed and the old one removed.
        @Test func spaceCheckOnMountedCipherdir() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            mkdir(sandbox.cipherdir, 0o700)
            try Shell.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", sandbox.cipherdir])
            try KeyTestSupport.initializeStore(sandbox)
            #expect(try KeyTestSupport.mount(sandbox.cipherdir, on: sandbox.mountpoint, passphrase: sandbox.passphrase) == 0)
            try Shell.sh("head -c 3145728 /dev/urandom > '\(sandbox.mountpoint)/large.bin'")
            let digestBefore = try Shell.run(["sha256sum", sandbox.mountpoint + "/large.bin"]).output.prefix(64)
            KeyTestSupport.unmount(sandbox.mountpoint)
            let configBefore = try #require(KeyTestSupport.contents(sandbox.cipherdir + "/gocryptfs.conf"))
            let entriesBefore = try FileManager.default.contentsOfDirectory(atPath: sandbox.cipherdir).sorted()
            let newPassfile = try KeyTestSupport.writePassfile(KeyTestSupport.newPassphrase, named: "new", in: sandbox)
            let arguments = ["--new-passfile", newPassfile, "--remove-old", "--mount-dir", sandbox.root + "/rekey-mnt"]

            let full = try KeyTestSupport.run("rekey", arguments, sandbox: sandbox)
            #expect(full.status == 77)
            #expect(full.error.contains("not enough free space for rekey on the filesystem of \(sandbox.cipherdir)"))
            #expect(KeyTestSupport.contents(sandbox.cipherdir + "/gocryptfs.conf") == configBefore)
            #expect(try FileManager.default.contentsOfDirectory(atPath: sandbox.cipherdir).sorted() == entriesBefore)

            try Shell.run(["mount", "-o", "remount,size=64m", sandbox.cipherdir])
            let roomy = try KeyTestSupport.run("rekey", arguments, sandbox: sandbox)
            #expect(roomy.status == 0, "rekey failed: \(roomy.error)")
            #expect(roomy.output.contains("the old store was removed"))
            #expect(KeyTestSupport.rekeyEntries(sandbox) == [])
            #expect(try KeyTestSupport.mount(sandbox.cipherdir, on: sandbox.mountpoint, passphrase: KeyTestSupport.newPassphrase) == 0)
            let digestAfter = try Shell.run(["sha256sum", sandbox.mountpoint + "/large.bin"]).output.prefix(64)
            KeyTestSupport.unmount(sandbox.mountpoint)
            #expect(digestAfter.count == 64)
            #expect(digestAfter == digestBefore)
        }

        @Test func storeInUseRejected() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            let newPassfile = try KeyTestSupport.writePassfile(KeyTestSupport.newPassphrase, named: "new", in: sandbox)
            let arguments = ["--new-passfile", newPassfile, "--mount-dir", sandbox.root + "/rekey-mnt"]
            let supervisor = try SupervisorUnderTest(sandbox: sandbox)
            defer { supervisor.forceStop() }
            try supervisor.waitUntilRunning()
            let configBefore = try #require(KeyTestSupport.contents(sandbox.cipherdir + "/gocryptfs.conf"))

            let whileRunning = try KeyTestSupport.run("rekey", arguments, sandbox: sandbox)
            #expect(whileRunning.status == 76)
            #expect(whileRunning.error.contains("a `supervisor run`, passwd or rekey holds its lock"))
            #expect(supervisor.stop() == 0)

            // A mount by another program holds no lock; the mount table shows it.
            let elsewhere = sandbox.root + "/elsewhere"
            #expect(try KeyTestSupport.mount(sandbox.cipherdir, on: elsewhere, passphrase: sandbox.passphrase) == 0)
            let mounted = try KeyTestSupport.run("rekey", arguments, sandbox: sandbox)
            KeyTestSupport.unmount(elsewhere)
            #expect(mounted.status == 76)
            #expect(mounted.error.contains("is mounted on \(elsewhere)"))

            #expect(KeyTestSupport.contents(sandbox.cipherdir + "/gocryptfs.conf") == configBefore)
            #expect(KeyTestSupport.rekeyEntries(sandbox) == [])
        }

        @Test func wrongPassphraseRollsBack() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            try KeyTestSupport.initializeStore(sandbox)
            let configBefore = try #require(KeyTestSupport.contents(sandbox.cipherdir + "/gocryptfs.conf"))
            let wrong = try KeyTestSupport.writePassfile("not the passphrase", named: "wrong", in: sandbox)
            let newPassfile = try KeyTestSupport.writePassfile(KeyTestSupport.newPassphrase, named: "new", in: sandbox)

            let result = try KeyTestSupport.run("rekey", ["--old-passfile", wrong, "--new-passfile", newPassfile,
                                                          "--mount-dir", sandbox.root + "/rekey-mnt"], sandbox: sandbox)
            #expect(result.status == 65)
            #expect(result.error.contains("does not open the store in \(sandbox.cipherdir)"))
            #expect(result.error.contains("the rekey was rolled back and the store in \(sandbox.cipherdir) is unchanged"))
            #expect(KeyTestSupport.rekeyEntries(sandbox) == [])
            #expect((try? FileManager.default.contentsOfDirectory(atPath: sandbox.root + "/rekey-mnt")) == [])
            #expect(KeyTestSupport.contents(sandbox.cipherdir + "/gocryptfs.conf") == configBefore)

            let unchanged = try KeyTestSupport.run("rekey", ["--new-passfile", sandbox.passfile], sandbox: sandbox)
            #expect(unchanged.status == 65)
            #expect(unchanged.error.contains("a rekey needs a different passphrase"))

            let inside = try KeyTestSupport.run("rekey", ["--new-passfile", newPassfile, "--mount-dir", sandbox.cipherdir + "/mnt"],
                                                sandbox: sandbox)
            #expect(inside.status == 64)
            #expect(inside.error.contains("is inside the cipherdir"))
            #expect(KeyTestSupport.rekeyEntries(sandbox) == [])
            #expect(KeyTestSupport.contents(sandbox.cipherdir + "/gocryptfs.conf") == configBefore)
        }

        /// SIGTERM while the new store is verified: the rekey rolls back and exits with 128+15.
        @Test func stopRequestRollsBack() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            try KeyTestSupport.initializeStore(sandbox)
            #expect(try KeyTestSupport.mount(sandbox.cipherdir, on: sandbox.mountpoint, passphrase: sandbox.passphrase) == 0)
            try Shell.sh("head -c 67108864 /dev/urandom > '\(sandbox.mountpoint)/large.bin'", timeout: 60)
            KeyTestSupport.unmount(sandbox.mountpoint)
            let configBefore = try #require(KeyTestSupport.contents(sandbox.cipherdir + "/gocryptfs.conf"))
            let newPassfile = try KeyTestSupport.writePassfile(KeyTestSupport.newPassphrase, named: "new", in: sandbox)

            var signaled = false
            let result = try KeyTestSupport.run(
                "rekey", ["--new-passfile", newPassfile, "--mount-dir", sandbox.root + "/rekey-mnt"], sandbox: sandbox,
                whileRunning: { process, errorText in
                    let deadline = Date().addingTimeInterval(60)
                    while process.isRunning && Date() < deadline {
                        if errorText().contains("rekey step 5 of 16") {
                            kill(process.processIdentifier, SIGTERM)
                            signaled = true
                            return
                        }
                        usleep(2_000)
                    }
                })
            #expect(signaled)
            #expect(result.status == 128 + SIGTERM, "log:\n\(result.error)")
            #expect(result.error.contains("stopped by SIGTERM before the swap; the rekey was rolled back"))
            #expect(!result.error.contains("rekey step 8 of 16"))
            #expect(KeyTestSupport.rekeyEntries(sandbox) == [])
            #expect(KeyTestSupport.gocryptfsMounts(under: sandbox.root) == [])
            #expect(KeyTestSupport.contents(sandbox.cipherdir + "/gocryptfs.conf") == configBefore)
        }
    }
}
