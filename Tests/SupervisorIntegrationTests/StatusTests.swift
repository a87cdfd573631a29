import Foundation
import Glibc
import Testing

extension Integration {
    @Suite struct Status {
        /// Runs `supervisor status --json` and returns its exit code, its parsed checks and how long it took.
        static func check(_ supervisor: SupervisorUnderTest, timeout: Double = 2, fromHost: Bool = false) throws -> (code: Int32, json: [String: Any], failed: [String], seconds: Double) {
            let started = Date()
            let result = try supervisor.status(["--json", "--timeout", String(timeout)], fromHost: fromHost)
            let seconds = Date().timeIntervalSince(started)
            let parsed = try? JSONSerialization.jsonObject(with: Data(result.output.utf8))
            let json = try #require(parsed as? [String: Any], "not JSON: \(result.output) \(result.error)")
            let checks = json["checks"] as? [[String: Any]] ?? []
            let failed = checks.filter { ($0["healthy"] as? Bool) == false }.compactMap { $0["name"] as? String }
            return (result.status, json, failed, seconds)
        }

        @Test func healthyAfterStartWithEveryField() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            let supervisor = try SupervisorUnderTest(sandbox: sandbox)
            defer { supervisor.forceStop() }
            try supervisor.waitUntilRunning()

            let (code, json, failed, seconds) = try Self.check(supervisor)
            #expect(code == 0)
            #expect(failed == [])
            #expect(seconds < 2)
            #expect(json["healthy"] as? Bool == true)
            #expect(json["phase"] as? String == "running")
            #expect(json["supervisorPid"] as? Int == 1)
            #expect((json["brokerPid"] as? Int ?? 0) > 1)
            #expect((json["gocryptfsPid"] as? Int ?? 0) > 1)
            #expect(json["brokerRestarts"] as? Int == 0)
            #expect((json["supervisorUptimeSeconds"] as? Double ?? -1) >= 0)
            #expect((json["brokerUptimeSeconds"] as? Double ?? -1) >= 0)
            #expect(json["cipherdir"] as? String == sandbox.cipherdir)
            #expect(json["mountpoint"] as? String == sandbox.mountpoint)
            #expect((json["mosquittoVersion"] as? String ?? "").hasPrefix("mosquitto version 2."))
            #expect((json["gocryptfsVersion"] as? String ?? "").hasPrefix("gocryptfs 2."))
            let steps = json["startupSteps"] as? [[String: Any]] ?? []
            #expect(steps.compactMap { $0["name"] as? String }.contains("mount"))
            #expect(steps.allSatisfy { ($0["milliseconds"] as? Double ?? -1) >= 0 })
            let names = (json["checks"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
            #expect(names == ["supervisor", "store", "broker", "mqtt", "persistence"])

            let text = try supervisor.status()
            #expect(text.status == 0)
            #expect(text.output.contains("ok   mqtt: CONNACK"))
            #expect(text.output.contains("\ndurability: autosave\n"))
            #expect(text.output.hasSuffix("healthy\n"))
            #expect(supervisor.stop() == 0)
        }

        @Test func probeCausesNoDatabaseSave() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            let supervisor = try SupervisorUnderTest(sandbox: sandbox)
            defer { supervisor.forceStop() }
            try supervisor.waitUntilRunning()
            #expect(try supervisor.publish(topic: "alice/t", message: "v").status == 0)
            Thread.sleep(forTimeInterval: 0.5)
            let savesBefore = supervisor.brokerLog.components(separatedBy: "Saving in-memory database").count
            for _ in 0..<5 {
                #expect(try Self.check(supervisor).code == 0)
            }
            Thread.sleep(forTimeInterval: 0.5)
            let savesAfter = supervisor.brokerLog.components(separatedBy: "Saving in-memory database").count
            #expect(savesAfter == savesBefore)
            #expect(supervisor.stop() == 0)
        }

        @Test func frozenBrokerIsUnhealthyWithinTimeout() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            let supervisor = try SupervisorUnderTest(sandbox: sandbox)
            defer { supervisor.forceStop() }
            try supervisor.waitUntilRunning()
            let broker = try #require(supervisor.childPID(named: "mosquitto"))
            kill(broker, SIGSTOP)
            let (code, _, failed, seconds) = try Self.check(supervisor, timeout: 2)
            kill(broker, SIGCONT)
            #expect(code == 1)
            #expect(failed.contains("broker"))
            #expect(failed.contains("mqtt"))
            #expect(seconds < 3, "status took \(seconds) s with a 2 s timeout")
            #expect(supervisor.stop() == 0, "log: \(supervisor.supervisorLog)\n\(supervisor.brokerLog)")
        }

        @Test func killedGocryptfsIsUnhealthy() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            let supervisor = try SupervisorUnderTest(sandbox: sandbox)
            defer { supervisor.forceStop() }
            try supervisor.waitUntilRunning()
            let gocryptfs = try #require(supervisor.childPID(named: "gocryptfs"))
            kill(gocryptfs, SIGKILL)
            // From the host, because the supervisor exits at once and takes its PID namespace along.
            let (code, _, failed, seconds) = try Self.check(supervisor, timeout: 2, fromHost: true)
            #expect(code == 1)
            #expect(failed.contains("store"))
            #expect(seconds < 3)
            #expect(supervisor.waitForExit() == 72)
        }

        @Test func failedSaveIsUnhealthy() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            let supervisor = try SupervisorUnderTest(sandbox: sandbox)
            defer { supervisor.forceStop() }
            try supervisor.waitUntilRunning()
            #expect(try Self.check(supervisor).code == 0)

            // The broker user can no longer create mosquitto.db.new in the mount root.
            #expect(try supervisor.inNamespace(["chmod", "0500", sandbox.mountpoint]).status == 0)
            #expect(try supervisor.publish(topic: "alice/t", message: "unsaved").status == 0)
            #expect(supervisor.waitForLog("Error saving in-memory database", timeout: 5))
            let (code, _, failed, _) = try Self.check(supervisor)
            #expect(code == 1)
            #expect(failed == ["persistence"])

            #expect(try supervisor.inNamespace(["chmod", "0700", sandbox.mountpoint]).status == 0)
            #expect(supervisor.stop() == 0)
        }

        @Test func startingSupervisorIsUnhealthy() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            let slow = sandbox.root + "/etc/slow-gocryptfs"
            try sandbox.write("#!/bin/sh\nsleep 2\nexec gocryptfs \"$@\"\n", to: slow, mode: 0o755)
            let supervisor = try SupervisorUnderTest(sandbox: sandbox, environment: ["SUPERVISOR_GOCRYPTFS": slow])
            defer { supervisor.forceStop() }
            #expect(supervisor.waitForLog("starting (pid 1)"))
            Thread.sleep(forTimeInterval: 0.3)

            let (code, json, failed, seconds) = try Self.check(supervisor, timeout: 1)
            #expect(code == 1)
            #expect(json["phase"] as? String == "starting")
            #expect(failed.contains("supervisor"))
            #expect(seconds < 2)
            let text = try supervisor.status(["--timeout", "1"])
            #expect(text.output.contains("FAIL supervisor: starting"))

            try supervisor.waitUntilRunning()
            #expect(try Self.check(supervisor).code == 0)
            #expect(supervisor.stop() == 0)
        }
    }
}
