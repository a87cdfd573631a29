import Dispatch
import FoundationEssentials
import Glibc
import Synchronization

/// The result of `supervisor status`, also its JSON form.
public struct HealthResult: Codable, Sendable {
    public struct Check: Codable, Sendable {
        public let name: String
        public let healthy: Bool
        public let detail: String
        public let milliseconds: Double
    }

    public var healthy: Bool
    public var checks: [Check]
    public var phase: String?
    public var supervisorPid: Int32?
    public var supervisorUptimeSeconds: Double?
    public var brokerPid: Int32?
    public var brokerUptimeSeconds: Double?
    public var brokerRestarts: Int?
    public var gocryptfsPid: Int32?
    public var cipherdir: String
    public var mountpoint: String
    public var mosquittoVersion: String?
    public var gocryptfsVersion: String?
    public var databaseAgeSeconds: Double?
    public var startupSteps: [StatusReport.Step]?
    /// "autosave" or "journal".
    public var durability: String? = nil
    public var journalBytes: Int? = nil
    public var journalLastSyncAgeSeconds: Double? = nil
}

/// Runs the checks of `supervisor status` in order, each bounded by what is left of the timeout.
struct HealthCheck {
    let settings: Settings
    let timeout: Duration

    func run() -> HealthResult {
        let deadline = ContinuousClock.now + timeout
        var checks: [HealthResult.Check] = []
        func record(_ name: String, _ body: () -> (Bool, String)) {
            let started = ContinuousClock.now
            let (healthy, detail) = ContinuousClock.now < deadline ? body() : (false, "not run: the timeout had passed")
            let (seconds, attoseconds) = (ContinuousClock.now - started).components
            checks.append(.init(name: name, healthy: healthy, detail: detail,
                                milliseconds: Double(seconds) * 1000 + Double(attoseconds) / 1e15))
        }

        var report: StatusReport?
        record("supervisor") {
            switch ControlClient.fetch(socket: settings.socket, deadline: deadline) {
            case .failure(let error):
                return (false, error.message)
            case .success(let value):
                report = value
                let detail = "\(value.phase.rawValue) (pid \(value.supervisorPid))"
                return (value.phase == .running, detail)
            }
        }
        let cipherdir = report?.cipherdir ?? settings.cipherdir
        let mountpoint = report?.mountpoint ?? settings.mountpoint
        record("store") { checkStore(cipherdir: cipherdir, mountpoint: mountpoint, deadline: deadline) }
        record("broker") { checkBrokerProcess(pid: report?.brokerPid) }
        record("mqtt") { checkMQTT(report: report, deadline: deadline) }
        var databaseAge: Double?
        record("persistence") {
            let file = "\(mountpoint)/\(report?.databaseFile ?? "mosquitto.db")"
            let (healthy, detail, age) = checkPersistence(file: file, failedSaves: report?.brokerFailedSaves, deadline: deadline)
            databaseAge = age
            return (healthy, detail)
        }
        if report?.durability == DurabilityMode.journal.rawValue {
            record("journal") { JournalHealth.check(report?.journal, now: wallClockSeconds()) }
        }

        let now = wallClockSeconds()
        return HealthResult(
            healthy: checks.allSatisfy(\.healthy), checks: checks,
            phase: report?.phase.rawValue, supervisorPid: report?.supervisorPid,
            supervisorUptimeSeconds: report.map { now - $0.supervisorStartedAt },
            brokerPid: report?.brokerPid,
            brokerUptimeSeconds: report?.brokerStartedAt.map { now - $0 },
            brokerRestarts: report?.brokerRestarts, gocryptfsPid: report?.gocryptfsPid,
            cipherdir: cipherdir, mountpoint: mountpoint,
            mosquittoVersion: report?.mosquittoVersion, gocryptfsVersion: report?.gocryptfsVersion,
            databaseAgeSeconds: databaseAge, startupSteps: report?.steps,
            durability: report?.durability, journalBytes: report?.journal?.bytes,
            journalLastSyncAgeSeconds: report?.journal?.lastSyncAt.map { now - $0 })
    }

