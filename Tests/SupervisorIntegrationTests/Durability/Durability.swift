import Foundation
import Glibc
import Testing

extension Integration {
    /// Tests that try hard to lose a retained message or to leak a secret: graceful restarts,
    /// SIGKILL at a measured time after a PUBACK, and crash loops under a publish storm.
    /// `swift test --filter Durability` runs them all.
    @Suite struct Durability {}
}

/// What the durability tests share: the loss window they allow, seeds and comparisons.
enum DurabilityFixture {
    /// A message acknowledged at least this many milliseconds before a SIGKILL must survive it.
    /// Mosquitto 2.0 sends the PUBACK before it saves, and a save of a small database on
    /// gocryptfs takes a few milliseconds, so this leaves a margin for a loaded machine.
    static let safeDelay = 20.0

    /// Returns the seed of a test's random choices: DURABILITY_SEED, or a random one. Tests
    /// print it and name it in failures, so a failed run can be replayed.
    static func seed() -> UInt64 {
        if let text = ProcessInfo.processInfo.environment["DURABILITY_SEED"], let value = UInt64(text) {
            return value
        }
        return UInt64.random(in: 1...UInt64(UInt32.max))
    }

    /// Returns a passphrase that no other process on the machine uses, so a search of every
    /// process's command line and environment finds only this test's leaks.
    static func uniquePassphrase() -> String {
        "durability passphrase \(getpid())-\(UInt32.random(in: 0...UInt32.max)) \"q\" $x\\"
    }

    /// Reads the load average and CPU pressure (PSI) of the machine. Failures name them,
    /// because on a busy machine a broker that waits for a CPU saves later after its PUBACK.
    static func machineLoad() -> String {
        func firstLine(_ path: String) -> String {
            let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? "unknown"
            return text.split(separator: "\n").first.map(String.init) ?? text
        }
        return "load average \(firstLine("/proc/loadavg")); CPU pressure \(firstLine("/proc/pressure/cpu"))"
    }

    /// Describes how `actual` differs from `expected`, one line per topic, at most `limit` lines.
    static func differences(expected: [String: [UInt8]], actual: [String: [UInt8]], limit: Int = 10) -> [String] {
        var lines: [String] = []
        for topic in expected.keys.sorted() {
            guard let payload = actual[topic] else {
                lines.append("missing \(topic)")
                continue
            }
            if payload != expected[topic] {
                lines.append("\(topic) has payload \(Hex.encode(payload)), expected \(Hex.encode(expected[topic]!))")
            }
        }
        for topic in actual.keys.sorted() where expected[topic] == nil {
            lines.append("unexpected \(topic) = \(Hex.encode(actual[topic]!))")
        }
        if lines.count > limit {
            return Array(lines.prefix(limit)) + ["... and \(lines.count - limit) more"]
        }
        return lines
    }

    /// `count` bytes from the generator, which include NUL, newline and bytes above 0x7F, so a
    /// payload survives only if every layer keeps it byte for byte.
    static func binaryBytes(_ count: Int, using generator: inout SeededGenerator) -> [UInt8] {
        (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }
}
