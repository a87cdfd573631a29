import Foundation
import Glibc
import Testing

extension Integration.Durability {
    /// Rounds of a publish storm ended by a SIGKILL at a random moment, each followed by a new
    /// supervisor on the same sandbox.
    @Suite struct CrashLoop {
        static let rounds = 30
        static let topics = 150

        enum Target: String, CaseIterable {
            case broker = "mosquitto"
            case gocryptfs
            /// PID 1 of the namespaces, which takes every process with it, like `docker kill`.
            case supervisor
        }

        /// After every kill of the broker, gocryptfs or the supervisor, the next start loads the
        /// database, recovers the mount, and still has every message acknowledged at least
        /// 20 ms before the kill.
        @Test func storeSurvivesThirtyKills() throws {
            let seed = DurabilityFixture.seed()
            var generator = SeededGenerator(seed: seed)
            let sandbox = try Sandbox(passphrase: DurabilityFixture.uniquePassphrase())
            defer { sandbox.remove() }
            var audit = ConfidentialityAudit(sandbox: sandbox)
            var ledger = StormLedger()
            var previousTarget: Target?
            print("crash loop: seed \(seed) (set DURABILITY_SEED=\(seed) to replay the kill moments)")

            for round in 0...Self.rounds {
                let context = "round \(round), seed \(seed)"
                let supervisor = try SupervisorUnderTest(sandbox: sandbox, name: "round-\(round)")
                defer { supervisor.forceStop() }
                try supervisor.waitUntilRunning()
                let log = supervisor.supervisorLog
                if round > 0 {
                    #expect(log.contains("\(sandbox.mountpoint)/mosquitto.db is a Mosquitto database of"), "\(context); log:\n\(log)")
                }
                if previousTarget == .supervisor {
                    // The underlying directory is scanned again when this supervisor has exited.
                    #expect(log.contains("found a dead mount on \(sandbox.mountpoint)"), "\(context); log:\n\(log)")
                }

                let clientID = "crash-loop-\(round)-\(getpid())"
                audit.add(clientID: clientID)
                let client = DurabilityClient(supervisor, clientID: clientID, persistentSession: true)
                let retained = try client.retained(filter: "alice/storm/#")
                #expect(ledger.problems(in: retained) == [], "\(context); \(DurabilityFixture.machineLoad())")
                audit.checkProcesses(of: supervisor)

                if round == Self.rounds {
                    let sample = retained.keys.sorted().prefix(3).map { RetainedMessage(topic: $0, payload: retained[$0]!) }
                    audit.checkPlaintextVisibleThroughMount(sample: sample)
                    #expect(supervisor.stop() == 0, "log:\n\(supervisor.supervisorLog)")
                    break
                }

                let target = Target.allCases[round % Target.allCases.count]
                let pid = try #require(target == .supervisor ? supervisor.hostPID : supervisor.childPID(named: target.rawValue))
                let killAfter = Double.random(in: 0.05...1.2, using: &generator)
                let storm = try client.storm(pid: pid, killAfter: killAfter, prefix: "alice/storm", topics: Self.topics,
                                             marker: "storm-r\(round)", seed: generator.next())
                ledger.record(storm, safeDelay: DurabilityFixture.safeDelay)
                audit.add(storm.map(\.message))

                let code = supervisor.waitForExit(timeout: 30)
                switch target {
                case .broker:
                    #expect(code == 128 + SIGKILL, "\(context); log:\n\(supervisor.supervisorLog)")
                    audit.checkAtRest()
                case .gocryptfs:
                    #expect(code == 72, "\(context): gocryptfs was killed under the broker, which is exit code 72 (store-lost); log:\n\(supervisor.supervisorLog)")
                    audit.checkAtRest()
                case .supervisor:
                    #expect(code != nil, "\(context): the namespace did not end after SIGKILL of its PID 1")
                    audit.checkAtRest(deadMountExpected: true)
                }
                previousTarget = target
                print("crash loop round \(round): killed \(target) after \(String(format: "%.3f", killAfter)) s; "
                      + "\(storm.count) sent, \(storm.filter { $0.acknowledgedBeforeKill != nil }.count) acknowledged")
            }
            print("crash loop: \(ledger.published) messages published, \(ledger.safelyAcknowledged) acknowledged at least "
                  + "\(DurabilityFixture.safeDelay) ms before a kill")
            #expect(ledger.safelyAcknowledged > Self.rounds, "the storms published too little to test anything")
            audit.checkAtRest()
        }
    }
}

/// Every payload the crash loop published to each topic, in order, and the oldest one that must
/// still be there: the last one acknowledged at least the safe delay before a kill.
struct StormLedger {
    /// For each topic, each payload published to it and its position in the order of publishing.
    private var sequence: [String: [[UInt8]: Int]] = [:]
    /// For each topic, the position of the last payload that must survive.
    private var required: [String: Int] = [:]
    private(set) var published = 0
    private(set) var safelyAcknowledged = 0

    mutating func record(_ storm: [StormMessage], safeDelay: Double) {
        for entry in storm {
            let position = published
            published += 1
            sequence[entry.message.topic, default: [:]][entry.message.payload] = position
            if let acknowledged = entry.acknowledgedBeforeKill, acknowledged >= safeDelay {
                required[entry.message.topic] = position
                safelyAcknowledged += 1
            }
        }
    }

    /// Lists what is wrong with the retained messages after a restart: a required message that
    /// is missing or replaced by an older one, and any payload that was never published.
    func problems(in retained: [String: [UInt8]]) -> [String] {
        var problems: [String] = []
        for (topic, position) in required.sorted(by: { $0.key < $1.key }) {
            guard let payload = retained[topic] else {
                problems.append("missing \(topic)")
                continue
            }
            if let found = sequence[topic]?[payload], found < position {
                problems.append("\(topic) went back to message \(found); message \(position) was acknowledged before the safe delay")
            }
        }
        for (topic, payload) in retained.sorted(by: { $0.key < $1.key }) where sequence[topic]?[payload] == nil {
            problems.append("\(topic) has a payload that was never published: \(Hex.encode(payload))")
        }
        return problems
    }
}
