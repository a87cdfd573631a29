import CSupervisor
import Glibc

/// `supervisor run`: brings the encrypted store and the broker up in order, watches them from
/// one event loop, and takes them down in reverse order.
public final class Supervisor {
    let settings: Settings
    /// The environment given to children and to the template, without GOCRYPT_PASSWORD.
    let environment: [String: String]
    let legacyPassphrase: [UInt8]?
    let loop: EventLoop
    let children: ChildProcesses
    let control: ControlServer
    let mount: GocryptfsMount
    let broker = BrokerProcess()

    var phase = StatusReport.Phase.starting
    /// SIGTERM and SIGINT received so far; the second one cuts the grace period short.
    var stopRequests = 0
    var stopSignal: Int32 = 0
    var user = UserAccount(name: "mosquitto", uid: 0, gid: 0)
    var programs = (mosquitto: "", gocryptfs: "", fusermount: "")
    var versions = (mosquitto: String?.none, gocryptfs: String?.none)
    var brokerConfig: BrokerConfig?
    var renderedText = ""
    var steps: [StatusReport.Step] = []
    var brokerRestarts = 0
    var restartTimes: [ContinuousClock.Instant] = []
    let startedAt = ContinuousClock.now
    let startedAtWallClock = wallClockSeconds()

    public init(settings: Settings, environment: [String: String], legacyPassphrase: [UInt8]?) throws {
        self.settings = settings
        var environment = environment
        environment["GOCRYPT_PASSWORD"] = nil
        self.environment = environment
        self.legacyPassphrase = legacyPassphrase
        loop = try EventLoop()
        children = ChildProcesses(loop: loop)
        control = ControlServer(path: settings.socket)
        mount = GocryptfsMount(cipherdir: settings.cipherdir, mountpoint: settings.mountpoint)
        children.interrupted = { [unowned self] in phase == .starting && stopRequests > 0 }
        loop.onSignal = { [unowned self] signal in handle(signal: signal) }
    }

    /// Runs until the broker is stopped and the store unmounted; returns the process exit code.
    public func run() -> Int32 {
        if getpid() != 1 {
            if csup_set_child_subreaper() != 0 {
                Log.warning("cannot become a child subreaper: \(errnoText()); orphans of the broker will not be reaped here")
            }
        }
        Log.info("starting (pid \(getpid())): cipherdir \(settings.cipherdir), mountpoint \(settings.mountpoint)")
        do {
            try control.start(loop: loop, report: { [unowned self] in report() })
            try startUp()
        } catch is StartupInterrupted {
            Log.info("startup interrupted by \(signalName(stopSignal)); undoing what was done")
            return undoStartup(exitCode: 0)
        } catch let error as SupervisorError {
            Log.error(error.message)
            return undoStartup(exitCode: error.code.rawValue)
        } catch {
            Log.error("startup failed: \(error)")
            return undoStartup(exitCode: SupervisorError.Code.system.rawValue)
        }
        guard broker.isRunning else {
            // The broker failed during its start; supervising reports its exit and shuts down.
            return superviseUntilStop()
        }
        phase = .running
        let total = ContinuousClock.now - startedAt
        Log.info("running: broker pid \(broker.pid), gocryptfs pid \(mount.pid) (startup took \(formatDuration(total)))")
        return superviseUntilStop()
    }

    /// Waits for a stop request, the broker's exit or gocryptfs's exit, restarting the broker
    /// under `--restart on-failure`, then shuts down.
    func superviseUntilStop() -> Int32 {
        while true {
            loop.run { stopRequests > 0 || !broker.isRunning || !mount.isRunning }
            if stopRequests > 0 {
                return shutDown(reason: .requested)
            }
            if !mount.isRunning || gocryptfsEndsSoon() {
                return shutDown(reason: .storeLost)
            }
            let status = broker.exitStatus ?? .exited(0)
            let explanation = BrokerExit.explanation(of: status, output: broker.recentOutput, template: settings.template)
            Log.error("mosquitto (pid \(broker.pid)) ended by itself with \(status)\(explanation)")
            guard settings.restart == .onFailure, status != .exited(0) else {
                return shutDown(reason: .brokerEnded(status))
            }
            // A broker that failed before it ever reported running (a rejected option, a port
            // in use, an unreadable database) would fail the same way again.
            guard broker.isReady else {
                Log.error("not restarting mosquitto: it ended before it reported running, so a restart would fail the same way")
                return shutDown(reason: .brokerEnded(status))
            }
            guard waitBeforeRestart() else {
                if stopRequests > 0 {
                    return shutDown(reason: .requested)
                }
                return shutDown(reason: mount.isRunning ? .restartLimit(status) : .storeLost)
            }
            do {
                try startBroker()
                brokerRestarts += 1
                Log.info("restarted mosquitto (pid \(broker.pid)); restart \(brokerRestarts)")
            } catch let error as SupervisorError {
                Log.error(error.message)
                return shutDown(reason: .brokerEnded(status))
            } catch {
                return shutDown(reason: .brokerEnded(status))
            }
        }
    }

