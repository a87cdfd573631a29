import Glibc

/// Finishes or rolls back a `supervisor rekey` that was interrupted (killed, or the machine
/// stopped), using its journal in the cipherdir. It needs no passphrase: before the swap the
/// old store was never changed, and from the swap on only renames are left to do.
public enum RekeyRecovery {
    enum Outcome: Equatable {
        /// The journal was in phase `building`: the unfinished new store was deleted.
        case rolledBack
        /// The swap had begun: it was finished; the path of the kept old store, or empty.
        case finished(keptOldStore: String)
    }

    /// Finishes or rolls back an interrupted rekey of the store in `cipherdir`, if there is
    /// one. `supervisor run` calls it before it prepares the cipherdir, because a half-swapped
    /// cipherdir looks like neither store.
    ///
    /// - Throws: `inUse` while a rekey is running (it holds the store's lock).
    public static func finishInterruptedRekey(cipherdir: String, fusermount: String, children: ChildProcesses) throws {
        let layout = RekeyLayout(cipherdir: cipherdir)
        guard layout.hasWork else {
            return
        }
        let lock: StoreLock?
        switch try StoreLock.acquire(cipherdir, exclusive: true) {
        case .acquired(let acquired):
            lock = acquired
        case .busy:
            throw SupervisorError(.inUse,
                "`supervisor rekey` is working on the store in \(cipherdir) (its journal exists and another process holds the store's lock); wait until it has finished, then start again")
        case .unsupported(let reason):
            Log.warning("cannot lock the cipherdir \(cipherdir) (\(reason)); recovering the interrupted rekey without the lock")
            lock = nil
        }
        try withExtendedLifetime(lock) {
            _ = try recover(layout, fusermount: fusermount, children: children, progress: RekeyProgress())
        }
    }

    /// Recovers the rekey recorded in `layout`'s journal. The caller holds the store's lock
    /// exclusively.
    @discardableResult
    static func recover(_ layout: RekeyLayout, fusermount: String, children: ChildProcesses, progress: RekeyProgress) throws -> Outcome {
        guard let journal = try RekeyJournal.read(layout) else {
            throw SupervisorError(.cipherdir,
                "\(layout.staging) exists without the rekey journal \(layout.journal), so it is not a rekey in progress; move it out of the cipherdir, then start again")
        }
        Log.warning("found an interrupted `supervisor rekey` in \(layout.cipherdir) (journal phase \(journal.phase.rawValue))")
        try unmountLeftovers(of: journal, layout: layout, fusermount: fusermount, children: children)
        removeMountDirectory(journal.mountDirectory)
        if journal.phase == .building {
            try TreeRemoval.remove(layout.staging)
            try RekeyJournal.remove(layout)
            Log.warning("rolled back the interrupted rekey: the store in \(layout.cipherdir) keeps its old master key and opens with the old passphrase; the unfinished new store was deleted")
            return .rolledBack
        }
        let finished = try StoreSwap(layout: layout, progress: progress).finish(from: journal)
        let oldStore = finished.keptOldStore.isEmpty ? "the old store was removed" : "the old store is kept in \(finished.keptOldStore)"
        Log.warning("finished the interrupted rekey: the store in \(layout.cipherdir) has the new master key and opens only with the new passphrase given to that rekey; \(oldStore)")
        return .finished(keptOldStore: finished.keptOldStore)
    }

    /// Unmounts the temporary mounts that a killed rekey left: its gocryptfs processes may
    /// still serve them, or they may be dead mounts.
    static func unmountLeftovers(of journal: RekeyJournal, layout: RekeyLayout, fusermount: String, children: ChildProcesses) throws {
        let entries = MountTable.current()
        var leftovers = entries.filter {
            $0.filesystemType == MountProof.filesystemType && $0.mountpoint.hasPrefix(journal.mountDirectory + "/")
        }
        for entry in StoreMounts.mounts(of: layout.newStore, in: entries) where !leftovers.contains(entry) {
            leftovers.append(entry)
        }
        for entry in leftovers {
            Log.warning("unmounting \(entry.mountpoint), a temporary mount of \(entry.source) left by the interrupted rekey")
            let mount = GocryptfsMount(cipherdir: entry.source, mountpoint: entry.mountpoint)
            guard mount.unmount(fusermount: fusermount, children: children) else {
                throw SupervisorError(.unmount,
                    "cannot unmount \(entry.mountpoint), left by an interrupted rekey; run `fusermount3 -u \(entry.mountpoint)` (or `umount -l \(entry.mountpoint)`), then start again")
            }
        }
    }

    /// Removes the temporary mountpoints when they exist in this mount namespace and are empty.
    static func removeMountDirectory(_ directory: String) {
        guard !directory.isEmpty else {
            return
        }
        rmdir("\(directory)/old")
        rmdir("\(directory)/new")
        rmdir(directory)
    }
}
