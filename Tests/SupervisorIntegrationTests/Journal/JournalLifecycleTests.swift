import Foundation
import Glibc
import Testing

extension Integration {
    @Suite struct JournalLifecycle {
        @Test func retainedMessagesSurviveStopAndStart() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            let first = try JournalMode.start(sandbox, name: "first")
            defer { first.forceStop() }

            let config = try String(contentsOfFile: sandbox.config, encoding: .utf8)
            #expect(config.contains("plugin \(URL(fileURLWithPath: Requirements.supervisorBinary).deletingLastPathComponent().path)/libmosquitto_journal.so"))
            #expect(config.contains("plugin_opt_journal_dir \(sandbox.mountpoint)/journal"))
            #expect(config.hasSuffix("autosave_on_changes false\nautosave_interval 60\n"))

            let client = JournalClient(first, version: 5)
            #expect(try client.publish("alice/door", "front-door-OPEN-4711", qos: 1) == 0)
            #expect(try client.publish("alice/window", "window-TILTED-0815", qos: 2) == 0)
            #expect(try client.publish("alice/typed", "typed-PAYLOAD-2718", qos: 1,
                                       extra: ["--content-type", "text/x-journal", "--user-property", "origin=journal-test"]) == 0)

            // The plugin rewrites its status file once a second.
            #expect(JournalMode.waitForStatus(sandbox, "records_written", atLeast: 4) ?? 0 >= 4)
            let status = try first.status(["--json"])
            #expect(status.status == 0, "status failed: \(status.output)")
            let health = try #require(try JSONSerialization.jsonObject(with: Data(status.output.utf8)) as? [String: Any])
            #expect(health["durability"] as? String == "journal")
            #expect((health["journalBytes"] as? Int ?? 0) > 0)
            let checks = health["checks"] as? [[String: Any]] ?? []
            let journalCheck = try #require(checks.first { $0["name"] as? String == "journal" })
            #expect(journalCheck["healthy"] as? Bool == true, "journal check: \(journalCheck)")
            #expect((health["journalLastSyncAgeSeconds"] as? Double ?? 99) < 30)
            let text = try first.status()
            #expect(text.output.contains("\ndurability: journal\n"), "status: \(text.output)")
            #expect(text.output.contains("ok   journal: journal "), "status: \(text.output)")

            // A reload keeps the plugin loaded and journaling.
            first.signal(SIGHUP)
            #expect(first.waitForLog("Reloading config"))
            #expect(try client.publish("alice/after-reload", "after-RELOAD-3141", qos: 1) == 0)
            #expect(JournalMode.waitForStatus(sandbox, "records_written", atLeast: 5) ?? 0 >= 5)

            #expect(first.stop() == 0)
            #expect(first.supervisorLog.contains("the broker saved"))

            let second = try JournalMode.start(sandbox, name: "second")
            defer { second.forceStop() }
            let retained = try JournalClient(second, version: 5).retained(["alice/#"])
            #expect(retained["alice/door"] == RetainedValue(payload: Hex.encode(Array("front-door-OPEN-4711".utf8)), qos: 1, properties: [:]))
            #expect(retained["alice/window"] == RetainedValue(payload: Hex.encode(Array("window-TILTED-0815".utf8)), qos: 2, properties: [:]))
            #expect(retained["alice/after-reload"]?.text == "after-RELOAD-3141")
            let typed = try #require(retained["alice/typed"])
            #expect(typed.text == "typed-PAYLOAD-2718")
            #expect(typed.properties["content_type"] as? String == "text/x-journal")
            #expect((typed.properties["user"] as? [[String]]) == [["origin", "journal-test"]])
            #expect(second.stop() == 0)

            let findings = PlaintextScanner.scan([sandbox.cipherdir, sandbox.mountpoint],
                                                 for: ["alice/door", "front-door-OPEN-4711", "window-TILTED-0815", "typed-PAYLOAD-2718",
                                                       "text/x-journal", "journal-witness", sandbox.passphrase])
            #expect(findings.isEmpty, "plaintext found: \(findings)")
        }

        @Test func perListenerSettingsIsRefused() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            let template = try JournalMode.template(adding: "").replacingOccurrences(
                of: "per_listener_settings false", with: "per_listener_settings true")
            try sandbox.write(template, to: sandbox.template, mode: 0o644)

            let rendered = try Shell.run([Requirements.supervisorBinary, "render"],
                                         environment: sandbox.environment(JournalMode.environment))
            #expect(rendered.status == 70)
            #expect(rendered.error.contains("per_listener_settings true is not supported in journal mode"), "stderr: \(rendered.error)")

            let autosave = try Shell.run([Requirements.supervisorBinary, "render"], environment: sandbox.environment())
            #expect(autosave.status == 0, "autosave mode must keep accepting this template: \(autosave.error)")
        }

        @Test func missingPluginIsAnEnvironmentError() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            let supervisor = try SupervisorUnderTest(
                sandbox: sandbox, environment: JournalMode.environment.merging(["SUPERVISOR_JOURNAL_PLUGIN": "/nonexistent/libmosquitto_journal.so"]) { $1 },
                name: "missing-plugin")
            defer { supervisor.forceStop() }
            #expect(supervisor.waitForExit(timeout: 60) == 66)
            #expect(supervisor.supervisorLog.contains("the journal plugin /nonexistent/libmosquitto_journal.so does not exist"),
                    "log: \(supervisor.supervisorLog)")
            #expect(!sandbox.isMounted)
        }

        @Test func autosaveModeRefusesUncleanJournal() throws {
            let sandbox = try Sandbox()
            defer { sandbox.remove() }
            let journal = try JournalMode.start(sandbox, name: "journal")
            defer { journal.forceStop() }
            #expect(try JournalClient(journal).publish("alice/only-in-journal", "journal-ONLY-1234") == 0)
            let broker = try #require(journal.childPID(named: "mosquitto"))
            kill(broker, SIGKILL)
            #expect(journal.waitForExit() == 128 + SIGKILL)

            let refused = try SupervisorUnderTest(sandbox: sandbox, name: "autosave-refused")
            defer { refused.forceStop() }
            #expect(refused.waitForExit(timeout: 60) == 71)
            #expect(refused.supervisorLog.contains("may hold retained messages that"), "log: \(refused.supervisorLog)")
            #expect(!sandbox.isMounted)

            let replay = try JournalMode.start(sandbox, name: "journal-again")
            defer { replay.forceStop() }
            #expect(try JournalClient(replay).retained(["alice/#"])["alice/only-in-journal"]?.text == "journal-ONLY-1234")
            #expect(replay.stop() == 0)

            let autosave = try SupervisorUnderTest(sandbox: sandbox, name: "autosave")
            defer { autosave.forceStop() }
            try autosave.waitUntilRunning()
            #expect(autosave.supervisorLog.contains("moved the journal of an earlier journal-mode run"))
            #expect(try JournalClient(autosave).retained(["alice/#"])["alice/only-in-journal"]?.text == "journal-ONLY-1234")
            #expect(autosave.stop() == 0)
        }
    }
}