    /// Waits up to 250 ms for gocryptfs to end after the broker ended by itself, and returns
    /// true if it did. When gocryptfs is killed during a save, Mosquitto 2.0.11 can abort on the
    /// failed save (glibc reports a double free) before this loop has reaped gocryptfs, and that
    /// broker exit must still end the supervisor as a lost store.
    func gocryptfsEndsSoon() -> Bool {
        loop.run(until: .now + .milliseconds(250)) { !mount.isRunning }
        return !mount.isRunning
    }

    /// Waits out the backoff before a restart: 1 s, doubling to at most 30 s.
    /// Returns false when the restart limit is reached or the wait was interrupted.
    func waitBeforeRestart() -> Bool {
        let now = ContinuousClock.now
        restartTimes.removeAll { now - $0 > .seconds(settings.restartWindow) }
        guard restartTimes.count < settings.restartLimit else {
            Log.error("mosquitto failed \(restartTimes.count + 1) times within \(Int(settings.restartWindow)) s; giving up (SUPERVISOR_RESTART_LIMIT is \(settings.restartLimit))")
            return false
        }
        let delay = Duration.seconds(min(30, 1 << min(restartTimes.count, 5)))
        restartTimes.append(now)
        Log.info("restarting mosquitto in \(formatDuration(delay))")
        loop.run(until: .now + delay) { stopRequests > 0 || !mount.isRunning }
        return stopRequests == 0 && mount.isRunning
    }

    // MARK: - Signals

    func handle(signal: Int32) {
        switch signal {
        case SIGTERM, SIGINT:
            stopRequests += 1
            if stopRequests == 1 {
                stopSignal = signal
                Log.info("received \(signalName(signal)); stopping")
            } else {
                Log.warning("received \(signalName(signal)) again; cutting the grace period short")
            }
        case SIGHUP:
            reload()
        case SIGUSR1, SIGUSR2:
            if phase == .running && broker.isRunning {
                broker.signal(signal)
                Log.info("forwarded \(signalName(signal)) to mosquitto (pid \(broker.pid))")
            } else {
                Log.warning("ignored \(signalName(signal)): the broker is not running")
            }
        default:
            break
        }
    }

    /// Re-renders the template and, when it is valid, sends SIGHUP to the broker.
    /// An invalid template leaves the running configuration in place.
    func reload() {
        guard phase == .running, broker.isRunning else {
            Log.warning("ignored SIGHUP: the broker is not running")
            return
        }
        let started = ContinuousClock.now
        do {
            let writer = ConfigWriter(settings: settings)
            let rendered = try writer.render(environment: environment)
            try writer.write(rendered.text, brokerGroup: user.gid)
            brokerConfig = rendered.config
            renderedText = rendered.text
            broker.signal(SIGHUP)
            Log.info("re-rendered \(settings.config) and sent SIGHUP to mosquitto (pid \(broker.pid)) in \(formatDuration(.now - started))")
        } catch let error as SupervisorError {
            Log.error("reload rejected, the broker keeps its configuration: \(error.message)")
        } catch {
            Log.error("reload failed: \(error)")
        }
    }

    // MARK: - Status

    func report() -> StatusReport {
        StatusReport(
            phase: phase,
            supervisorPid: getpid(),
            supervisorStartedAt: startedAtWallClock,
            brokerPid: broker.isRunning ? broker.pid : nil,
            brokerStartedAt: broker.isRunning ? broker.startedAtWallClock : nil,
            brokerRestarts: brokerRestarts,
            brokerFailedSaves: broker.failedSaves,
            gocryptfsPid: mount.isRunning ? mount.pid : nil,
            cipherdir: settings.cipherdir,
            mountpoint: settings.mountpoint,
            config: settings.config,
            databaseFile: brokerConfig?.persistenceFile ?? "mosquitto.db",
            probeHost: brokerConfig?.probeTarget?.host,
            probePort: brokerConfig?.probeTarget?.port,
            mosquittoVersion: versions.mosquitto,
            gocryptfsVersion: versions.gocryptfs,
            steps: steps,
            durability: settings.durability.rawValue,
            journal: settings.durability == .journal ? JournalStatus.read(JournalConfig(settings: settings).statusFile) : nil)
    }
}
