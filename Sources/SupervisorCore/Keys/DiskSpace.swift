import Glibc

/// The space check `supervisor rekey` makes before it writes anything: the new store is built
/// beside the old one on the cipherdir's filesystem, so that filesystem needs room for a
/// second copy of the store.
enum DiskSpace {
    /// Space kept free beyond the copy itself, so the filesystem is not left full.
    static let headroomBytes: Int64 = 4 << 20

    struct Usage {
        /// Bytes allocated on disk (st_blocks × 512).
        var bytes: Int64 = 0
        var inodes: Int64 = 0
    }

    /// Returns what the store's entries in the cipherdir occupy, without the rekey's own
    /// directories (a kept old store, for example).
    static func usage(ofStoreIn cipherdir: String) throws -> Usage {
        var usage = Usage()
        for name in try RekeyLayout.storeEntries(of: cipherdir) {
            try add("\(cipherdir)/\(name)", to: &usage)
        }
        return usage
    }

    private static func add(_ path: String, to usage: inout Usage) throws {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            throw SupervisorError(.cipherdir, "cannot inspect \(path): \(errnoText())")
        }
        usage.bytes += Int64(info.st_blocks) * 512
        usage.inodes += 1
        guard info.st_mode & S_IFMT == S_IFDIR else {
            return
        }
        guard let names = FileSystem.entries(of: path) else {
            throw SupervisorError(.cipherdir, "cannot list \(path): \(errnoText())")
        }
        for name in names {
            try add("\(path)/\(name)", to: &usage)
        }
    }

    /// Returns the bytes the copy needs: what the old store occupies, plus 5% for differences
    /// in allocation, plus the headroom. gocryptfs stores the same plaintext in ciphertext of
    /// the same size under any key, so this is an estimate with margin, not a measurement.
    static func bytesNeeded(for usage: Usage) -> Int64 {
        usage.bytes + usage.bytes / 20 + headroomBytes
    }

    /// Rejects a rekey when the cipherdir's filesystem has too few free bytes or inodes.
    static func check(cipherdir: String) throws -> (needed: Int64, available: Int64) {
        let usage = try usage(ofStoreIn: cipherdir)
        var info = statvfs()
        guard statvfs(cipherdir, &info) == 0 else {
            throw SupervisorError(.system, "statvfs on the cipherdir \(cipherdir) failed: \(errnoText())")
        }
        let available = Int64(info.f_bavail) * Int64(info.f_frsize)
        let needed = bytesNeeded(for: usage)
        guard available >= needed else {
            throw SupervisorError(.noSpace,
                "not enough free space for rekey on the filesystem of \(cipherdir): the new store needs about \(mebibytes(needed)) (the old store uses \(mebibytes(usage.bytes)), plus 5% and \(mebibytes(headroomBytes)) headroom), \(mebibytes(available)) are free; free some space or move the store to a larger volume")
        }
        // Filesystems without a fixed inode count (btrfs, for example) report 0 inodes in total.
        let inodesNeeded = usage.inodes + 64
        if info.f_files > 0 && Int64(info.f_favail) < inodesNeeded {
            throw SupervisorError(.noSpace,
                "not enough free inodes for rekey on the filesystem of \(cipherdir): the new store needs about \(inodesNeeded), \(info.f_favail) are free; free some inodes or move the store to a larger volume")
        }
        return (needed, available)
    }

    static func mebibytes(_ bytes: Int64) -> String {
        let value = Double(bytes) / 1_048_576
        return value < 10 ? "\((value * 10).rounded() / 10) MiB" : "\(Int(value.rounded())) MiB"
    }
}
