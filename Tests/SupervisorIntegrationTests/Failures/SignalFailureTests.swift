import Foundation
import Glibc
import SupervisorCore
import Testing

extension Integration {
    @Suite struct SignalFailures {
        /// Writes a gocryptfs wrapper that touches `marker` and then waits 5 s for its passphrase
        /// whenever its first argument is `mode` (-init or -fg), so a SIGTERM lands while it works.
        /// The delaying subshell writes nothing to the output pipe, so it does not keep it open.
        static func slowGocryptfs(_ sandbox: Sandbox, mode: String, marker: String) throws -> String {
            let gocryptfs = try #require(Requirements.locate("gocryptfs"))
            return try sandbox.writeScript("slow-gocryptfs", """
                #!/bin/bash
                if [ "$1" = "\(mode)" ]; then
                    touch "\(marker)"
                    exec "\(gocryptfs)" "$@" < <(exec 2>/dev/null; sleep 5; cat)
                fi
                exec "\(gocryptfs)" "$@"
                """)
        }

        /// Writes a wrapper that runs the real mosquitto with SIGTERM blocked. The mask survives
        /// exec, and Mosquitto 2.0 installs a handler but never unblocks the signal.
        static func brokerIgnoringSigterm(_ sandbox: Sandbox) throws -> String {
            let mosquitto = try #require(Requirements.locate("mosquitto"))
            return try sandbox.writeScript("mosquitto-ignoring-sigterm", """
                #!/usr/bin/python3
                import os, signal, sys
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
                os.execv("\(mosquitto)", ["mosquitto"] + sys.argv[1:])
                """)
        }

        static func waitForFile(_ path: String, timeout: TimeInterval = 20) -> Bool {
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                if access(path, F_OK) == 0 {
                    return true
                }
                usleep(10_000)
            }
            return false
        }

        @Test func sigtermWhileInitializingStore() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            mkdir(sandbox.cipherdir, 0o700)
            let marker = sandbox.root + "/init-started"
            let gocryptfs = try Self.slowGocryptfs(sandbox, mode: "-init", marker: marker)

            let supervisor = try SupervisorUnderTest(sandbox: sandbox, environment: ["SUPERVISOR_GOCRYPTFS": gocryptfs])
            defer { supervisor.forceStop() }
            try #require(Self.waitForFile(marker), "gocryptfs -init never started; log:\n\(supervisor.supervisorLog)")
            let stopped = Date()
            supervisor.signal(SIGTERM)
            #expect(supervisor.waitForExit(timeout: 10) == 0)
            let elapsed = Date().timeIntervalSince(stopped)
            #expect(elapsed < 2, "the interrupted startup took \(elapsed) s to end")
            let log = supervisor.supervisorLog
            #expect(log.contains("startup interrupted by SIGTERM; undoing what was done"))
            #expect(FailureChecks.errorLines(of: supervisor).isEmpty)
            #expect(!log.contains("start broker:"))
            #expect(!FileManager.default.fileExists(atPath: sandbox.cipherdir + "/gocryptfs.conf"))
            FailureChecks.expectNothingLeftOnMountpoint(sandbox)
            FailureChecks.expectNoSecret(in: supervisor)

