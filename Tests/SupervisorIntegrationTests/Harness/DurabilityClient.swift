import Foundation
import Glibc

/// A retained message with its exact payload bytes.
struct RetainedMessage: Hashable, CustomStringConvertible {
    let topic: String
    let payload: [UInt8]

    init(topic: String, payload: [UInt8]) {
        self.topic = topic
        self.payload = payload
    }

    init(topic: String, text: String) {
        self.init(topic: topic, payload: Array(text.utf8))
    }

    var description: String { "\(topic) = \(Hex.encode(payload))" }
}

/// One message of a publish storm and the time from its PUBACK to the SIGKILL.
struct StormMessage {
    let message: RetainedMessage
    /// Milliseconds from the PUBACK to the SIGKILL: negative when the PUBACK came after the
    /// kill, nil when none came.
    let acknowledgedBeforeKill: Double?
}

/// Runs tests/helpers/durability_client.py in a supervisor's mount and network namespaces,
/// outside its PID namespace, so a pid it kills is a host pid.
///
/// The script speaks raw MQTT 3.1.1 and takes the time of a PUBACK where it reads the packet,
/// so the time from acknowledgement to SIGKILL is measured to well under a millisecond.
struct DurabilityClient {
    static var script: String {
        Requirements.repositoryRoot.appendingPathComponent("tests/helpers/durability_client.py").path
    }

    let supervisor: SupervisorUnderTest
    var username = "alice"
    var clientID = "durability-\(getpid())"
    /// Connects with clean session off, so the broker keeps the client id in its database.
    var persistentSession = false

    init(_ supervisor: SupervisorUnderTest, clientID: String? = nil, persistentSession: Bool = false) {
        self.supervisor = supervisor
        if let clientID {
            self.clientID = clientID
        }
        self.persistentSession = persistentSession
    }

    /// Publishes the messages as retained QoS 1 (an empty payload clears the topic) and returns
    /// once every PUBACK arrived, with at most `inFlight` unacknowledged at a time.
    @discardableResult
    func publish(_ messages: [RetainedMessage], inFlight: Int = 1, timeout: TimeInterval = 300) throws -> Double {
        let lines = messages.map { "\($0.topic)\t\(Hex.encode($0.payload))\n" }.joined()
        let records = try run(["publish", "--in-flight", String(inFlight)], input: Data(lines.utf8), timeout: timeout)
        guard let seconds = records.first?["seconds"] as? Double else {
            throw HarnessError("durability_client publish printed no summary")
        }
        return seconds
    }

    /// Subscribes to `filter` and returns the retained messages the broker sends, by topic.
    func retained(filter: String = "alice/#", timeout: TimeInterval = 60) throws -> [String: [UInt8]] {
        let records = try run(["retained", "--filter", filter], timeout: timeout)
        var messages: [String: [UInt8]] = [:]
        for record in records {
            guard let topic = record["topic"] as? String, let payload = (record["payload"] as? String).flatMap(Hex.decode) else {
                throw HarnessError("durability_client retained printed an invalid record: \(record)")
            }
            messages[topic] = payload
        }
        return messages
    }

    /// Polls until the broker accepts a connection and acknowledges a subscription.
    func waitUntilServing(timeout: TimeInterval = 30) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            do {
                _ = try retained(filter: "alice/no-such-topic", timeout: 5)
                return
            } catch {
                if Date() > deadline {
                    throw HarnessError("the broker did not serve MQTT within \(Int(timeout)) s: \(error)")
                }
                usleep(50_000)
            }
        }
    }

    /// Publishes one retained QoS 1 message and sends SIGKILL to `pid` `delay` milliseconds
    /// after its PUBACK. Returns the measured milliseconds from PUBACK to SIGKILL.
    func killAfterAcknowledgement(of message: RetainedMessage, pid: pid_t, delay: Double) throws -> Double {
        let records = try run(["kill-after-ack", "--pid", String(pid), "--delay-ms", String(delay),
                               "--topic", message.topic, "--payload", Hex.encode(message.payload)])
        guard let measured = records.first?["ack_to_kill_ms"] as? Double else {
            throw HarnessError("durability_client kill-after-ack printed no measurement")
        }
        return measured
    }

    /// Publishes retained QoS 1 messages to `prefix`/0 ... `prefix`/(topics - 1) in turn without
    /// pause, and sends SIGKILL to `pid` `killAfter` seconds after the first one. Every payload
    /// starts with "`marker`-<index>-".
    func storm(pid: pid_t, killAfter: Double, prefix: String, topics: Int, marker: String,
               inFlight: Int = 8, seed: UInt64) throws -> [StormMessage] {
        let records = try run(["storm", "--pid", String(pid), "--kill-after", String(killAfter), "--prefix", prefix,
                               "--topics", String(topics), "--marker", marker, "--in-flight", String(inFlight),
                               "--seed", String(seed)], timeout: killAfter + 60)
        return try records.map { record in
            guard let topic = record["topic"] as? String, let payload = (record["payload"] as? String).flatMap(Hex.decode) else {
                throw HarnessError("durability_client storm printed an invalid record: \(record)")
            }
            return StormMessage(message: RetainedMessage(topic: topic, payload: payload),
                                acknowledgedBeforeKill: record["ack_before_kill_ms"] as? Double)
        }
    }

    /// Runs one subcommand and returns its JSON lines; a non-zero exit becomes an error with the script's message.
    private func run(_ subcommand: [String], input: Data? = nil, timeout: TimeInterval = 60) throws -> [[String: Any]] {
        var arguments = [Requirements.python, Self.script, "--username", username, "--client-id", clientID,
                         "--timeout", String(Int(timeout))]
        if persistentSession {
            arguments.append("--persistent-session")
        }
        let result = try supervisor.inNamespace(arguments + subcommand, input: input, timeout: timeout + 10)
        guard result.status == 0 else {
            throw HarnessError("durability_client \(subcommand[0]) exited with \(result.status): \(result.error)")
        }
        return try result.output.split(separator: "\n").map { line in
            guard let record = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                throw HarnessError("durability_client \(subcommand[0]) printed a line that is not a JSON object: \(line)")
            }
            return record
        }
    }
}

/// Lowercase hexadecimal text, the form payloads take between the tests and the script.
enum Hex {
    static func encode(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef")
        var text = ""
        text.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0F)])
        }
        return text
    }

    static func decode(_ text: String) -> [UInt8]? {
        let characters = Array(text.utf8)
        guard characters.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(characters.count / 2)
        var index = 0
        while index < characters.count {
            guard let high = value(of: characters[index]), let low = value(of: characters[index + 1]) else {
                return nil
            }
            bytes.append(high << 4 | low)
            index += 2
        }
        return bytes
    }

    private static func value(of digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
