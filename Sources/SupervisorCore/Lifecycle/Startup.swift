import Glibc

extension Supervisor {
    /// Runs the startup steps in order; each one is timed, logged and reported by `status`.
    func startUp() throws {
        try step("check settings and environment") { try checkEnvironment() }
        let cipherdir = Cipherdir(path: settings.cipherdir)
        var passphrase: Passphrase?
        try step("prepare cipherdir") {
            try RekeyRecovery.finishInterruptedRekey(cipherdir: settings.cipherdir, fusermount: programs.fusermount,
                                                     children: children)
            let needsInit = try cipherdir.prepare()
            try StoreLock.holdForRun(cipherdir: settings.cipherdir)
            let source = PassphraseSource(settings: settings, legacyVariable: legacyPassphrase)
            passphrase = try source.resolve(storeInitialized: !needsInit)
            if needsInit {
                try cipherdir.initialize(with: passphrase!, gocryptfs: programs.gocryptfs,
                                         children: children, environment: environment)
                return "initialized a new gocryptfs store in \(settings.cipherdir)"
            }
            return "found the gocryptfs store in \(settings.cipherdir)"
        }
        try checkStop()
        try step("prepare mountpoint") {
            try Mountpoint(path: settings.mountpoint).prepare(fusermount: programs.fusermount, children: children)
            return "\(settings.mountpoint) is an empty directory owned by root"
        }
        try checkStop()
        try step("mount") {
            try mount.mount(passphrase: passphrase!, gocryptfs: programs.gocryptfs, children: children,
                            environment: environment, timeout: .seconds(settings.mountTimeout),
                            onExit: { [unowned self] status in gocryptfsExited(status) })
            return "gocryptfs (pid \(mount.pid)) mounted \(settings.cipherdir) on \(settings.mountpoint)"
        }
        passphrase = nil
        try checkStop()
        try step("prove mount") {
            try MountProof.prove(mountpoint: settings.mountpoint, cipherdir: settings.cipherdir, user: user)
            return "\(settings.mountpoint) is a live gocryptfs mount writable by \(user.name)"
        }
        try step("check database") {
            let path = "\(settings.mountpoint)/\(brokerConfig!.persistenceFile)"
            let verdict = try DatabaseGuard(path: path, user: user, policy: settings.badDatabase).check()
            switch verdict {
            case .missing: return "no \(brokerConfig!.persistenceFile) yet; the broker starts empty"
            case .valid(let bytes): return "\(path) is a Mosquitto database of \(bytes) bytes"
            case .invalid(let reason): return "\(path): \(reason)"
            }
        }
        try step("prepare durability") {
            try DurabilityPreparation(settings: settings, user: user, mosquittoVersion: versions.mosquitto,
                                      databaseFile: "\(settings.mountpoint)/\(brokerConfig!.persistenceFile)").prepare()
        }
        try step("write configuration") {
            try ConfigWriter(settings: settings).write(renderedText, brokerGroup: user.gid)
            return "wrote \(settings.config)"
        }
        try checkStop()
        try step("start broker") {
            try startBroker()
            return "mosquitto (pid \(broker.pid)) started with \(settings.config)"
        }
        try step("wait for broker") { try waitForBrokerReady() }
    }

    /// Waits for the broker's "running" line, up to 30 s. Until then a SIGTERM would kill the
    /// broker before its handlers exist, and `status` reports `starting`. A template that logs
    /// nothing at the information level never prints the line, so the wait ends with a warning.
    func waitForBrokerReady() throws -> String {
        // The versions are read while the broker starts, so they add nothing to the startup time.
        versions.gocryptfs = try firstLine(of: programs.gocryptfs, ["-version"])?
            .split(separator: ";").first.map(String.init)
        if versions.mosquitto == nil {
            versions.mosquitto = try firstLine(of: programs.mosquitto, ["-h"])
        }
        loop.run(until: .now + .seconds(30)) { broker.isReady || !broker.isRunning || stopRequests > 0 }
        if broker.isReady {
            return "mosquitto (pid \(broker.pid)) reports running"
        }
        if !broker.isRunning {
            return "mosquitto (pid \(broker.pid)) ended before it reported running"
        }
        if broker.isRunning && stopRequests == 0 {
            Log.warning("mosquitto (pid \(broker.pid)) did not log its running line within 30 s; keep `log_type information` in the template so readiness can be seen")
        }
        return "mosquitto (pid \(broker.pid)) did not report running"
    }

    func startBroker() throws {
        try broker.start(program: programs.mosquitto, config: settings.config, environment: environment,
                         children: children, onExit: { _ in })
    }

