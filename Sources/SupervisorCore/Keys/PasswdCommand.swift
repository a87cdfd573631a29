import Glibc

/// `supervisor passwd`: changes the passphrase that unlocks the store with `gocryptfs -passwd`,
/// which wraps the same master key with a key derived from the new passphrase.
///
/// It only rewrites gocryptfs.conf, so it works while the supervisor's broker runs on the
/// store: the running mount keeps its master key in memory, and the next mount needs the new
/// passphrase. It refuses while the store is mounted anywhere else, because the process behind
/// that mount would find its passphrase no longer working at its next mount.
public struct PasswdCommand {
    public static let help = """
        Usage: supervisor passwd --new-passfile FILE [--old-passfile FILE] [OPTIONS]

        Changes the passphrase of the gocryptfs store in the cipherdir. The master key and the data
        stay the same: a copy of the old gocryptfs.conf still opens the store with the old
        passphrase, so destroy such copies, or rotate the master key with `supervisor rekey`.
        Works whether or not `supervisor run` has the store mounted on its mountpoint.

          --new-passfile FILE   file whose first line is the new passphrase; - reads standard input
          --old-passfile FILE   file whose first line is the current passphrase; - reads standard
                                input (default: the passfile that `supervisor run` reads)

        It reads these settings of `supervisor run` (flag or variable): --cipherdir, --mountpoint,
        --passfile, --generated-passfile, --gocryptfs. Passphrases are never taken from arguments
        or from GOCRYPT_PASSWORD.

        Exit codes: 0 changed; 64 invalid flags; 65 a passphrase is missing, empty, wrong or
        unchanged; 66 gocryptfs is missing; 67 no store in the cipherdir, or gocryptfs.conf.tmp
        is left from an interrupted change; 76 the store is mounted elsewhere, a rekey is running,
        or an interrupted rekey has not been finished yet.
        """

    let options: KeyCommandOptions
    let environment: [String: String]

    public init(environment: [String: String], arguments: [String]) throws {
        options = try KeyCommandOptions.parse(command: "passwd", environment: environment, arguments: arguments, rekey: false)
        self.environment = environment
    }

    /// Changes the passphrase and prints what changed; returns the exit code.
    public func run() throws -> Int32 {
        let settings = options.settings
        let cipherdir = settings.cipherdir
        guard Cipherdir(path: cipherdir).isInitialized else {
            throw SupervisorError(.cipherdir,
                "no gocryptfs store in \(cipherdir): gocryptfs.conf does not exist; passwd changes the passphrase of an existing store, so check --cipherdir or SUPERVISOR_CIPHERDIR")
        }
        try Self.rejectLeftoverTemporaryConfig(in: cipherdir)
        let runtime = try KeyCommandRuntime(environment: environment)
        let gocryptfs = try runtime.locate(settings.gocryptfs, variable: "SUPERVISOR_GOCRYPTFS", package: "gocryptfs")
        let old = try options.oldPassphrase()
        let new = try options.newPassphrase()
        guard old.bytes != new.bytes else {
            throw SupervisorError(.passphrase,
                "the new passphrase from \(new.origin) is the same as the current one from \(old.origin); choose a different passphrase")
        }

        let lock = try Self.lockShared(cipherdir)
        defer { withExtendedLifetime(lock) {} }
        if RekeyLayout(cipherdir: cipherdir).hasWork {
            throw SupervisorError(.inUse,
                "an interrupted `supervisor rekey` left its journal in \(cipherdir); run `supervisor rekey` or `supervisor run` to finish or roll it back, then change the passphrase")
        }
        let supervisorMount = try Self.checkMounts(of: cipherdir, supervisorMountpoint: settings.mountpoint)

        var request = SpawnRequest(path: gocryptfs, arguments: ["-passwd", "--", cipherdir], environment: runtime.environment)
        request.newSession = true
        let input = old.bytes + [UInt8(ascii: "\n")] + new.bytes + [UInt8(ascii: "\n")]
        let started = ContinuousClock.now
        // A stop request waits until gocryptfs has finished, because stopping it between writing
        // gocryptfs.conf.tmp and the rename would leave that file behind.
        let finished = try runtime.withoutStops {
            try runtime.children.run(request, input: input, timeout: .seconds(120))
        }
        guard let result = finished else {
            throw SupervisorError(.system,
                "gocryptfs -passwd on \(cipherdir) did not finish within 120 s and was stopped; if \(cipherdir)/gocryptfs.conf.tmp is left, the next passwd explains what to do")
        }
        guard result.status == .exited(0) else {
            throw Self.error(for: result.status, output: result.output, cipherdir: cipherdir, old: old)
        }
        Log.info("gocryptfs -passwd changed the passphrase of \(cipherdir) in \(formatDuration(.now - started))")
        printSummary(old: old, new: new, supervisorMount: supervisorMount)
        return 0
    }

