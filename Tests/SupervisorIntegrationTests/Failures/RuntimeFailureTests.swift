import Foundation
import Glibc
import SupervisorCore
import Testing

extension Integration {
    @Suite struct RuntimeFailures {
        /// Another program listens on 127.0.0.1:1883 in the namespace before the broker starts.
        @Test func portAlreadyInUse() throws {
            let sandbox = try Sandbox.seeded()
            defer { sandbox.remove() }
            let listener = "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', 1883)); s.listen(); time.sleep(120)"
            let setup = """
                /usr/bin/python3 -c "\(listener)" &
                for i in $(seq 100); do ss -Hltn 'sport = :1883' | grep -q 1883 && break; sleep 0.05; done
                """

            let supervisor = try SupervisorUnderTest(sandbox: sandbox, namespaceSetup: setup)
            defer { supervisor.forceStop() }
            FailureChecks.expectExit(supervisor, code: 1, errorLine: [
                "mosquitto (pid", "ended by itself with exit code 1", "port 1883 is already in use",
                "Address already in use", "MOSQUITTO_PORT",
            ], brokerStarted: true)
            #expect(supervisor.supervisorLog.contains("unmounted \(sandbox.mountpoint)"))
            try FailureChecks.expectStoreIntact(sandbox)
        }

        /// A bind address that no interface of the namespace has: the error names the setting.
        @Test func bindAddressNotOnHost() throws {
            let sandbox = try Sandbox.seeded()
            defer { sandbox.remove() }
            let supervisor = try SupervisorUnderTest(sandbox: sandbox, environment: ["MOSQUITTO_BIND_ADDRESS": "10.99.99.99"])
            defer { supervisor.forceStop() }
            FailureChecks.expectExit(supervisor, code: 1, errorLine: [
                "mosquitto (pid", "ended by itself with exit code 1", "Cannot assign requested address",
                "set MOSQUITTO_BIND_ADDRESS",
            ], brokerStarted: true)
            #expect(!supervisor.supervisorLog.contains("running: broker pid"), "logged running for a broker that had failed")
            #expect(supervisor.supervisorLog.contains("unmounted \(sandbox.mountpoint)"))
            try FailureChecks.expectStoreIntact(sandbox)
        }

        /// Under the default SUPERVISOR_RESTART=never the supervisor tears down in order and exits
        /// with the broker's status, so the container runtime's restart policy decides.
        @Test(arguments: [SIGKILL, SIGSEGV])
        func brokerEndsWithoutRestart(signal: Int32) throws {
            let sandbox = try Sandbox.seeded()
            defer { sandbox.remove() }
            let supervisor = try SupervisorUnderTest(sandbox: sandbox)
            defer { supervisor.forceStop() }
            try supervisor.waitUntilRunning()
            try FailureChecks.publishAndSettle(supervisor, topic: "alice/before-crash", message: "saved-before-crash")

            let broker = try #require(supervisor.childPID(named: "mosquitto"))
            kill(broker, signal)
            FailureChecks.expectExit(supervisor, code: 128 + signal, errorLine: [
                "mosquitto (pid", "ended by itself with signal \(signalName(signal))",
            ], brokerStarted: true)
            let log = supervisor.supervisorLog
            #expect(!log.contains("restarting mosquitto"))
            #expect(log.contains("unmounted \(sandbox.mountpoint)"))
            try FailureChecks.expectStoreIntact(sandbox, retained: ["alice/before-crash saved-before-crash", SeededStore.retainedLine])
        }

