import Glibc

/// The paths that `supervisor rekey` uses inside the cipherdir.
///
/// Everything stays inside the cipherdir, on the same filesystem, because the cipherdir is
/// often a volume's mount point, which cannot be renamed. Every name starts with
/// `.supervisor-rekey`: gocryptfs cannot decrypt such a name, so a mount of the store skips it
/// (gocryptfs 2.3 logs "invalid entry" when it lists the store's root).
struct RekeyLayout {
    static let prefix = ".supervisor-rekey"

    let cipherdir: String

    /// The journal: which phase the rekey is in, written atomically before each phase.
    var journal: String { "\(cipherdir)/\(Self.prefix).journal" }
    /// The work directory: `new` contains the new store while it is built, `old` receives the
    /// old store's entries during the swap.
    var staging: String { "\(cipherdir)/\(Self.prefix)" }
    var newStore: String { "\(staging)/new" }
    var oldStore: String { "\(staging)/old" }

    /// Returns an unused path for the kept old store: `.supervisor-rekey-old-<UTC time>` in the cipherdir.
    func keptOldStorePath() -> String {
        let base = "\(cipherdir)/\(Self.prefix)-old-\(DatabaseGuard.timestampForFileName())"
        var candidate = base
        var counter = 2
        while access(candidate, F_OK) == 0 {
            candidate = "\(base)-\(counter)"
            counter += 1
        }
        return candidate
    }

    /// Lists the entries of the store proper in `directory`: all but the rekey's own names and
    /// the `lost+found` of a filesystem root.
    static func storeEntries(of directory: String) throws -> [String] {
        guard let names = FileSystem.entries(of: directory) else {
            throw SupervisorError(.cipherdir, "cannot list \(directory): \(errnoText())")
        }
        return names.filter { !$0.hasPrefix(prefix) && $0 != "lost+found" }
    }

    var hasWork: Bool {
        access(journal, F_OK) == 0 || access(staging, F_OK) == 0
    }
}

/// The journal of a rekey in progress: its phase and what the next run needs to finish or roll it back.
///
/// The phase decides the recovery. `building`: the old store was never changed, so the new one
/// is deleted. `swapOut`, `swapIn`, `done`: the new store was complete and verified before the
/// swap began, so the swap is finished.
struct RekeyJournal: Equatable {
    enum Phase: String {
        /// The new store is being created, filled and verified; the old store is untouched.
        case building
        /// The old store's entries are being moved from the cipherdir into the staging `old` directory.
        case swapOut = "swap-out"
        /// The new store's entries are being moved from the staging `new` directory into the cipherdir.
        case swapIn = "swap-in"
        /// The new store is in place; the old store is being kept or removed.
        case done
    }

    var phase: Phase
    /// The directory that contains the rekey's temporary mountpoints, `old` and `new`.
    var mountDirectory: String
    /// The kept old store's path, or empty when `--remove-old` deletes the old store.
    var keptOldStore: String

    var text: String {
        "phase=\(phase.rawValue)\nmount-directory=\(mountDirectory)\nkept-old-store=\(keptOldStore)\n"
    }

    static func parse(_ text: String) -> RekeyJournal? {
        var values: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else {
                return nil
            }
            values[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        guard let phase = values["phase"].flatMap(Phase.init(rawValue:)),
              let mountDirectory = values["mount-directory"], mountDirectory.hasPrefix("/"), mountDirectory.count > 1,
              let keptOldStore = values["kept-old-store"], keptOldStore.isEmpty || keptOldStore.hasPrefix("/") else {
            return nil
        }
        return RekeyJournal(phase: phase, mountDirectory: mountDirectory, keptOldStore: keptOldStore)
    }

    /// Reads the journal; nil when there is none.
    static func read(_ layout: RekeyLayout) throws -> RekeyJournal? {
        guard access(layout.journal, F_OK) == 0 else {
            return nil
        }
        guard let content = FileSystem.readAll(layout.journal, limit: 65536) else {
            throw SupervisorError(.cipherdir, "cannot read the rekey journal \(layout.journal): \(errnoText())")
        }
        guard let journal = parse(String(decoding: content, as: UTF8.self)) else {
            throw SupervisorError(.cipherdir,
                "the rekey journal \(layout.journal) is not valid; restore the cipherdir from a backup, or follow the manual recovery in docs/keys.md")
        }
        return journal
    }

    /// Replaces the journal atomically: a temporary file is written and synced, renamed over
    /// the journal, and the cipherdir is synced, so a crash leaves either the old or the new text.
    func write(_ layout: RekeyLayout) throws {
        let temporary = layout.journal + ".tmp"
        unlink(temporary)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw SupervisorError(.cipherdir, "cannot create \(temporary): \(errnoText())")
        }
        let bytes = Array(text.utf8)
        let written = Glibc.write(fd, bytes, bytes.count)
        let synced = fsync(fd) == 0
        close(fd)
        guard written == bytes.count, synced else {
            unlink(temporary)
            throw SupervisorError(.cipherdir, "cannot write \(temporary): \(errnoText())")
        }
        guard rename(temporary, layout.journal) == 0 else {
            throw SupervisorError(.cipherdir, "cannot rename \(temporary) to \(layout.journal): \(errnoText())")
        }
        try DurableRename.syncDirectory(layout.cipherdir)
    }

    /// Removes the journal durably; the rekey has no trace left after this.
    static func remove(_ layout: RekeyLayout) throws {
        guard unlink(layout.journal) == 0 || errno == ENOENT else {
            throw SupervisorError(.cipherdir, "cannot remove the rekey journal \(layout.journal): \(errnoText())")
        }
        unlink(layout.journal + ".tmp")
        try DurableRename.syncDirectory(layout.cipherdir)
    }
}

/// Renames that must reach the disk in order.
enum DurableRename {
    /// Flushes a directory's entries to disk, so renames inside it survive a power loss.
    static func syncDirectory(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else {
            throw SupervisorError(.system, "cannot open \(path) to sync it: \(errnoText())")
        }
        defer { close(fd) }
        guard fsync(fd) == 0 else {
            throw SupervisorError(.system, "fsync of the directory \(path) failed: \(errnoText())")
        }
    }

    /// Renames `source` to `target`, refusing to replace an existing `target`.
    static func move(_ source: String, to target: String) throws {
        var info = stat()
        if lstat(target, &info) == 0 {
            throw SupervisorError(.cipherdir,
                "cannot move \(source) to \(target): the target exists; the rekey's swap found an unexpected file, see the manual recovery in docs/keys.md")
        }
        guard rename(source, target) == 0 else {
            throw SupervisorError(.cipherdir, "cannot move \(source) to \(target): \(errnoText())")
        }
    }
}
