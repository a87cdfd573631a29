import Foundation
import Glibc
import Testing

extension Integration.Durability {
    /// Measures the loss window: SIGKILL of the broker at increasing delays after the PUBACK of
    /// a retained QoS 1 message, on databases of several sizes, and prints the survival counts
    /// as a Markdown table. It takes about half an hour on two cores, so it runs only on request:
    ///
    ///     DURABILITY_MEASURE_WINDOW=1 swift test --filter LossWindow
    ///
    /// DURABILITY_WINDOW_TRIALS sets the kills per delay (default 20). The broker restarts under
    /// `--restart on-failure` on the same mount, which gives the same survival as a full restart
    /// (the save either finished before the kill or not) in less time.
    @Suite(.enabled(if: LossWindowRequest.isPresent, "set DURABILITY_MEASURE_WINDOW=1 to measure the loss window"))
    struct LossWindow {
        static var trials: Int {
            ProcessInfo.processInfo.environment["DURABILITY_WINDOW_TRIALS"].flatMap { Int($0) } ?? 20
        }

        /// Milliseconds from PUBACK to SIGKILL.
        static let delays: [Double] = [0, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 40, 50, 60, 80, 100]

        static let payloadSize = 64

        @Test(arguments: [0, 1000, 10_000])
        func survivalByDelay(retainedMessages: Int) throws {
            let sandbox = try Sandbox(passphrase: DurabilityFixture.uniquePassphrase())
            defer { sandbox.remove() }
            if retainedMessages > 0 {
                try Self.seed(sandbox, count: retainedMessages)
            }
            let environment = ["SUPERVISOR_RESTART": "on-failure", "SUPERVISOR_RESTART_LIMIT": "1000",
                               "SUPERVISOR_RESTART_WINDOW": "0.001"]
            let supervisor = try SupervisorUnderTest(sandbox: sandbox, environment: environment, name: "measure")
            defer { supervisor.forceStop() }
            try supervisor.waitUntilRunning()
            let client = DurabilityClient(supervisor)

            // With one message in flight, the time per PUBACK is about one save of the database.
            let probes = (0..<20).map { RetainedMessage(topic: "alice/window", text: "save-probe-\($0)") }
            let probeSeconds = try client.publish(probes)
            let databaseBytes = Self.fileSize("\(sandbox.mountpoint)/mosquitto.db")
            print("loss window: \(retainedMessages) retained messages, database \(databaseBytes) bytes, "
                  + String(format: "%.1f ms per acknowledged publish; ", probeSeconds / Double(probes.count) * 1000)
                  + "\(Self.machineDescription())")
            print("| retained messages | database bytes | PUBACK to SIGKILL (ms) | survived | measured delay (ms, median / max) |")
            print("|---:|---:|---:|---:|---:|")

            var broker = try #require(supervisor.childPID(named: "mosquitto"))
            for delay in Self.delays {
                var survived = 0
                var measured: [Double] = []
                for trial in 0..<Self.trials {
                    let message = RetainedMessage(topic: "alice/window", text: "window-\(delay)-\(trial)-\(UInt32.random(in: 0...UInt32.max))")
                    do {
                        measured.append(try client.killAfterAcknowledgement(of: message, pid: broker, delay: delay))
                        broker = try Self.waitForRestart(of: supervisor, replacing: broker)
                    } catch {
                        // The trial does not count. The log shows whether the broker restarted unexpectedly.
                        Issue.record("trial \(trial) at \(delay) ms failed: \(error); the supervisor log ends with:\n\(supervisor.supervisorLog.suffix(2000))")
                        try client.waitUntilServing()
                        broker = try #require(supervisor.childPID(named: "mosquitto"))
                        continue
                    }
                    try client.waitUntilServing()
                    if try client.retained(filter: message.topic)[message.topic] == message.payload {
                        survived += 1
                    }
                }
                let sorted = measured.sorted()
                let median = sorted.isEmpty ? 0 : sorted[sorted.count / 2]
                print("| \(retainedMessages) | \(databaseBytes) | \(Int(delay)) | \(survived)/\(measured.count) | "
                      + String(format: "%.3f / %.3f |", median, sorted.last ?? 0))
            }
            #expect(supervisor.stop() == 0, "log:\n\(supervisor.supervisorLog)")
        }

        /// Fills the store with `count` retained messages without a save per message
        /// (autosave_interval 1000000), then stops, which saves once.
        static func seed(_ sandbox: Sandbox, count: Int) throws {
            let seeder = try SupervisorUnderTest(sandbox: sandbox, environment: ["MOSQUITTO_AUTOSAVE_INTERVAL": "1000000"], name: "seed")
            defer { seeder.forceStop() }
            try seeder.waitUntilRunning()
            let messages = (0..<count).map { index in
                let text = "seed-\(index)-" + String(repeating: "x", count: payloadSize)
                return RetainedMessage(topic: "alice/seed/\(index)", payload: Array(text.utf8.prefix(payloadSize)))
            }
            try DurabilityClient(seeder).publish(messages, inFlight: 100)
            guard seeder.stop() == 0, seeder.supervisorLog.contains("the broker saved") else {
                throw HarnessError("seeding \(count) messages did not end with a saved database; log:\n\(seeder.supervisorLog)")
            }
        }

        /// Waits until the supervisor has started a broker other than `previous` and returns its pid.
        static func waitForRestart(of supervisor: SupervisorUnderTest, replacing previous: pid_t) throws -> pid_t {
            let deadline = Date().addingTimeInterval(30)
            while Date() < deadline {
                if let pid = supervisor.childPID(named: "mosquitto"), pid != previous {
                    return pid
                }
                usleep(20_000)
            }
            throw HarnessError("no new broker within 30 s after killing pid \(previous); log:\n\(supervisor.supervisorLog)")
        }

        static func fileSize(_ path: String) -> Int {
            var info = stat()
            return stat(path, &info) == 0 ? Int(info.st_size) : 0
        }

        /// Describes the CPU, core count, kernel and load, for the record next to the numbers.
        static func machineDescription() -> String {
            let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
            let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }?
                .split(separator: ":", maxSplits: 1).last?.trimmingCharacters(in: .whitespaces) ?? "unknown CPU"
            var names = utsname()
            uname(&names)
            let release = withUnsafeBytes(of: &names.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            return "\(model), \(sysconf(Int32(_SC_NPROCESSORS_ONLN))) cores, Linux \(release), \(DurabilityFixture.machineLoad())"
        }
    }
}

/// Whether the loss-window measurement was requested (a suite's trait cannot read the suite's own members).
enum LossWindowRequest {
    static var isPresent: Bool {
        !(ProcessInfo.processInfo.environment["DURABILITY_MEASURE_WINDOW"] ?? "").isEmpty
    }
}
