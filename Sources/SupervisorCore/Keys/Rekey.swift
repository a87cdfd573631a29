import CSupervisor
import FoundationEssentials
import Glibc

/// One run of `supervisor rekey`: builds a new store with a new master key inside the
/// cipherdir, copies the plaintext through both mounts, verifies every file on a fresh mount,
/// then swaps the stores with `StoreSwap`. The steps are listed in `RekeyStep`.
final class Rekey {
    struct Outcome {
        var totals = TreeTotals()
        var keptOldStore = ""
        /// True when this run only finished an earlier rekey that had been interrupted after its swap began.
        var finishedEarlierRekey = false
    }

    let options: KeyCommandOptions
    let runtime: KeyCommandRuntime
    let progress: RekeyProgress
    let layout: RekeyLayout
    var cipherdir: String { layout.cipherdir }
    private var programs = (gocryptfs: "", fusermount: "")
    private var journal: RekeyJournal?
    private var mountDirectory = ""
    private var oldMount: GocryptfsMount?
    private var newMount: GocryptfsMount?

    init(options: KeyCommandOptions, runtime: KeyCommandRuntime, progress: RekeyProgress) {
        self.options = options
        self.runtime = runtime
        self.progress = progress
        layout = RekeyLayout(cipherdir: options.settings.cipherdir)
    }

    func run() throws -> Outcome {
        try checkEnvironment()
        let old = try options.oldPassphrase()
        let new = try options.newPassphrase()
        guard old.bytes != new.bytes else {
            throw SupervisorError(.passphrase,
                "the new passphrase from \(new.origin) is the same as the current one from \(old.origin); a rekey needs a different passphrase, so that the old one cannot open the new store")
        }
        let lock = try lockExclusive()
        defer { withExtendedLifetime(lock) {} }

        if layout.hasWork {
            let recovered = try runtime.withoutStops {
                try RekeyRecovery.recover(layout, fusermount: programs.fusermount, children: runtime.children, progress: RekeyProgress())
            }
            if case .finished(let kept) = recovered {
                return Outcome(keptOldStore: kept, finishedEarlierRekey: true)
            }
        }
        try rejectOtherMounts()
        let space = try DiskSpace.check(cipherdir: cipherdir)
        Log.info("free space on the filesystem of \(cipherdir): \(DiskSpace.mebibytes(space.available)); the new store needs about \(DiskSpace.mebibytes(space.needed))")

        let totals: TreeTotals
        do {
            totals = try build(old: old, new: new)
        } catch {
            throw rollBack(after: error)
        }

        runtime.acceptsStop = false
        guard var journal else {
            throw SupervisorError(.system, "internal error: the rekey journal was not written")
        }
        journal.phase = .swapOut
        do {
            try journal.write(layout)
            progress.reached(.swapStarted)
            journal = try StoreSwap(layout: layout, progress: progress).finish(from: journal)
        } catch let error as SupervisorError {
            throw SupervisorError(error.code,
                "the swap of the stores in \(cipherdir) stopped: \(error.message). Both stores' files are still there; run `supervisor rekey` or `supervisor run` again, which finishes the swap or rolls it back as the journal \(layout.journal) records")
        }
        return Outcome(totals: totals, keptOldStore: journal.keptOldStore)
    }

    // MARK: - Checks

    private func checkEnvironment() throws {
        guard getuid() == 0 else {
            throw SupervisorError(.environment, "supervisor rekey must run as root (uid 0) to mount the old and the new store")
        }
        let settings = options.settings
        programs = (
            gocryptfs: try runtime.locate(settings.gocryptfs, variable: "SUPERVISOR_GOCRYPTFS", package: "gocryptfs"),
            fusermount: try runtime.locate(settings.fusermount, variable: "SUPERVISOR_FUSERMOUNT", package: "fuse3"))
        guard Cipherdir(path: cipherdir).isInitialized || layout.hasWork else {
            throw SupervisorError(.cipherdir,
                "no gocryptfs store in \(cipherdir): gocryptfs.conf does not exist; rekey replaces the master key of an existing store, so check --cipherdir or SUPERVISOR_CIPHERDIR")
        }
        if Cipherdir(path: cipherdir).isInitialized, try Self.usesPlaintextNames(cipherdir) {
            throw SupervisorError(.cipherdir,
                "the store in \(cipherdir) was created with -plaintextnames, so its mount would show the rekey's work directory; rekey supports stores with encrypted names only")
        }
        let mountParent = StoreMounts.canonical(options.mountDirectory)
        let canonicalCipherdir = StoreMounts.canonical(cipherdir)
        if mountParent == canonicalCipherdir || mountParent.hasPrefix(canonicalCipherdir + "/") {
            throw SupervisorError(.usage,
                "--mount-dir \(options.mountDirectory) is inside the cipherdir \(cipherdir), where the temporary mountpoints would become part of the store; choose a directory outside it")
        }
        let fuse = open("/dev/fuse", O_RDWR | O_CLOEXEC)
        guard fuse >= 0 else {
            throw SupervisorError(.environment,
                "cannot open /dev/fuse: \(errnoText()); rekey mounts both stores, so run it where FUSE is available (a container needs --device /dev/fuse --cap-add SYS_ADMIN)")
        }
        close(fuse)
    }