            let fresh = try SupervisorUnderTest(sandbox: sandbox, name: "after-interrupt")
            defer { fresh.forceStop() }
            try fresh.waitUntilRunning()
            #expect(fresh.supervisorLog.contains("initialized a new gocryptfs store in \(sandbox.cipherdir)"))
            #expect(fresh.stop() == 0)
            FailureChecks.expectNothingLeftOnMountpoint(sandbox)
        }

        @Test func sigtermWhileMounting() throws {
            let sandbox = try Sandbox.seeded()
            defer { sandbox.remove() }
            let marker = sandbox.root + "/mount-started"
            let gocryptfs = try Self.slowGocryptfs(sandbox, mode: "-fg", marker: marker)
            let before = CipherdirSnapshot(sandbox)

            let supervisor = try SupervisorUnderTest(sandbox: sandbox, environment: ["SUPERVISOR_GOCRYPTFS": gocryptfs])
            defer { supervisor.forceStop() }
            try #require(Self.waitForFile(marker), "gocryptfs never started to mount; log:\n\(supervisor.supervisorLog)")
            let stopped = Date()
            supervisor.signal(SIGTERM)
            #expect(supervisor.waitForExit(timeout: 10) == 0)
            let elapsed = Date().timeIntervalSince(stopped)
            #expect(elapsed < 2, "the interrupted startup took \(elapsed) s to end")
            let log = supervisor.supervisorLog
            #expect(log.contains("startup interrupted by SIGTERM; undoing what was done"))
            #expect(FailureChecks.errorLines(of: supervisor).isEmpty)
            #expect(!log.contains("start broker:"))
            #expect(CipherdirSnapshot(sandbox) == before)
            FailureChecks.expectNothingLeftOnMountpoint(sandbox)
            FailureChecks.expectNoSecret(in: supervisor)
            try FailureChecks.expectStoreIntact(sandbox)
        }

        /// The second SIGTERM ends the grace period at once: SIGKILL, then the unmount.
        @Test func secondSigtermCutsGracePeriod() throws {
            let sandbox = try Sandbox.seeded()
            defer { sandbox.remove() }
            let broker = try Self.brokerIgnoringSigterm(sandbox)
            let supervisor = try SupervisorUnderTest(sandbox: sandbox, environment: [
                "SUPERVISOR_MOSQUITTO": broker, "SUPERVISOR_STOP_TIMEOUT": "60",
            ])
            defer { supervisor.forceStop() }
            try supervisor.waitUntilRunning()
            try FailureChecks.publishAndSettle(supervisor, topic: "alice/before-stop", message: "saved-before-stop")

            supervisor.signal(SIGTERM)
            #expect(supervisor.waitForLog("sent SIGTERM to mosquitto"))
            Thread.sleep(forTimeInterval: 0.3)
            let second = Date()
            supervisor.signal(SIGTERM)
            let code = supervisor.waitForExit(timeout: 20)
            let elapsed = Date().timeIntervalSince(second)
            #expect(code == 128 + SIGKILL)
            #expect(elapsed < 3, "the stop took \(elapsed) s after the second SIGTERM")
            let log = supervisor.supervisorLog
            #expect(log.contains("received SIGTERM again; cutting the grace period short"))
            #expect(log.contains("sending SIGKILL"))
            #expect(log.contains("unmounted \(sandbox.mountpoint)"))
            FailureChecks.expectNothingLeftOnMountpoint(sandbox)
            FailureChecks.expectNoSecret(in: supervisor)
            try FailureChecks.expectStoreIntact(sandbox, retained: ["alice/before-stop saved-before-stop", SeededStore.retainedLine])
        }

        /// With the default stop timeout, a broker that ignores SIGTERM is killed and the store
        /// unmounted inside the 10 s that `docker stop` waits before its own SIGKILL.
        @Test func brokerIgnoringSigtermStopsWithinDockerTimeout() throws {
            #expect(Settings().stopTimeout == 8, "the default stop timeout changed; this test runs with 8 s")
            let sandbox = try Sandbox.seeded()
            defer { sandbox.remove() }
            let broker = try Self.brokerIgnoringSigterm(sandbox)
            let supervisor = try SupervisorUnderTest(sandbox: sandbox, environment: [
                "SUPERVISOR_MOSQUITTO": broker, "SUPERVISOR_STOP_TIMEOUT": "8",
            ])
            defer { supervisor.forceStop() }
            try supervisor.waitUntilRunning()
            try FailureChecks.publishAndSettle(supervisor, topic: "alice/before-stop", message: "saved-before-stop")

            let stopped = Date()
            supervisor.signal(SIGTERM)
            let code = supervisor.waitForExit(timeout: 30)
            let elapsed = Date().timeIntervalSince(stopped)
            #expect(code == 128 + SIGKILL)
            #expect(elapsed >= 8, "the broker was killed before its grace period ended (\(elapsed) s)")
            let log = supervisor.supervisorLog
            #expect(elapsed < 10, "the stop took \(elapsed) s, longer than Docker's default 10 s; log:\n\(log)")
            #expect(log.contains("still runs after"))
            #expect(log.contains("sending SIGKILL"))
            #expect(log.contains("unmounted \(sandbox.mountpoint)"))
            #expect(FailureChecks.errorLines(of: supervisor).contains { $0.contains("final save") })
            FailureChecks.expectNothingLeftOnMountpoint(sandbox)
            FailureChecks.expectNoSecret(in: supervisor)
            try FailureChecks.expectStoreIntact(sandbox, retained: ["alice/before-stop saved-before-stop", SeededStore.retainedLine])
        }
    }
}
