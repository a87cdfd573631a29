import Foundation
import Glibc
import Testing

/// The confidentiality checks that run after every durability scenario.
///
/// At rest, no topic, payload, client id, passphrase or Mosquitto database header may appear in
/// any byte under the cipherdir or under the mountpoint's underlying directory. While the store
/// runs, the passphrase may appear in no process's command line or environment. The logs and
/// the rendered configuration must never contain the passphrase.
struct ConfidentialityAudit {
    let sandbox: Sandbox
    /// Everything that must stay encrypted, the passphrase included.
    private(set) var needles: Set<PlaintextScanner.Needle>

    init(sandbox: Sandbox) {
        self.sandbox = sandbox
        needles = [PlaintextScanner.Needle(name: "the passphrase", bytes: Array(sandbox.passphrase.utf8))]
    }

    /// Adds the topics and non-empty payloads of `messages`.
    mutating func add(_ messages: [RetainedMessage]) {
        for message in messages {
            needles.insert(PlaintextScanner.Needle(message.topic))
            if !message.payload.isEmpty {
                needles.insert(PlaintextScanner.Needle(name: "the payload of \(message.topic)", bytes: message.payload))
            }
        }
    }

    mutating func add(clientID: String) {
        needles.insert(PlaintextScanner.Needle(clientID))
    }

    /// While `supervisor` runs: the passphrase is in no command line and no environment of any
    /// process on the host, the broker's included.
    func checkProcesses(of supervisor: SupervisorUnderTest, sourceLocation: SourceLocation = #_sourceLocation) {
        let passphrase = sandbox.passphrase
        #expect(PlaintextScanner.processesWithSecretInCommandLine(passphrase) == [],
                "the passphrase is in the command line of these pids", sourceLocation: sourceLocation)
        #expect(PlaintextScanner.processesWithSecretInEnvironment(passphrase) == [],
                "the passphrase is in the environment of these pids", sourceLocation: sourceLocation)

        // The host-wide search above reads the broker's environment only if the broker runs.
        guard let broker = supervisor.childPID(named: "mosquitto") else {
            Issue.record("no mosquitto runs under the supervisor, so its environment was not checked", sourceLocation: sourceLocation)
            return
        }
        let environment = FileManager.default.contents(atPath: "/proc/\(broker)/environ") ?? Data()
        #expect(!environment.isEmpty, "cannot read the environment of mosquitto (pid \(broker))", sourceLocation: sourceLocation)
        #expect(!PlaintextScanner.contains(environment, Array(passphrase.utf8)),
                "the passphrase is in the environment of mosquitto (pid \(broker))", sourceLocation: sourceLocation)
    }

    /// While the store is mounted: the database read through the mount contains the header and
    /// each message of `sample`. This proves that the needles are the bytes the broker stores,
    /// so the scan at rest could find them if they leaked.
    func checkPlaintextVisibleThroughMount(sample: [RetainedMessage], sourceLocation: SourceLocation = #_sourceLocation) {
        guard sandbox.isMounted else {
            Issue.record("the store is not mounted on \(sandbox.mountpoint), so the mount cannot be read", sourceLocation: sourceLocation)
            return
        }
        let needles = sample.flatMap { [PlaintextScanner.Needle($0.topic), PlaintextScanner.Needle(name: "the payload of \($0.topic)", bytes: $0.payload)] }
        let found = Set(PlaintextScanner.scan([sandbox.mountpoint], for: needles + [.databaseHeader]).map(\.needle))
        for needle in needles + [.databaseHeader] {
            #expect(found.contains(needle.name), "\(needle.name) is not in the plaintext database under the mount", sourceLocation: sourceLocation)
        }
    }

    /// After the supervisor exited: nothing secret under the cipherdir or the mountpoint's
    /// underlying directory, and no passphrase in the logs or the rendered configuration.
    ///
    /// When the supervisor itself was killed, a dead mount still covers the mountpoint and hides
    /// the underlying directory. Then only the cipherdir is scanned, and the caller scans the
    /// underlying directory after the next start has removed the dead mount.
    func checkAtRest(deadMountExpected: Bool = false, sourceLocation: SourceLocation = #_sourceLocation) {
        let directories: [String]
        if deadMountExpected {
            #expect(sandbox.isMounted, "the killed supervisor left no mount on \(sandbox.mountpoint)", sourceLocation: sourceLocation)
            directories = [sandbox.cipherdir]
        } else {
            #expect(!sandbox.isMounted, "the store is still mounted on \(sandbox.mountpoint)", sourceLocation: sourceLocation)
            directories = [sandbox.cipherdir, sandbox.mountpoint]
        }
        let scanned = PlaintextScanner.regularFiles(under: directories)
        #expect(scanned.contains(sandbox.cipherdir + "/gocryptfs.conf"), "the scan did not reach the cipherdir", sourceLocation: sourceLocation)
        let findings = PlaintextScanner.scan(directories, for: Array(needles) + [.databaseHeader])
        #expect(findings.isEmpty, "plaintext at rest: \(findings.prefix(20))", sourceLocation: sourceLocation)

        let passphrase = PlaintextScanner.Needle(name: "the passphrase", bytes: Array(sandbox.passphrase.utf8))
        let outputs = [sandbox.logs, sandbox.config]
        #expect(PlaintextScanner.regularFiles(under: outputs).count >= 3, "the logs or the rendered configuration are missing",
                sourceLocation: sourceLocation)
        let leaks = PlaintextScanner.scan(outputs, for: [passphrase])
        #expect(leaks.isEmpty, "passphrase leaked: \(leaks)", sourceLocation: sourceLocation)
    }
}
