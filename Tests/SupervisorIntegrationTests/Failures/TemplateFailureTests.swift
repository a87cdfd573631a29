import Foundation
import Glibc
import Testing

extension Integration {
    @Suite struct TemplateFailures {
        /// A change to the shipped template or the environment, and what the error line must name.
        struct TemplateFault: Sendable, CustomTestStringConvertible {
            let testDescription: String
            var replacements: [(String, String)] = []
            var appendedLine: String?
            var environment: [String: String] = [:]
            let errorLine: [String]
        }

        static let faults = [
            TemplateFault(testDescription: "undefined variable", appendedLine: "max_connections ${UNDEFINED_LIMIT}",
                          errorLine: ["variable UNDEFINED_LIMIT is not defined", "${UNDEFINED_LIMIT:-default}"]),
            TemplateFault(testDescription: "value with a newline",
                          environment: ["MOSQUITTO_BIND_ADDRESS": "127.0.0.1\nlistener 1884"],
                          errorLine: ["mosquitto.conf.template line", "the value of MOSQUITTO_BIND_ADDRESS contains control character 0xa",
                                      "remove newlines"]),
            TemplateFault(testDescription: "persistence off", replacements: [("persistence true", "persistence false")],
                          errorLine: ["persistence must be true (found false)", "set `persistence true`"]),
            TemplateFault(testDescription: "persistence off the mount",
                          replacements: [("persistence_location ${SUPERVISOR_MOUNTPOINT}/", "persistence_location /var/lib/elsewhere/")],
                          errorLine: ["persistence_location must be the mountpoint", "(found /var/lib/elsewhere/)",
                                      "persistence_location ${SUPERVISOR_MOUNTPOINT}/"]),
            TemplateFault(testDescription: "autosave off", replacements: [("autosave_on_changes true", "autosave_on_changes false")],
                          errorLine: ["autosave_on_changes must be true (found false)"]),
            TemplateFault(testDescription: "autosave not a number", environment: ["MOSQUITTO_AUTOSAVE_INTERVAL": "abc"],
                          errorLine: ["autosave_interval must be a positive whole number (found abc)", "turns autosave off"]),
            TemplateFault(testDescription: "autosave zero", environment: ["MOSQUITTO_AUTOSAVE_INTERVAL": "0"],
                          errorLine: ["autosave_interval must be a positive whole number (found 0)"]),
            TemplateFault(testDescription: "no listener",
                          replacements: [("listener ${MOSQUITTO_PORT:-1883} ${MOSQUITTO_BIND_ADDRESS:-}", ""),
                                         ("listener ${MOSQUITTO_WEBSOCKETS_PORT:-9001} ${MOSQUITTO_BIND_ADDRESS:-}", "")],
                          errorLine: ["there is no listener line", "listener 1883"]),
        ]

        /// Each fault is found while the template is rendered, before the store is touched.
        @Test(arguments: faults)
        func templateRejected(_ fault: TemplateFault) throws {
            let sandbox = try Sandbox.seeded()
            defer { sandbox.remove() }
            let shipped = try String(contentsOfFile: sandbox.template, encoding: .utf8)
            var text = shipped
            for (old, new) in fault.replacements {
                #expect(text.contains(old), "the shipped template no longer contains \(old)")
                text = text.replacingOccurrences(of: old, with: new)
            }
            if let line = fault.appendedLine {
                text += line + "\n"
            }
            try sandbox.write(text, to: sandbox.template, mode: 0o644)
            let before = CipherdirSnapshot(sandbox)

            let supervisor = try SupervisorUnderTest(sandbox: sandbox, environment: fault.environment)
            defer { supervisor.forceStop() }
            FailureChecks.expectExit(supervisor, code: 70, errorLine: [sandbox.template] + fault.errorLine)
            #expect(CipherdirSnapshot(sandbox) == before)
            #expect(!FileManager.default.fileExists(atPath: sandbox.config), "a rejected configuration was written")

            try sandbox.write(shipped, to: sandbox.template, mode: 0o644)
            try FailureChecks.expectStoreIntact(sandbox)
        }

        @Test func templateMissing() throws {
            let sandbox = try Sandbox.seeded()
            defer { sandbox.remove() }
            let missing = sandbox.root + "/etc/no-such.template"

            let supervisor = try SupervisorUnderTest(sandbox: sandbox, environment: ["SUPERVISOR_TEMPLATE": missing])
            defer { supervisor.forceStop() }
            FailureChecks.expectExit(supervisor, code: 70, errorLine: [
                "cannot read the template \(missing)", "No such file or directory", "SUPERVISOR_TEMPLATE",
            ])
            try FailureChecks.expectStoreIntact(sandbox)
        }

        /// Mosquitto itself rejects an option the supervisor does not check: it exits with 3, and
        /// the error line carries its own message and the template line to fix.
        @Test func optionRejectedByBroker() throws {
            let sandbox = try Sandbox.seeded()
            defer { sandbox.remove() }
            let shipped = try String(contentsOfFile: sandbox.template, encoding: .utf8)
            let text = shipped + (shipped.hasSuffix("\n") ? "" : "\n") + "bogus_option 1\n"
            let line = text.split(separator: "\n", omittingEmptySubsequences: false).count - 1
            try sandbox.write(text, to: sandbox.template, mode: 0o644)

            let supervisor = try SupervisorUnderTest(sandbox: sandbox)
            defer { supervisor.forceStop() }
            FailureChecks.expectExit(supervisor, code: 3, errorLine: [
                "mosquitto rejected its configuration",
                "Error: Unknown configuration variable \"bogus_option\"",
                "fix or remove line \(line) of the template \(sandbox.template)",
            ], brokerStarted: true)
            #expect(supervisor.supervisorLog.contains("unmounted \(sandbox.mountpoint)"))

            try sandbox.write(shipped, to: sandbox.template, mode: 0o644)
            try FailureChecks.expectStoreIntact(sandbox)
        }
    }
}