    /// Returns true when the FeatureFlags in gocryptfs.conf (a JSON file) include PlaintextNames.
    static func usesPlaintextNames(_ cipherdir: String) throws -> Bool {
        guard let content = FileSystem.readAll("\(cipherdir)/gocryptfs.conf", limit: 1 << 20),
              let config = try? JSONDecoder().decode(GocryptfsConfigFlags.self, from: Data(content)) else {
            throw SupervisorError(.cipherdir,
                "cannot read \(cipherdir)/gocryptfs.conf as a gocryptfs configuration; restore it from your backup")
        }
        return config.featureFlags?.contains("PlaintextNames") ?? false
    }

    private func lockExclusive() throws -> StoreLock? {
        switch try StoreLock.acquire(cipherdir, exclusive: true) {
        case .acquired(let lock):
            return lock
        case .busy:
            throw SupervisorError(.inUse,
                "the store in \(cipherdir) is in use: a `supervisor run`, passwd or rekey holds its lock; stop the broker (the container) that uses it, then run rekey again")
        case .unsupported(let reason):
            Log.warning("cannot lock the cipherdir \(cipherdir) (\(reason)); make sure no broker uses the store during the rekey")
            return nil
        }
    }

    private func rejectOtherMounts() throws {
        let mounts = StoreMounts.mounts(of: cipherdir) + StoreMounts.mounts(of: layout.newStore)
        if let mount = mounts.first {
            throw SupervisorError(.inUse,
                "the store in \(cipherdir) is mounted on \(mount.mountpoint); stop the broker that uses it (or run `fusermount3 -u \(mount.mountpoint)`), then run rekey again")
        }
    }

    // MARK: - Building the new store

    private func build(old: Passphrase, new: Passphrase) throws -> TreeTotals {
        mountDirectory = try makeMountDirectory()
        let started = RekeyJournal(phase: .building, mountDirectory: mountDirectory,
                                   keptOldStore: options.removeOld ? "" : layout.keptOldStorePath())
        // Set first, so that a rollback also removes a journal whose write failed halfway.
        journal = started
        try started.write(layout)
        progress.reached(.journalStarted)

        try checkStop()
        oldMount = try mount(cipherdir, on: "\(mountDirectory)/old", passphrase: old, role: "old")
        progress.reached(.oldStoreMounted)

        try checkStop()
        for directory in [layout.staging, layout.newStore] where mkdir(directory, 0o700) != 0 {
            throw SupervisorError(.cipherdir, "cannot create \(directory): \(errnoText())")
        }
        try interruptible {
            try Cipherdir(path: layout.newStore).initialize(with: new, gocryptfs: programs.gocryptfs,
                                                             children: runtime.children, environment: runtime.environment)
        }
        progress.reached(.newStoreCreated)

        try checkStop()
        newMount = try mount(layout.newStore, on: "\(mountDirectory)/new", passphrase: new, role: "new")
        progress.reached(.newStoreMounted)

        let copied = try TreeCopier(shouldStop: { [runtime] in runtime.stopRequested })
            .copy(from: "\(mountDirectory)/old", to: "\(mountDirectory)/new")
        progress.reached(.copied, copied.summary)

        try unmount(&newMount)
        try checkStop()
        newMount = try mount(layout.newStore, on: "\(mountDirectory)/new", passphrase: new, role: "new")
        let verified = try TreeVerifier(shouldStop: { [runtime] in runtime.stopRequested })
            .verify(original: "\(mountDirectory)/old", copy: "\(mountDirectory)/new")
        guard verified == copied else {
            throw SupervisorError(.verification, "the verification went through \(verified.summary), the copy through \(copied.summary)")
        }
        progress.reached(.verified, verified.summary)

        try unmount(&newMount)
        try unmount(&oldMount)
        RekeyRecovery.removeMountDirectory(mountDirectory)
        try syncCipherdirFilesystem()
        progress.reached(.unmounted)
        // The last point at which a stop request rolls back; the swap is not interrupted.
        try checkStop()
        return verified
    }