    /// Runs one startup step and logs what it did and how long it took.
    func step(_ name: String, _ body: () throws -> String?) throws {
        let started = ContinuousClock.now
        let summary = try body()
        let elapsed = ContinuousClock.now - started
        let (seconds, attoseconds) = elapsed.components
        steps.append(.init(name: name, milliseconds: Double(seconds) * 1000 + Double(attoseconds) / 1e15))
        Log.info("\(name): \(summary ?? "done") (\(formatDuration(elapsed)))")
    }

    func step(_ name: String, _ body: () throws -> Void) throws {
        try step(name) { () throws -> String? in
            try body()
            return nil
        }
    }

    func checkStop() throws {
        if stopRequests > 0 {
            throw StartupInterrupted()
        }
    }

    /// Step 1: the programs, the broker user, /dev/fuse and the template.
    func checkEnvironment() throws {
        let path = environment["PATH"]
        func locate(_ name: String, _ variable: String) throws -> String {
            guard let found = ProgramLocator.locate(name, path: path) else {
                if name.contains("/") {
                    throw SupervisorError(.environment,
                        "\(name) does not exist or is not executable; set \(variable) to the program's path")
                }
                throw SupervisorError(.environment,
                    "\(name) not found on PATH or not executable; install it (Debian package \(variable == "SUPERVISOR_FUSERMOUNT" ? "fuse3" : name)) or set \(variable)")
            }
            return found
        }
        programs = (
            mosquitto: try locate(settings.mosquitto, "SUPERVISOR_MOSQUITTO"),
            gocryptfs: try locate(settings.gocryptfs, "SUPERVISOR_GOCRYPTFS"),
            fusermount: try locate(settings.fusermount, "SUPERVISOR_FUSERMOUNT"))
        guard let account = UserAccount.lookup(settings.brokerUser) else {
            throw SupervisorError(.environment,
                "user \(settings.brokerUser) does not exist; install the mosquitto package (it creates the user) or set SUPERVISOR_BROKER_USER")
        }
        user = account
        guard getuid() == 0 else {
            throw SupervisorError(.environment, "supervisor run must start as root (uid 0) to mount the store; it runs the broker as \(settings.brokerUser)")
        }
        let fuse = open("/dev/fuse", O_RDWR | O_CLOEXEC)
        guard fuse >= 0 else {
            throw SupervisorError(.environment,
                "cannot open /dev/fuse: \(errnoText()); run the container with --device /dev/fuse --cap-add SYS_ADMIN (compose: devices and cap_add)")
        }
        close(fuse)
        let rendered = try ConfigWriter(settings: settings).render(environment: environment)
        brokerConfig = rendered.config
        renderedText = rendered.text
        if settings.durability == .journal {
            // Journal mode checks the broker's plugin API before it starts; autosave mode reads
            // the versions later, while the broker starts.
            versions.mosquitto = try firstLine(of: programs.mosquitto, ["-h"])
        }
    }

    private func firstLine(of program: String, _ arguments: [String]) throws -> String? {
        let request = SpawnRequest(path: program, arguments: arguments, environment: environment)
        return try children.run(request, timeout: .seconds(5))?.output.first
    }

    /// Undoes a partial startup: stops a started broker, unmounts a mount, removes the socket.
    func undoStartup(exitCode: Int32) -> Int32 {
        phase = .stopping
        if broker.isRunning {
            broker.signal(SIGKILL)
            loop.run(until: .now + .seconds(5)) { !broker.isRunning }
        }
        if mount.isRunning {
            _ = mount.syncBackingFilesystem()
            if mount.unmount(fusermount: programs.fusermount, children: children) {
                Log.info("unmounted \(settings.mountpoint)")
            }
        } else if mount.pid > 0 {
            _ = cleanUpAfterLostStore()
        }
        control.stop()
        Log.info("exiting with code \(exitCode)")
        return exitCode
    }

    func gocryptfsExited(_ status: ExitStatus) {
        guard phase == .running || broker.isRunning else {
            // Before the broker starts, the startup step that waits for or proves the mount
            // reports the failure in its own error line, with the fix.
            if phase == .starting && mount.isReady {
                Log.warning("gocryptfs (pid \(mount.pid)) ended with \(status) during startup")
            }
            return
        }
        Log.error("gocryptfs (pid \(mount.pid)) ended with \(status) while the store on \(settings.mountpoint) was in use; find the cause in its output above or in the kernel log (out-of-memory killer), then start again")
        if broker.isRunning {
            broker.signal(SIGKILL)
            Log.error("killed mosquitto (pid \(broker.pid)) at once, because its store is gone")
        }
    }
}
