import Glibc

/// `supervisor rekey`: replaces the store's master key. gocryptfs cannot change the master key
/// of a store, so the data is copied into a new store with a new key.
public struct RekeyCommand {
    public static let help = """
        Usage: supervisor rekey --new-passfile FILE [--old-passfile FILE] [--remove-old] [--mount-dir DIR] [OPTIONS]

        Replaces the master key of the gocryptfs store in the cipherdir, with the broker stopped:
        creates a new store with a new master key and the new passphrase inside the cipherdir,
        mounts both stores on temporary mountpoints, copies every file, remounts the new store
        and compares every file with the original (type, owner, mode, size, SHA-256), then swaps
        the stores by renames recorded in a journal. If the rekey is interrupted, the next
        `supervisor rekey` or `supervisor run` rolls it back (before the swap) or finishes it.
        The old passphrase and the old gocryptfs.conf cannot read the new store.

          --new-passfile FILE   file whose first line is the new passphrase, which must differ
                                from the current one; - reads standard input
          --old-passfile FILE   file whose first line is the current passphrase; - reads standard
                                input (default: the passfile that `supervisor run` reads)
          --remove-old          delete the old store after the swap; by default it is kept in
                                CIPHERDIR/.supervisor-rekey-old-<UTC time>, and opens with the
                                old passphrase until you delete it
          --mount-dir DIR       directory for the two temporary mountpoints (default /tmp)

        It reads these settings of `supervisor run` (flag or variable): --cipherdir, --passfile,
        --generated-passfile, --gocryptfs, --fusermount, --mount-timeout.

        Exit codes: 0 done; 64 invalid flags; 65 a passphrase is missing, empty, wrong or
        unchanged; 66 not root, or FUSE or a program is missing; 67 no store in the cipherdir;
        69 a temporary mount failed; 73 a temporary mount could not be unmounted; 76 the store is
        in use (mounted, or a supervisor holds its lock); 77 not enough free space on the
        cipherdir's filesystem; 78 a copied file differs from its original; 128+N stopped by
        signal N before the swap (the store is unchanged).
        """

    let options: KeyCommandOptions
    let environment: [String: String]

    public init(environment: [String: String], arguments: [String]) throws {
        options = try KeyCommandOptions.parse(command: "rekey", environment: environment, arguments: arguments, rekey: true)
        self.environment = environment
    }

    /// Runs the rekey and prints what it did; returns the exit code.
    public func run() throws -> Int32 {
        let runtime = try KeyCommandRuntime(environment: environment)
        let rekey = Rekey(options: options, runtime: runtime, progress: RekeyProgress(environment: environment))
        let started = ContinuousClock.now
        let outcome: Rekey.Outcome
        do {
            outcome = try rekey.run()
        } catch is RekeyStopped {
            return 128 + runtime.stopSignal
        }
        printSummary(outcome, elapsed: .now - started)
        return 0
    }

    private func printSummary(_ outcome: Rekey.Outcome, elapsed: Duration) {
        let settings = options.settings
        let cipherdir = settings.cipherdir
        if outcome.finishedEarlierRekey {
            print("finished an interrupted rekey of the gocryptfs store in \(cipherdir); nothing else was done")
            print("  the store opens only with the new passphrase given to that rekey")
        } else {
            print("rekeyed the gocryptfs store in \(cipherdir) with a new master key in \(formatDuration(elapsed))")
            print("  copied and verified (size and SHA-256) \(outcome.totals.summary)")
            print("  it now opens only with the passphrase from \(options.newPassfile == "-" ? "standard input" : options.newPassfile); the old passphrase and the old gocryptfs.conf cannot read it")
        }
        if outcome.keptOldStore.isEmpty {
            print("  the old store was removed")
        } else {
            print("  kept the old store in \(outcome.keptOldStore); it still opens with the old passphrase, so delete it (`rm -rf \(outcome.keptOldStore)`) once the broker runs on the new store")
        }
        print("  before the next `supervisor run`: put the new passphrase in \(options.runPassfile) and back up the new \(cipherdir)/gocryptfs.conf")
        fflush(nil)
    }
}
