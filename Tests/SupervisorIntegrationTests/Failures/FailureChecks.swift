import Foundation
import Glibc
import Testing

/// The checks that every failure case repeats: the exit code, the error line, whether a broker
/// started, the mountpoint's underlying directory, the passphrase in the logs, and whether the
/// store still opens and contains what it contained before.
enum FailureChecks {
    /// Waits for the supervisor to exit and checks how it failed.
    ///
    /// - Parameters:
    ///   - errorLine: fragments that one error line must all contain: the value at fault and the fix.
    ///   - singleErrorLine: the error line must be the only one, as for every startup failure.
    ///   - brokerStarted: whether the broker was allowed to start before the failure.
    ///   - mountpointEntries: what the test itself put in the mountpoint's underlying directory.
    ///   - secrets: values besides the sandbox's passphrase that no log may contain.
    static func expectExit(
        _ supervisor: SupervisorUnderTest, code: Int32, errorLine fragments: [String],
        singleErrorLine: Bool = true, brokerStarted: Bool = false, mountpointEntries: [String] = [],
        secrets: [String] = [], timeout: TimeInterval = 30, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let exitCode = supervisor.waitForExit(timeout: timeout)
        let log = supervisor.supervisorLog
        #expect(exitCode == code, "exit code; supervisor log:\n\(log)", sourceLocation: sourceLocation)

        let errors = errorLines(of: supervisor)
        if singleErrorLine {
            #expect(errors.count == 1, "expected one error line, got: \(errors)", sourceLocation: sourceLocation)
        }
        let matching = errors.first { line in fragments.allSatisfy { line.contains($0) } }
        let missing = fragments.filter { !(errors.last ?? "").contains($0) }
        #expect(matching != nil, "no error line contains all of \(fragments); the last one lacks \(missing); error lines: \(errors)",
                sourceLocation: sourceLocation)

        if !brokerStarted {
            #expect(!log.contains("start broker:"), "the broker was started; log:\n\(log)", sourceLocation: sourceLocation)
            #expect(!supervisor.brokerLog.contains("mosquitto: "), "the broker wrote output:\n\(supervisor.brokerLog)",
                    sourceLocation: sourceLocation)
        }
        expectNothingLeftOnMountpoint(supervisor.sandbox, entries: mountpointEntries, sourceLocation: sourceLocation)
        expectNoSecret(in: supervisor, secrets: secrets, sourceLocation: sourceLocation)
    }

    /// Returns the supervisor's error lines without timestamp and prefix, including the
    /// `supervisor: ` lines printed for invalid settings before the supervisor starts.
    static func errorLines(of supervisor: SupervisorUnderTest) -> [String] {
        supervisor.supervisorLog.split(separator: "\n").compactMap { line in
            if let range = line.range(of: " supervisor error: ") {
                return String(line[range.upperBound...])
            }
            if line.hasPrefix("supervisor: ") {
                return String(line.dropFirst("supervisor: ".count))
            }
            return nil
        }
    }

    /// Checks that no mount is left on the mountpoint and that its underlying directory contains
    /// only `entries`.
    static func expectNothingLeftOnMountpoint(_ sandbox: Sandbox, entries: [String] = [],
                                              sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(!sandbox.isMounted, "a mount is left on \(sandbox.mountpoint)", sourceLocation: sourceLocation)
        #expect(sandbox.filesUnderMountpoint().sorted() == entries.sorted(),
                "files under the mountpoint's underlying directory", sourceLocation: sourceLocation)
    }

    /// Checks that neither log contains the sandbox's passphrase or any of `secrets`.
    static func expectNoSecret(in supervisor: SupervisorUnderTest, secrets: [String] = [],
                               sourceLocation: SourceLocation = #_sourceLocation) {
        for secret in [supervisor.sandbox.passphrase] + secrets where !secret.isEmpty {
            #expect(!supervisor.supervisorLog.contains(secret), "a passphrase is in the supervisor's log",
                    sourceLocation: sourceLocation)
            #expect(!supervisor.brokerLog.contains(secret), "a passphrase is in the broker's output",
                    sourceLocation: sourceLocation)
        }
    }

    /// Starts the supervisor again as an operator would after fixing the fault, and checks that
    /// the store opens with the right passphrase, contains `retained` (the seeded message by
    /// default), stops cleanly and leaves no plaintext behind.
    static func expectStoreIntact(
        _ sandbox: Sandbox, retained: [String] = [SeededStore.retainedLine], environment: [String: String] = [:],
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let supervisor = try SupervisorUnderTest(sandbox: sandbox, environment: environment, name: "clean-start")
        defer { supervisor.forceStop() }
        try supervisor.waitUntilRunning()
        #expect(supervisor.supervisorLog.contains("found the gocryptfs store in \(sandbox.cipherdir)"),
                sourceLocation: sourceLocation)
        let found = retained.isEmpty
            ? try supervisor.allRetained(topic: "alice/#")
            : try supervisor.retained(topic: "alice/#", count: retained.count)
        #expect(found.sorted() == retained.sorted(), "retained messages after a clean start", sourceLocation: sourceLocation)
        #expect(supervisor.stop() == 0, "clean stop; log:\n\(supervisor.supervisorLog)", sourceLocation: sourceLocation)
        expectNothingLeftOnMountpoint(sandbox, sourceLocation: sourceLocation)
        expectNoSecret(in: supervisor, sourceLocation: sourceLocation)

        // Each retained line is "topic payload"; both parts must stay encrypted.
        let needles = [sandbox.passphrase] + (retained + [SeededStore.retainedLine]).flatMap {
            $0.split(separator: " ", maxSplits: 1).map(String.init)
        }
        let findings = PlaintextScanner.scan([sandbox.cipherdir, sandbox.mountpoint], for: needles)
        #expect(findings.isEmpty, "plaintext found: \(findings)", sourceLocation: sourceLocation)
    }

    /// Publishes a retained message to a running supervisor and waits until the broker has had
    /// time to save it (autosave after every change takes a few milliseconds on gocryptfs).
    static func publishAndSettle(_ supervisor: SupervisorUnderTest, topic: String, message: String,
                                 sourceLocation: SourceLocation = #_sourceLocation) throws {
        let published = try supervisor.publish(topic: topic, message: message)
        #expect(published.status == 0, "mosquitto_pub failed: \(published.error)", sourceLocation: sourceLocation)
        Thread.sleep(forTimeInterval: 0.3)
    }
}

extension SupervisorUnderTest {
    /// Collects every retained message under `topic` for `seconds`, as "topic payload" lines.
    func allRetained(topic: String, user: String = "alice", seconds: Int = 1) throws -> [String] {
        let result = try inNamespace(["mosquitto_sub", "-h", "127.0.0.1", "-p", "1883", "-u", user, "-t", topic, "-v",
                                      "-W", String(seconds), "--retained-only"],
                                     timeout: TimeInterval(seconds + 10))
        return result.output.split(separator: "\n").map(String.init)
    }
}
