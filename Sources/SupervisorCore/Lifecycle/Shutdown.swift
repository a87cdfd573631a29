import Glibc

extension Supervisor {
    enum ShutdownReason {
        /// SIGTERM or SIGINT.
        case requested
        /// The broker exited without a stop request.
        case brokerEnded(ExitStatus)
        /// The broker kept failing under `--restart on-failure`.
        case restartLimit(ExitStatus)
        /// gocryptfs exited while the broker ran.
        case storeLost
    }

    /// Stops the broker (grace period, then SIGKILL), syncs the cipherdir's filesystem, unmounts
    /// the store and waits for gocryptfs, in that order. Returns the exit code.
    func shutDown(reason: ShutdownReason) -> Int32 {
        phase = .stopping
        let started = ContinuousClock.now
        let brokerStatus = stopBroker(checkFinalSave: { if case .requested = reason { return true }; return false }())
        if case .storeLost = reason, brokerStatus == nil, let status = broker.exitStatus {
            // The loop reaped the broker, killed when gocryptfs ended, before shutdown began.
            Log.info("mosquitto stopped with \(status)")
        }
        if broker.isRunning {
            // Unmounting under a live broker would let it write into the underlying directory.
            Log.error("mosquitto (pid \(broker.pid)) is still running after SIGKILL; leaving \(settings.mountpoint) mounted")
            control.stop()
            Log.info("exiting with code \(SupervisorError.Code.unmount.rawValue)")
            return SupervisorError.Code.unmount.rawValue
        }

        let mountpointPath = settings.mountpoint
        var unmounted: Bool
        if mount.isRunning {
            let syncStarted = ContinuousClock.now
            if mount.syncBackingFilesystem() {
                Log.info("synced the filesystem of \(settings.cipherdir) (\(formatDuration(.now - syncStarted)))")
            }
            let unmountStarted = ContinuousClock.now
            unmounted = mount.unmount(fusermount: programs.fusermount, children: children)
            if unmounted {
                Log.info("unmounted \(mountpointPath); gocryptfs exited with \(mount.exitStatus?.description ?? "unknown status") (\(formatDuration(.now - unmountStarted)))")
            }
        } else {
            unmounted = cleanUpAfterLostStore()
        }
        control.stop()

        var code: Int32
        switch reason {
        case .requested:
            code = brokerStatus.map { $0 == .exited(0) ? 0 : $0.shellCode } ?? 0
        case .brokerEnded(let status):
            code = status.shellCode
        case .restartLimit:
            code = SupervisorError.Code.restartLimit.rawValue
        case .storeLost:
            code = SupervisorError.Code.storeLost.rawValue
        }
        if !unmounted {
            Log.error("the store is still mounted on \(mountpointPath); unmount it with `fusermount3 -u \(mountpointPath)`")
            if code == 0 {
                code = SupervisorError.Code.unmount.rawValue
            }
        }
        Log.info("stopped in \(formatDuration(.now - started)); exiting with code \(code)")
        return code
    }

    /// Sends SIGTERM, waits up to the stop timeout (less after a second stop request), then
    /// SIGKILL. Returns the broker's status when this call stopped it.
    func stopBroker(checkFinalSave: Bool) -> ExitStatus? {
        guard broker.isRunning else {
            return nil
        }
        let database = "\(settings.mountpoint)/\(brokerConfig?.persistenceFile ?? "mosquitto.db")"
        let before = FileIdentity(path: database)
        let started = ContinuousClock.now
        let requestsBefore = stopRequests

        broker.signal(SIGTERM)
        Log.info("sent SIGTERM to mosquitto (pid \(broker.pid)); grace period \(settings.stopTimeout) s")
        let exited = loop.run(until: .now + .seconds(settings.stopTimeout)) {
            !broker.isRunning || stopRequests > max(requestsBefore, 1)
        }

        var killed = false
        if !exited || broker.isRunning {
            killed = true
            Log.warning("mosquitto (pid \(broker.pid)) still runs after \(formatDuration(.now - started)); sending SIGKILL")
            broker.signal(SIGKILL)
            loop.run(until: .now + .seconds(5)) { !broker.isRunning }
        }
        guard let status = broker.exitStatus else {
            return nil
        }

        Log.info("mosquitto stopped with \(status) (\(formatDuration(.now - started)))")
        if checkFinalSave {
            let after = FileIdentity(path: database)
            if killed || after == nil || after == before {
                Log.error("the broker's final save of \(database) did not happen; changes acknowledged in the last moments before the stop may be missing")
            } else {
                Log.info("the broker saved \(database) on stop")
            }
        }
        return status
    }

    /// After gocryptfs died: the broker is already gone, so the dead mount can be detached.
    func cleanUpAfterLostStore() -> Bool {
        let mountpoint = Mountpoint(path: settings.mountpoint)
        guard MountTable.entry(at: settings.mountpoint) != nil else {
            return true
        }
        do {
            try mountpoint.detachDeadMount(fusermount: programs.fusermount, children: children)
            return true
        } catch {
            Log.error("\(error)")
            return false
        }
    }
}

/// A file's inode and modification time, to tell whether the broker replaced it.
struct FileIdentity: Equatable {
    let inode: UInt64
    let seconds: Int
    let nanoseconds: Int

    init?(path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else {
            return nil
        }
        inode = UInt64(info.st_ino)
        seconds = info.st_mtim.tv_sec
        nanoseconds = info.st_mtim.tv_nsec
    }
}
