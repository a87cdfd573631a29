import Foundation
import Glibc
import Testing

extension Integration {
    /// `supervisor rekey` killed with SIGKILL after each of its steps, through the test hook
    /// SUPERVISOR_TEST_REKEY_CRASH_AFTER_STEP. The rekey runs on the host, so after steps 2 to 6
    /// its gocryptfs processes outlive it and keep their temporary mounts, as after an OOM kill.
    @Suite struct RekeyCrash {
        static let messages: [(topic: String, payload: String)] = [
            ("alice/door", "front-door-OPEN-4711"),
            ("alice/window", "window-TILTED-0815"),
            ("alice/blob", "blob-" + String(repeating: "fedcba9876543210", count: 1024)),
        ]
        static var expectedLines: [String] { messages.map { "\($0.topic) \($0.payload)" }.sorted() }
        /// Steps 1 to 7 build and verify the new store; from step 8 on, the swap has begun.
        static let firstSwapStep = 8
        static let stepCount = 16

        /// A store with the retained messages, created once by `supervisor run`, in a plain directory.
        final class Template {
            let directory: String
            var cipherdir: String { directory + "/cipher" }

            init() throws {
                var pattern = Array("/tmp/msup-keys-template-XXXXXX".utf8CString)
                guard let created = mkdtemp(&pattern) else {
                    throw HarnessError("mkdtemp failed")
                }
                directory = String(cString: created)
                let sandbox = try Sandbox()
                defer { sandbox.remove() }
                try KeyTestSupport.publish(RekeyCrash.messages, sandbox: sandbox)
                try Shell.run(["cp", "-a", sandbox.cipherdir, cipherdir])
            }

            /// Gives `sandbox` a copy of the store.
            func copy(into sandbox: Sandbox) throws {
                try Shell.run(["cp", "-a", cipherdir, sandbox.cipherdir])
            }

            func remove() {
                try? FileManager.default.removeItem(atPath: directory)
            }
        }

        /// Runs rekey with the crash hook set to `step`; returns the new passfile.
        static func crashRekey(after step: Int, sandbox: Sandbox) throws -> String {
            let newPassfile = try KeyTestSupport.writePassfile(KeyTestSupport.newPassphrase, named: "new", in: sandbox)
            let crashed = try KeyTestSupport.run(
                "rekey", ["--new-passfile", newPassfile, "--mount-dir", sandbox.root + "/rekey-mnt"], sandbox: sandbox,
                environment: ["SUPERVISOR_TEST_REKEY_CRASH_AFTER_STEP": String(step)])
            #expect(crashed.signaled && crashed.status == SIGKILL, "step \(step): rekey was not killed; stderr:\n\(crashed.error)")
            #expect(crashed.error.contains("rekey step \(step) of \(stepCount)"), "step \(step)")
            #expect(!crashed.error.contains("rekey step \(step + 1) of \(stepCount)"), "step \(step)")
            return newPassfile
        }

        @Test func crashAfterEveryStep() throws {
            let template = try Template()
            defer { template.remove() }
            for step in 1...Self.stepCount {
                let sandbox = try Sandbox()
                defer { sandbox.remove() }
                try template.copy(into: sandbox)
                let newPassfile = try Self.crashRekey(after: step, sandbox: sandbox)
                let journal = sandbox.cipherdir + "/.supervisor-rekey.journal"
                #expect(FileManager.default.fileExists(atPath: journal) == (step < Self.stepCount), "step \(step)")

                let swapBegun = step >= Self.firstSwapStep
                let read = try KeyTestSupport.readRetained(sandbox: sandbox, passfile: swapBegun ? newPassfile : sandbox.passfile,
                                                           count: Self.messages.count)
                #expect(read.lines == Self.expectedLines, "step \(step): log:\n\(read.log)")
                #expect(read.exitCode == 0, "step \(step)")
                if step == Self.stepCount {
                    #expect(!read.log.contains("interrupted `supervisor rekey`"), "step \(step)")
                } else if swapBegun {
                    #expect(read.log.contains("finished the interrupted rekey"), "step \(step): log:\n\(read.log)")
                } else {
                    #expect(read.log.contains("rolled back the interrupted rekey"), "step \(step): log:\n\(read.log)")
                }

                let entries = KeyTestSupport.rekeyEntries(sandbox)
                #expect(entries.count == (swapBegun ? 1 : 0), "step \(step): \(entries)")
                #expect(entries.allSatisfy { $0.hasPrefix(".supervisor-rekey-old-") }, "step \(step): \(entries)")
                #expect(!FileManager.default.fileExists(atPath: journal), "step \(step)")
                #expect(KeyTestSupport.gocryptfsMounts(under: sandbox.root) == [], "step \(step)")
                #expect((try? FileManager.default.contentsOfDirectory(atPath: sandbox.root + "/rekey-mnt")) ?? [] == [],
                        "step \(step)")

                let otherPassphrase = swapBegun ? sandbox.passphrase : KeyTestSupport.newPassphrase
                #expect(try KeyTestSupport.mount(sandbox.cipherdir, on: sandbox.root + "/probe", passphrase: otherPassphrase) == 12,
                        "step \(step)")
                KeyTestSupport.unmount(sandbox.root + "/probe")
            }
        }

        /// The next rekey recovers too. Before the swap it rolls back, then rekeys. After the
        /// swap has begun, it finishes the swap and does nothing else.
        @Test(arguments: [4, 10])
        func nextRekeyRecovers(crashStep: Int) throws {
            let template = try Template()
            defer { template.remove() }
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            try template.copy(into: sandbox)
            let newPassfile = try Self.crashRekey(after: crashStep, sandbox: sandbox)

            let again = try KeyTestSupport.run("rekey", ["--new-passfile", newPassfile, "--mount-dir", sandbox.root + "/rekey-mnt"],
                                               sandbox: sandbox)
            #expect(again.status == 0, "rekey failed: \(again.error)")
            if crashStep >= Self.firstSwapStep {
                #expect(again.output.contains("finished an interrupted rekey"))
                #expect(again.error.contains("finished the interrupted rekey"))
                #expect(!again.error.contains("rekey step 1 of"))
            } else {
                #expect(again.error.contains("rolled back the interrupted rekey"))
                #expect(again.output.contains("rekeyed the gocryptfs store"))
            }
            #expect(KeyTestSupport.gocryptfsMounts(under: sandbox.root) == [])
            #expect(KeyTestSupport.rekeyEntries(sandbox).count == 1)

            let read = try KeyTestSupport.readRetained(sandbox: sandbox, passfile: newPassfile, count: Self.messages.count)
            #expect(read.lines == Self.expectedLines, "log:\n\(read.log)")
            #expect(read.exitCode == 0)
        }
    }
}
