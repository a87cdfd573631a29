import Glibc

/// The running mosquitto: started with the rendered configuration, its output copied to the
/// supervisor's standard output and watched for failed saves.
public final class BrokerProcess {
    /// The line Mosquitto 2.0 logs when a save fails (persist_write.c).
    public static let failedSaveText = "Error saving in-memory database"

    public private(set) var pid: pid_t = 0
    public private(set) var startedAt = ContinuousClock.now
    public private(set) var startedAtWallClock: Double = 0
    public private(set) var exitStatus: ExitStatus?
    /// Failed saves the broker logged since this process started.
    public private(set) var failedSaves = 0
    /// True once the broker logged "mosquitto version X running", which Mosquitto 2.0 does after
    /// it loaded the database, opened its listeners and installed its signal handlers.
    public private(set) var isReady = false
    /// The last lines of output, to explain an early exit such as a rejected option.
    public private(set) var recentOutput: [String] = []

    public init() {}

    public var isRunning: Bool { pid > 0 && exitStatus == nil }

    public func start(program: String, config: String, environment: [String: String],
                      children: ChildProcesses, onExit: @escaping (ExitStatus) -> Void) throws {
        exitStatus = nil
        isReady = false
        failedSaves = 0
        recentOutput = []
        let request = SpawnRequest(path: program, arguments: ["-c", config], environment: environment)
        let started = try children.start(request, onLine: { [unowned self] line in
            if line.contains(Self.failedSaveText) {
                failedSaves += 1
            }
            if !isReady && line.hasSuffix(" running") && line.contains("mosquitto version") {
                isReady = true
            }
            recentOutput.append(line)
            if recentOutput.count > 10 {
                recentOutput.removeFirst()
            }
            Log.forward(line, from: "mosquitto")
        }, onExit: { [unowned self] status in
            exitStatus = status
            onExit(status)
        })
        pid = started.pid
        startedAt = .now
        startedAtWallClock = wallClockSeconds()
    }

    /// Sends `signal` to the broker; logs and returns false when kill(2) fails, for example
    /// when the container lacks CAP_KILL.
    @discardableResult
    public func signal(_ signal: Int32) -> Bool {
        guard isRunning else {
            return false
        }
        guard kill(pid, signal) == 0 else {
            Log.error("cannot send \(signalName(signal)) to mosquitto (pid \(pid)): \(errnoText()); the container needs the KILL capability")
            return false
        }
        return true
    }
}

/// Seconds since the Unix epoch, for uptimes reported to other processes.
func wallClockSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}
