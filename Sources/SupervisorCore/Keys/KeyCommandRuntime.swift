import Glibc

/// The event loop, the children and the stop requests of one `supervisor passwd` or
/// `supervisor rekey`. gocryptfs and fusermount3 run as children of the loop, which reaps them.
final class KeyCommandRuntime {
    let loop: EventLoop
    let children: ChildProcesses
    /// The environment for children: the command's own, without GOCRYPT_PASSWORD.
    let environment: [String: String]
    /// SIGTERM or SIGINT, once one has arrived; 0 before.
    private(set) var stopSignal: Int32 = 0
    /// False while a rekey swaps the stores or rolls back, so that a stop request does not
    /// cut that work short.
    var acceptsStop = true

    init(environment: [String: String]) throws {
        var childEnvironment = environment
        childEnvironment["GOCRYPT_PASSWORD"] = nil
        self.environment = childEnvironment
        loop = try EventLoop()
        children = ChildProcesses(loop: loop)
        loop.onSignal = { [unowned self] signal in
            guard signal == SIGTERM || signal == SIGINT else {
                return
            }
            if stopSignal == 0 {
                stopSignal = signal
                Log.info("received \(signalName(signal)); stopping at the next safe point")
            }
        }
        children.interrupted = { [unowned self] in acceptsStop && stopSignal != 0 }
    }

    /// True once SIGTERM or SIGINT has arrived. Signals wait in the signalfd while no loop
    /// runs, so a pending one is read here.
    var stopRequested: Bool {
        if stopSignal == 0 {
            var pending = sigset_t()
            sigpending(&pending)
            if sigismember(&pending, SIGTERM) == 1 || sigismember(&pending, SIGINT) == 1 {
                loop.run(until: .now + .milliseconds(100)) { stopSignal != 0 }
            }
        }
        return stopSignal != 0
    }

    /// Finds a program on the PATH of the command's environment.
    func locate(_ name: String, variable: String, package: String) throws -> String {
        guard let found = ProgramLocator.locate(name, path: environment["PATH"]) else {
            throw SupervisorError(.environment,
                "\(name) not found on PATH or not executable; install it (Debian package \(package)) or set \(variable)")
        }
        return found
    }

    /// Runs `body` with stop requests ignored, for work that must not be cut short.
    func withoutStops<T>(_ body: () throws -> T) rethrows -> T {
        let saved = acceptsStop
        acceptsStop = false
        defer { acceptsStop = saved }
        return try body()
    }
}
