import Foundation
import Glibc

/// A retained message as a reader sees it.
struct RetainedValue: Equatable, CustomStringConvertible {
    let payload: String
    let qos: Int
    let properties: [String: Any]

    static func == (lhs: RetainedValue, rhs: RetainedValue) -> Bool {
        lhs.payload == rhs.payload && lhs.qos == rhs.qos
    }

    var text: String { String(decoding: Hex.decode(payload) ?? [], as: UTF8.self) }
    var description: String { "\(text) (QoS \(qos))" }
}

/// Runs bench/journal/journal_mqtt.py in a supervisor's mount and network namespaces, outside its
/// PID namespace, so that a pid it kills is a host pid.
struct JournalClient {
    static var script: String {
        Requirements.repositoryRoot.appendingPathComponent("bench/journal/journal_mqtt.py").path
    }

    let supervisor: SupervisorUnderTest
    var username: String? = "alice"
    var version = 4
    var clientID = "journal-test-\(getpid())"

    init(_ supervisor: SupervisorUnderTest, username: String? = "alice", version: Int = 4, clientID: String? = nil) {
        self.supervisor = supervisor
        self.username = username
        self.version = version
        if let clientID {
            self.clientID = clientID
        }
    }

    /// Runs one subcommand and returns its JSON output.
    @discardableResult
    func run(_ arguments: [String], input: String? = nil, timeout: TimeInterval = 60) throws -> Any {
        var command = [Requirements.python, Self.script, "--client-id", clientID, "--version", String(version)]
        if let username {
            command += ["--username", username]
        }
        let result = try supervisor.inNamespace(command + arguments, input: input.map { Data($0.utf8) }, timeout: timeout)
        guard result.status == 0, let data = result.output.split(separator: "\n").last.map({ Data($0.utf8) }),
              let value = try? JSONSerialization.jsonObject(with: data) else {
            throw HarnessError("journal_mqtt.py \(arguments.joined(separator: " ")) failed with \(result.status): \(result.error)")
        }
        return value
    }

    /// Publishes one retained message and returns the acknowledgement's reason code.
    @discardableResult
    func publish(_ topic: String, _ text: String, qos: Int = 1, extra: [String] = []) throws -> Int {
        let output = try run(["publish", "--topic", topic, "--payload", Hex.encode(Array(text.utf8)), "--qos", String(qos)] + extra)
        return (output as? [String: Any])?["reason"] as? Int ?? -1
    }

    /// The retained messages under the filters, by topic.
    func retained(_ filters: [String] = ["#"], quiet: Double = 0.5) throws -> [String: RetainedValue] {
        let output = try run(["retained", "--quiet", String(quiet)] + filters.flatMap { ["--filter", $0] })
        guard let messages = output as? [String: [String: Any]] else {
            throw HarnessError("journal_mqtt.py retained printed no object")
        }
        return messages.mapValues {
            RetainedValue(payload: $0["payload"] as? String ?? "", qos: $0["qos"] as? Int ?? -1,
                          properties: $0["properties"] as? [String: Any] ?? [:])
        }
    }
}

/// Starting and reading a supervisor in journal mode.
enum JournalMode {
    static let environment = ["SUPERVISOR_DURABILITY": "journal"]

    /// Starts a supervisor in journal mode on the sandbox and waits until the journal's witness
    /// session is subscribed, so that QoS 2 retained publishes are accepted.
    static func start(_ sandbox: Sandbox, name: String, environment extra: [String: String] = [:],
                      template: String? = nil) throws -> SupervisorUnderTest {
        if let template {
            try sandbox.write(template, to: sandbox.template, mode: 0o644)
        }
        let supervisor = try SupervisorUnderTest(sandbox: sandbox, environment: environment.merging(extra) { $1 }, name: name)
        try supervisor.waitUntilRunning()
        guard supervisor.waitForLog("journal witness session is subscribed", timeout: 20) else {
            supervisor.forceStop()
            throw HarnessError("the journal witness did not subscribe; broker log:\n\(supervisor.brokerLog)")
        }
        return supervisor
    }

    /// The plugin's status file of the sandbox, parsed.
    static func status(_ sandbox: Sandbox) -> [String: String] {
        let path = "\(sandbox.root)/run/journal-status/status"
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        var values: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1)
            if parts.count == 2 {
                values[String(parts[0])] = String(parts[1])
            }
        }
        return values
    }

    /// Waits until the plugin's status shows `name` at `value` or more (it is rewritten every second).
    @discardableResult
    static func waitForStatus(_ sandbox: Sandbox, _ name: String, atLeast value: Int, timeout: TimeInterval = 10) -> Int? {
        let deadline = Date().addingTimeInterval(timeout)
        var current: Int?
        while Date() < deadline {
            current = status(sandbox)[name].flatMap { Int($0) }
            if let current, current >= value {
                return current
            }
            usleep(100_000)
        }
        return current
    }

    /// The shipped template with extra lines at its end.
    static func template(adding lines: String) throws -> String {
        let shipped = try String(contentsOf: Requirements.repositoryRoot.appendingPathComponent("mosquitto.conf.template"), encoding: .utf8)
        return shipped + "\n" + lines + "\n"
    }
}