    private func makeMountDirectory() throws -> String {
        guard FileSystem.makeDirectories(options.mountDirectory, mode: 0o700) else {
            throw SupervisorError(.system, "cannot create the directory \(options.mountDirectory) for the temporary mountpoints: \(errnoText()); set --mount-dir")
        }
        var template = Array("\(options.mountDirectory)/supervisor-rekey-XXXXXX".utf8CString)
        guard let created = mkdtemp(&template) else {
            throw SupervisorError(.system, "cannot create a temporary directory in \(options.mountDirectory): \(errnoText()); set --mount-dir to a writable directory")
        }
        let directory = StoreMounts.canonical(String(cString: created))
        for name in ["old", "new"] where mkdir("\(directory)/\(name)", 0o700) != 0 {
            throw SupervisorError(.system, "cannot create the mountpoint \(directory)/\(name): \(errnoText())")
        }
        return directory
    }

    private func mount(_ directory: String, on mountpoint: String, passphrase: Passphrase, role: String) throws -> GocryptfsMount {
        let mount = GocryptfsMount(cipherdir: directory, mountpoint: mountpoint)
        do {
            try interruptible {
                try mount.mount(passphrase: passphrase, gocryptfs: programs.gocryptfs, children: runtime.children,
                                environment: runtime.environment, timeout: .seconds(options.settings.mountTimeout),
                                onExit: { _ in })
            }
        } catch let error as SupervisorError where error.code == .passphrase && role == "old" {
            throw SupervisorError(.passphrase,
                "the current passphrase from \(passphrase.origin) does not open the store in \(cipherdir); give the passphrase it opens with in --old-passfile")
        }
        return mount
    }

    private func unmount(_ mount: inout GocryptfsMount?) throws {
        guard let current = mount else {
            return
        }
        let unmounted = runtime.withoutStops {
            current.unmount(fusermount: programs.fusermount, children: runtime.children)
        }
        guard unmounted else {
            throw SupervisorError(.unmount,
                "cannot unmount the temporary mount \(current.mountpoint) of \(current.cipherdir); run `fusermount3 -u \(current.mountpoint)`, then `supervisor rekey` again to clean up")
        }
        mount = nil
    }

    private func syncCipherdirFilesystem() throws {
        let fd = open(cipherdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else {
            throw SupervisorError(.system, "cannot open the cipherdir \(cipherdir) to sync it: \(errnoText())")
        }
        defer { close(fd) }
        guard csup_syncfs(fd) == 0 else {
            throw SupervisorError(.system, "syncfs on the cipherdir \(cipherdir) failed: \(errnoText())")
        }
    }

    private func checkStop() throws {
        if runtime.stopRequested {
            throw RekeyStopped()
        }
    }

    /// Runs a helper that throws `StartupInterrupted` when a stop request arrives or its time
    /// runs out, and turns that into `RekeyStopped` or a timeout error.
    private func interruptible(_ body: () throws -> Void) throws {
        do {
            try body()
        } catch is StartupInterrupted {
            if runtime.stopSignal != 0 {
                throw RekeyStopped()
            }
            throw SupervisorError(.system, "gocryptfs did not finish in time and was stopped")
        }
    }

    // MARK: - Rolling back

    /// Undoes a rekey that failed before the swap: unmounts both stores, deletes the new one and
    /// the journal. Returns the error to report, with what the rollback did.
    private func rollBack(after error: Error) -> Error {
        runtime.acceptsStop = false
        var problems: [String] = []
        for role in ["new", "old"] {
            do {
                if role == "new" {
                    try unmount(&newMount)
                } else {
                    try unmount(&oldMount)
                }
            } catch {
                problems.append("\(error)")
            }
        }
        if problems.isEmpty {
            do {
                RekeyRecovery.removeMountDirectory(mountDirectory)
                if journal != nil {
                    try TreeRemoval.remove(layout.staging)
                    try RekeyJournal.remove(layout)
                }
            } catch {
                problems.append("\(error)")
            }
        }
        let state = problems.isEmpty
            ? "the rekey was rolled back and the store in \(cipherdir) is unchanged"
            : "the store in \(cipherdir) is unchanged, but the rollback is incomplete (\(problems.joined(separator: "; "))); the next `supervisor rekey` or `supervisor run` finishes it"
        if error is RekeyStopped {
            Log.warning("stopped by \(signalName(runtime.stopSignal)) before the swap; \(state)")
            return error
        }
        if let error = error as? SupervisorError {
            return SupervisorError(error.code, "\(error.message); \(state)")
        }
        return SupervisorError(.system, "\(error); \(state)")
    }
}

/// The one field of gocryptfs.conf that rekey reads.
private struct GocryptfsConfigFlags: Decodable {
    let featureFlags: [String]?

    enum CodingKeys: String, CodingKey {
        case featureFlags = "FeatureFlags"
    }
}