    private func printSummary(old: Passphrase, new: Passphrase, supervisorMount: MountEntry?) {
        let settings = options.settings
        print("changed the passphrase of the gocryptfs store in \(settings.cipherdir)")
        print("  it now opens only with the passphrase from \(new.origin); the one from \(old.origin) no longer opens it")
        print("  the master key and the data are unchanged; an old copy of gocryptfs.conf still opens the store with the old passphrase, so destroy old copies and back up the new \(settings.cipherdir)/gocryptfs.conf")
        if let supervisorMount {
            print("  the mount on \(supervisorMount.mountpoint) keeps working; the next `supervisor run` needs the new passphrase")
        }
        let runPassfile = options.runPassfile
        if new.origin != runPassfile {
            print("  put the new passphrase in \(runPassfile) (the passfile `supervisor run` reads) before the broker starts again")
        }
        fflush(nil)
    }

    /// gocryptfs -passwd writes the new configuration to gocryptfs.conf.tmp with O_EXCL and
    /// renames it over gocryptfs.conf. A leftover file means a change was interrupted before
    /// the rename (gocryptfs 2.3 then exits with code 24), and gocryptfs.conf is still valid.
    static func rejectLeftoverTemporaryConfig(in cipherdir: String) throws {
        let temporary = "\(cipherdir)/gocryptfs.conf.tmp"
        var info = stat()
        guard lstat(temporary, &info) == 0 else {
            return
        }
        throw leftoverTemporaryConfigError(temporary)
    }

    static func leftoverTemporaryConfigError(_ temporary: String) -> SupervisorError {
        SupervisorError(.cipherdir,
            "\(temporary) is left from an interrupted passphrase change: gocryptfs writes the new configuration there and renames it over gocryptfs.conf, so gocryptfs.conf still holds the passphrase from before that change. Make sure no passwd is running, delete \(temporary), then run passwd again")
    }

    /// Takes the store's lock shared: a running broker holds it shared too, a rekey exclusively.
    static func lockShared(_ cipherdir: String) throws -> StoreLock? {
        switch try StoreLock.acquire(cipherdir, exclusive: false) {
        case .acquired(let lock):
            return lock
        case .busy:
            throw SupervisorError(.inUse,
                "`supervisor rekey` is working on the store in \(cipherdir) (it holds the store's lock); wait until it has finished, then change the passphrase")
        case .unsupported(let reason):
            Log.warning("cannot lock the cipherdir \(cipherdir) (\(reason)); a rekey running at the same time would not be noticed")
            return nil
        }
    }

    /// Rejects gocryptfs mounts of the store other than the one on the supervisor's mountpoint.
    ///
    /// - Returns: the supervisor's mount, when the store is mounted there.
    static func checkMounts(of cipherdir: String, supervisorMountpoint: String) throws -> MountEntry? {
        let mounts = StoreMounts.mounts(of: cipherdir)
        let ownMountpoint = StoreMounts.canonical(supervisorMountpoint)
        if let other = mounts.first(where: { $0.mountpoint != ownMountpoint }) {
            throw SupervisorError(.inUse,
                "the store in \(cipherdir) is mounted on \(other.mountpoint), which is not the supervisor's mountpoint \(supervisorMountpoint); that mount's next start would need the new passphrase. Unmount it (`fusermount3 -u \(other.mountpoint)`) or set --mountpoint to it, then run passwd again")
        }
        return mounts.first
    }

    static func error(for status: ExitStatus, output: [String], cipherdir: String, old: Passphrase) -> SupervisorError {
        let progress = ["Reading Password from stdin", "Decrypting master key", "Please enter your new password."]
        let detail = output.filter { !progress.contains($0) }.joined(separator: " ")
        switch status {
        case .exited(12):
            return SupervisorError(.passphrase,
                "the current passphrase from \(old.origin) does not open the store in \(cipherdir); give the passphrase it opens with in --old-passfile. Nothing was changed")
        case .exited(24) where access("\(cipherdir)/gocryptfs.conf.tmp", F_OK) == 0:
            return leftoverTemporaryConfigError("\(cipherdir)/gocryptfs.conf.tmp")
        default:
            return GocryptfsExit.error(code: status.shellCode, cipherdir: cipherdir, mountpoint: "", operation: "-passwd", output: detail)
        }
    }
}