    private func checkStore(cipherdir: String, mountpoint: String, deadline: ContinuousClock.Instant) -> (Bool, String) {
        let canonical = realpath(cipherdir, nil).map { pointer in
            defer { free(pointer) }
            return String(cString: pointer)
        } ?? cipherdir
        if let reason = MountProof.mismatch(of: MountTable.entry(at: mountpoint), cipherdir: canonical) {
            return (false, "\(mountpoint): \(reason)")
        }
        let result = BoundedCall.run(until: deadline) { Mountpoint.liveness(of: mountpoint) }
        switch result {
        case nil:
            return (false, "statfs of \(mountpoint) did not return before the timeout; gocryptfs may be frozen")
        case 0?:
            return (true, "\(mountpoint) is a live gocryptfs mount of \(cipherdir)")
        case let code?:
            return (false, "statfs of \(mountpoint) failed: \(errnoText(code))")
        }
    }

    private func checkBrokerProcess(pid: Int32?) -> (Bool, String) {
        guard let pid else {
            return (false, "no broker pid: the supervisor reports no running broker")
        }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else {
            return (false, "mosquitto (pid \(pid)) does not exist")
        }
        let state = stat[stat.index(close, offsetBy: 2)]
        switch state {
        case "T", "t":
            return (false, "mosquitto (pid \(pid)) is stopped (state \(state))")
        case "Z", "X":
            return (false, "mosquitto (pid \(pid)) has exited (state \(state))")
        default:
            return (true, "mosquitto (pid \(pid)) is alive (state \(state))")
        }
    }

    private func checkMQTT(report: StatusReport?, deadline: ContinuousClock.Instant) -> (Bool, String) {
        var target = report.flatMap { report in report.probePort.map { (report.probeHost ?? "127.0.0.1", $0) } }
        if target == nil, let bytes = try? Data(contentsOf: URL(fileURLWithPath: settings.config)) {
            target = BrokerConfig(text: String(decoding: bytes, as: UTF8.self)).probeTarget
        }
        guard let (host, port) = target else {
            return (false, "no MQTT listener found in \(settings.config)")
        }
        switch MQTTProbe.probe(host: host, port: port, deadline: deadline) {
        case .connack(let code):
            return (true, "CONNACK (return code \(code)) from \(host):\(port)")
        case .failed(let reason):
            return (false, reason)
        }
    }

    private func checkPersistence(file: String, failedSaves: Int?, deadline: ContinuousClock.Instant) -> (Bool, String, Double?) {
        let modified = BoundedCall.run(until: deadline) { () -> Double? in
            var info = stat()
            guard stat(file, &info) == 0 else { return nil }
            return Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9
        }
        guard let modified else {
            return (false, "stat of \(file) did not return before the timeout", nil)
        }
        let age = modified.map { wallClockSeconds() - $0 }
        let ageText = age.map { "\(file) saved \(formatDecimal($0, places: 1)) s ago" } ?? "no \(file) yet (nothing saved since the store was created)"
        if let failedSaves, failedSaves > 0 {
            return (false, "the broker logged \(failedSaves) failed save(s) (\"\(BrokerProcess.failedSaveText)\"); \(ageText)", age)
        }
        return (true, ageText, age)
    }
}

/// Runs a call that may block forever (a stat on a frozen FUSE mount) on its own thread and
/// stops waiting for it at the deadline. A call still blocked then is abandoned; the process
/// exits soon after, which ends the thread.
enum BoundedCall {
    static func run<T: Sendable>(until deadline: ContinuousClock.Instant, _ body: @escaping @Sendable () -> T) -> T? {
        let box = ResultBox<T>()
        let semaphore = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            box.set(body())
            semaphore.signal()
        }
        let remaining = deadline - .now
        let (seconds, attoseconds) = remaining.components
        let nanoseconds = max(0, seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
        guard semaphore.wait(timeout: .now() + .nanoseconds(Int(nanoseconds))) == .success else {
            return nil
        }
        return box.get()
    }
}

private final class ResultBox<T: Sendable>: Sendable {
    private let value = Mutex<T?>(nil)
    func set(_ newValue: T) { value.withLock { $0 = newValue } }
    func get() -> T? { value.withLock { $0 } }
}
