import Foundation
import Glibc
import Testing

extension Integration {
    @Suite struct RunLifecycle {
        @Test func firstStartPublishStopRestart() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }

            let first = try SupervisorUnderTest(sandbox: sandbox)
            defer { first.forceStop() }
            try first.waitUntilRunning()
            #expect(FileManager.default.fileExists(atPath: sandbox.cipherdir + "/gocryptfs.conf"))
            #expect(first.supervisorLog.contains("initialized a new gocryptfs store"))

            let published = try first.publish(topic: "alice/door", message: "front-door-OPEN-4711")
            #expect(published.status == 0, "mosquitto_pub failed: \(published.error)")
            #expect(try first.retained(topic: "alice/#") == ["alice/door front-door-OPEN-4711"])

            #expect(first.stop() == 0)
            let log = first.supervisorLog
            let stopped = try #require(log.range(of: "mosquitto stopped with exit code 0"))
            let synced = try #require(log.range(of: "synced the filesystem of \(sandbox.cipherdir)"))
            let unmounted = try #require(log.range(of: "unmounted \(sandbox.mountpoint)"))
            #expect(stopped.lowerBound < synced.lowerBound)
            #expect(synced.lowerBound < unmounted.lowerBound)
            #expect(log.contains("the broker saved"))
            #expect(!sandbox.isMounted, "a mount is left on \(sandbox.mountpoint)")
            #expect(sandbox.filesUnderMountpoint() == [])

            let second = try SupervisorUnderTest(sandbox: sandbox, name: "second")
            defer { second.forceStop() }
            try second.waitUntilRunning()
            #expect(second.supervisorLog.contains("found the gocryptfs store"))
            #expect(try second.retained(topic: "alice/#") == ["alice/door front-door-OPEN-4711"])
            #expect(second.stop() == 0)

            let findings = PlaintextScanner.scan([sandbox.cipherdir, sandbox.mountpoint],
                                                 for: ["alice/door", "front-door-OPEN-4711", sandbox.passphrase])
            #expect(findings.isEmpty, "plaintext found: \(findings)")
        }

        @Test func orphansAreReaped() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            let supervisor = try SupervisorUnderTest(sandbox: sandbox)
            defer { supervisor.forceStop() }
            try supervisor.waitUntilRunning()

            // Each subshell exits at once, so its sleep is re-parented to PID 1 of the namespace.
            let script = "for i in $(seq 60); do (sleep 0.3 &); done"
            let spawned = try supervisor.inNamespace(["/bin/sh", "-c", script], pidNamespace: true)
            #expect(spawned.status == 0)
            Thread.sleep(forTimeInterval: 1.5)

            let states = try supervisor.inNamespace(["/bin/sh", "-c", "cat /proc/[0-9]*/stat"], pidNamespace: true).output
            let zombies = states.split(separator: "\n").filter { line in
                guard let close = line.lastIndex(of: ")") else { return false }
                return line[line.index(close, offsetBy: 2)] == "Z"
            }
            #expect(zombies.isEmpty, "zombies left: \(zombies)")
            let sleepers = states.split(separator: "\n").filter { $0.contains("(sleep)") }
            #expect(sleepers.isEmpty)
            #expect(supervisor.stop() == 0)
        }

        @Test func sighupReloadAppliesACLChange() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            try sandbox.write("pattern readwrite %u/#\nuser dave\ntopic readwrite shared/#\n", to: sandbox.acl, mode: 0o644)
            let supervisor = try SupervisorUnderTest(sandbox: sandbox)
            defer { supervisor.forceStop() }
            try supervisor.waitUntilRunning()

            #expect(try supervisor.publish(topic: "shared/notice", message: "maintenance-at-noon", user: "dave").status == 0)
            #expect(try supervisor.retained(topic: "shared/#", user: "dave") == ["shared/notice maintenance-at-noon"])
            #expect(try supervisor.retained(topic: "shared/#", user: "carol", seconds: 1) == [])

            try sandbox.write("pattern readwrite %u/#\nuser dave\ntopic readwrite shared/#\nuser carol\ntopic read shared/#\n",
                              to: sandbox.acl, mode: 0o644)
            supervisor.signal(SIGHUP)
            #expect(supervisor.waitForLog("sent SIGHUP to mosquitto"))
            #expect(supervisor.waitForLog("Reloading config"))
            #expect(try supervisor.retained(topic: "shared/#", user: "carol") == ["shared/notice maintenance-at-noon"])
            #expect(supervisor.stop() == 0)
        }

        @Test(arguments: [false, true])
        func passphraseNeverExposed(fromLegacyVariable: Bool) throws {
            let passphrase = "unique-passphrase-\(getpid())-Qx9"
            let sandbox = try Sandbox(passphrase: passphrase, writePassfile: !fromLegacyVariable)
            defer { sandbox.remove() }
            let environment = fromLegacyVariable ? ["GOCRYPT_PASSWORD": passphrase] : [:]
            let supervisor = try SupervisorUnderTest(sandbox: sandbox, environment: environment)
            defer { supervisor.forceStop() }
            try supervisor.waitUntilRunning()
            #expect(try supervisor.publish(topic: "alice/secret", message: "payload-\(passphrase.count)").status == 0)

            #expect(PlaintextScanner.processesWithSecretInCommandLine(passphrase).isEmpty)
            let broker = try #require(supervisor.childPID(named: "mosquitto"))
            let gocryptfs = try #require(supervisor.childPID(named: "gocryptfs"))
            for pid in [broker, gocryptfs, supervisor.hostPID] {
                let environ = FileManager.default.contents(atPath: "/proc/\(pid)/environ") ?? Data()
                #expect(!PlaintextScanner.contains([UInt8](environ), Array(passphrase.utf8)), "passphrase in the environment of pid \(pid)")
            }
            let config = try String(contentsOfFile: sandbox.config, encoding: .utf8)
            #expect(!config.contains(passphrase))
            if fromLegacyVariable {
                #expect(supervisor.supervisorLog.contains("reading the passphrase from GOCRYPT_PASSWORD"))
            }
            #expect(supervisor.stop() == 0)
            #expect(!supervisor.supervisorLog.contains(passphrase))
            #expect(!supervisor.brokerLog.contains(passphrase))
        }

        @Test func brokerKilledEndsWithItsStatus() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            let supervisor = try SupervisorUnderTest(sandbox: sandbox)
            defer { supervisor.forceStop() }
            try supervisor.waitUntilRunning()
            let broker = try #require(supervisor.childPID(named: "mosquitto"))
            kill(broker, SIGKILL)
            #expect(supervisor.waitForExit() == 128 + SIGKILL)
            #expect(supervisor.supervisorLog.contains("ended by itself with signal SIGKILL"))
            #expect(supervisor.supervisorLog.contains("unmounted \(sandbox.mountpoint)"))
            #expect(!sandbox.isMounted)
        }

        @Test func gocryptfsKilledStopsBrokerAtOnce() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            let supervisor = try SupervisorUnderTest(sandbox: sandbox)
            defer { supervisor.forceStop() }
            try supervisor.waitUntilRunning()
            let gocryptfs = try #require(supervisor.childPID(named: "gocryptfs"))
            kill(gocryptfs, SIGKILL)
            #expect(supervisor.waitForExit() == 72)
            let log = supervisor.supervisorLog
            #expect(log.contains("killed mosquitto"))
            #expect(log.contains("removed the dead mount"))
            #expect(!sandbox.isMounted)
            #expect(sandbox.filesUnderMountpoint() == [])
        }
    }
}
