import Glibc

/// The renames that put a verified new store in the old store's place inside the cipherdir,
/// and the clean-up after them.
///
/// The old store's entries all move out before any new entry moves in, and the journal records
/// the change of direction, so a name that both stores use (gocryptfs.conf, gocryptfs.diriv) is
/// never ambiguous. Each method only does what is left, so it can be repeated after a crash.
struct StoreSwap {
    let layout: RekeyLayout
    let progress: RekeyProgress

    /// Runs the swap from the journal's phase to the end and removes the journal.
    ///
    /// - Returns: the journal as it was when the swap completed.
    @discardableResult
    func finish(from start: RekeyJournal) throws -> RekeyJournal {
        var journal = start
        if journal.phase == .building {
            throw SupervisorError(.cipherdir, "internal error: the swap started before the new store was verified")
        }
        if journal.phase == .swapOut {
            try moveOldStoreOut()
            journal.phase = .swapIn
            try journal.write(layout)
            progress.reached(.swapInStarted)
        }
        if journal.phase == .swapIn {
            try moveNewStoreIn()
            journal.phase = .done
            try journal.write(layout)
            progress.reached(.swapDone)
        }
        try disposeOldStore(keepingAt: journal.keptOldStore)
        try RekeyJournal.remove(layout)
        progress.reached(.finished)
        return journal
    }

    private func moveOldStoreOut() throws {
        guard access("\(layout.newStore)/gocryptfs.conf", F_OK) == 0 else {
            throw SupervisorError(.cipherdir,
                "the journal \(layout.journal) says the swap has begun, but \(layout.newStore)/gocryptfs.conf is missing; the old store was not moved. See the manual recovery in docs/keys.md")
        }
        if access(layout.oldStore, F_OK) != 0 && mkdir(layout.oldStore, 0o700) != 0 {
            throw SupervisorError(.cipherdir, "cannot create \(layout.oldStore): \(errnoText())")
        }
        let names = try RekeyLayout.storeEntries(of: layout.cipherdir)
        for (index, name) in names.enumerated() {
            try DurableRename.move("\(layout.cipherdir)/\(name)", to: "\(layout.oldStore)/\(name)")
            if index == 0 {
                progress.reached(.firstOldEntryMoved, name)
            }
        }
        try DurableRename.syncDirectory(layout.cipherdir)
        try DurableRename.syncDirectory(layout.oldStore)
        progress.reached(.oldEntriesMoved, "\(names.count) entries")
    }

    private func moveNewStoreIn() throws {
        guard let names = FileSystem.entries(of: layout.newStore) else {
            throw SupervisorError(.cipherdir, "cannot list the new store \(layout.newStore): \(errnoText())")
        }
        for (index, name) in names.enumerated() {
            try DurableRename.move("\(layout.newStore)/\(name)", to: "\(layout.cipherdir)/\(name)")
            if index == 0 {
                progress.reached(.firstNewEntryMoved, name)
            }
        }
        try DurableRename.syncDirectory(layout.newStore)
        try DurableRename.syncDirectory(layout.cipherdir)
        progress.reached(.newEntriesMoved, "\(names.count) entries")
    }

    /// Renames the old store to `keptPath`, or deletes it when `keptPath` is empty, then
    /// removes the empty staging directories.
    private func disposeOldStore(keepingAt keptPath: String) throws {
        if access(layout.oldStore, F_OK) == 0 {
            if keptPath.isEmpty {
                try TreeRemoval.remove(layout.oldStore)
            } else {
                try DurableRename.move(layout.oldStore, to: keptPath)
            }
        }
        for directory in [layout.newStore, layout.staging] where access(directory, F_OK) == 0 {
            guard rmdir(directory) == 0 else {
                throw SupervisorError(.cipherdir,
                    "cannot remove \(directory): \(errnoText()); it should be empty after the swap. See the manual recovery in docs/keys.md")
            }
        }
        try DurableRename.syncDirectory(layout.cipherdir)
        progress.reached(.oldStoreDisposed, keptPath.isEmpty ? "removed the old store" : "kept the old store in \(keptPath)")
    }
}

/// Deletes a directory tree without following symbolic links or crossing into another mount.
enum TreeRemoval {
    static func remove(_ path: String) throws {
        try remove(path, device: nil)
    }

    private static func remove(_ path: String, device: dev_t?) throws {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            if errno == ENOENT {
                return
            }
            throw SupervisorError(.system, "cannot inspect \(path) to remove it: \(errnoText())")
        }
        if let device, info.st_dev != device {
            throw SupervisorError(.system, "refusing to remove \(path): another filesystem is mounted there; unmount it first")
        }
        if info.st_mode & S_IFMT == S_IFDIR {
            guard let names = FileSystem.entries(of: path) else {
                throw SupervisorError(.system, "cannot list \(path) to remove it: \(errnoText())")
            }
            for name in names {
                try remove("\(path)/\(name)", device: info.st_dev)
            }
            guard rmdir(path) == 0 else {
                throw SupervisorError(.system, "cannot remove the directory \(path): \(errnoText())")
            }
        } else {
            guard unlink(path) == 0 else {
                throw SupervisorError(.system, "cannot remove \(path): \(errnoText())")
            }
        }
    }
}