        /// SUPERVISOR_RESTART=on-failure restarts the broker on the same mount with backoff, and
        /// gives up with exit code 74 once the limit is reached within the window.
        @Test func brokerRestartedUntilLimit() throws {
            let sandbox = try Sandbox.seeded()
            defer { sandbox.remove() }
            let supervisor = try SupervisorUnderTest(sandbox: sandbox, environment: [
                "SUPERVISOR_RESTART": "on-failure", "SUPERVISOR_RESTART_LIMIT": "2", "SUPERVISOR_RESTART_WINDOW": "60",
            ])
            defer { supervisor.forceStop() }
            try supervisor.waitUntilRunning()
            let gocryptfs = try #require(supervisor.childPID(named: "gocryptfs"))
            try FailureChecks.publishAndSettle(supervisor, topic: "alice/before-crash", message: "saved-before-crash")
            let expected = ["alice/before-crash saved-before-crash", SeededStore.retainedLine]

            for restart in 1...2 {
                let broker = try #require(supervisor.childPID(named: "mosquitto"))
                kill(broker, SIGKILL)
                #expect(supervisor.waitForLog("restarted mosquitto (pid"), "restart \(restart)")
                #expect(waitForBrokerRunning(supervisor, times: restart + 1), "restart \(restart): the broker did not run again")
                #expect(supervisor.childPID(named: "gocryptfs") == gocryptfs, "the mount changed at restart \(restart)")
                #expect(try supervisor.retained(topic: "alice/#", count: 2).sorted() == expected.sorted())
            }
            let log = supervisor.supervisorLog
            #expect(log.contains("restarting mosquitto in 1000 ms"))
            #expect(log.contains("restarting mosquitto in 2000 ms"))

            let broker = try #require(supervisor.childPID(named: "mosquitto"))
            kill(broker, SIGKILL)
            FailureChecks.expectExit(supervisor, code: 74, errorLine: [
                "mosquitto failed 3 times within 60 s; giving up", "SUPERVISOR_RESTART_LIMIT is 2",
            ], singleErrorLine: false, brokerStarted: true)
            try FailureChecks.expectStoreIntact(sandbox, retained: expected)
        }

        /// A broker that fails before it reports running would fail the same way again, so
        /// on-failure does not restart it and the supervisor ends with the broker's code.
        @Test func rejectedOptionIsNotRestarted() throws {
            let sandbox = try Sandbox.seeded()
            defer { sandbox.remove() }
            let template = try String(contentsOfFile: sandbox.template, encoding: .utf8)
            try sandbox.write(template + "\nbogus_option 1\n", to: sandbox.template, mode: 0o644)
            let supervisor = try SupervisorUnderTest(sandbox: sandbox, environment: ["SUPERVISOR_RESTART": "on-failure"])
            defer { supervisor.forceStop() }
            FailureChecks.expectExit(supervisor, code: 3, errorLine: [
                "mosquitto rejected its configuration", "bogus_option",
            ], singleErrorLine: false, brokerStarted: true)
            #expect(supervisor.supervisorLog.contains("not restarting mosquitto: it ended before it reported running"))
            #expect(!supervisor.supervisorLog.contains("restarting mosquitto in"))
            try sandbox.write(template, to: sandbox.template, mode: 0o644)
            try FailureChecks.expectStoreIntact(sandbox, retained: [SeededStore.retainedLine])
        }

        /// gocryptfs killed, crashed or stopped under a running broker: the broker is killed at
        /// once, the dead mount is removed only after the broker is gone, and the exit code is 72.
        /// On SIGTERM gocryptfs unmounts itself, lazily while files are open; the underlying
        /// directory is root-owned with mode 0755, so the broker cannot save into it.
        @Test(arguments: [SIGKILL, SIGHUP, SIGTERM])
        func gocryptfsLostAtRunTime(signal: Int32) throws {
            let sandbox = try Sandbox.seeded()
            defer { sandbox.remove() }
            let supervisor = try SupervisorUnderTest(sandbox: sandbox)
            defer { supervisor.forceStop() }
            try supervisor.waitUntilRunning()
            try FailureChecks.publishAndSettle(supervisor, topic: "alice/before-loss", message: "saved-before-loss")

            let gocryptfs = try #require(supervisor.childPID(named: "gocryptfs"))
            kill(gocryptfs, signal)
            FailureChecks.expectExit(supervisor, code: 72, errorLine: [
                "gocryptfs (pid", "while the store on \(sandbox.mountpoint) was in use", "then start again",
            ], singleErrorLine: false, brokerStarted: true)
            let log = supervisor.supervisorLog
            let killed = try #require(log.range(of: "killed mosquitto (pid"))
            let stopped = try #require(log.range(of: "mosquitto stopped with signal SIGKILL"))
            #expect(killed.lowerBound < stopped.lowerBound)
            if let removed = log.range(of: "removed the dead mount") {
                #expect(stopped.lowerBound < removed.lowerBound, "the dead mount was removed while the broker ran")
            }
            try FailureChecks.expectStoreIntact(sandbox, retained: ["alice/before-loss saved-before-loss", SeededStore.retainedLine])
        }

        /// Waits until the broker has logged its running line `times` times in total.
        func waitForBrokerRunning(_ supervisor: SupervisorUnderTest, times: Int, timeout: TimeInterval = 20) -> Bool {
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                let count = supervisor.brokerLog.split(separator: "\n").filter {
                    $0.contains("mosquitto version") && $0.hasSuffix(" running")
                }.count
                if count >= times {
                    return true
                }
                usleep(20_000)
            }
            return false
        }
    }
}
