import Glibc

/// Compares the plaintext tree of the old store with the copy in the new store: the same
/// names, types, owners and modes, and for each regular file the same size and SHA-256 digest.
///
/// Run it on a fresh mount of the new store, so the copy is read back through gocryptfs from
/// the ciphertext instead of from the kernel's page cache.
struct TreeVerifier {
    /// Polled between files and between 1 MiB chunks; true makes the verification stop with `RekeyStopped`.
    let shouldStop: () -> Bool

    func verify(original: String, copy: String) throws -> TreeTotals {
        var totals = TreeTotals()
        var buffer = [UInt8](repeating: 0, count: TreeCopier.bufferSize)
        try compareMetadata(original, copy, relative: "/")
        try compareContents(original, copy, relative: "", totals: &totals, buffer: &buffer)
        return totals
    }

    private func compareContents(_ original: String, _ copy: String, relative: String,
                                 totals: inout TreeTotals, buffer: inout [UInt8]) throws {
        guard let names = FileSystem.entries(of: original) else {
            throw SupervisorError(.system, "cannot list \(TreeCopier.display(relative)) in the old store: \(errnoText())")
        }
        guard let copiedNames = FileSystem.entries(of: copy) else {
            throw SupervisorError(.system, "cannot list \(TreeCopier.display(relative)) in the new store: \(errnoText())")
        }
        guard names == copiedNames else {
            let missing = names.filter { !copiedNames.contains($0) }
            let extra = copiedNames.filter { !names.contains($0) }
            throw SupervisorError(.verification,
                "the new store's directory \(TreeCopier.display(relative)) lacks [\(FileSystem.summarize(missing))] and has extra [\(FileSystem.summarize(extra))]")
        }
        for name in names {
            if shouldStop() {
                throw RekeyStopped()
            }
            let path = "\(relative)/\(name)"
            let info = try compareMetadata("\(original)/\(name)", "\(copy)/\(name)", relative: path)
            switch info.st_mode & S_IFMT {
            case S_IFDIR:
                try compareContents("\(original)/\(name)", "\(copy)/\(name)", relative: path, totals: &totals, buffer: &buffer)
                totals.directories += 1
            case S_IFREG:
                let first = try digest(of: "\(original)/\(name)", store: "old", relative: path, buffer: &buffer)
                let second = try digest(of: "\(copy)/\(name)", store: "new", relative: path, buffer: &buffer)
                guard first.size == second.size else {
                    throw SupervisorError(.verification, "the copy of \(path) has \(second.size) bytes, the original \(first.size)")
                }
                guard first.digest == second.digest else {
                    throw SupervisorError(.verification,
                        "the copy of \(path) has SHA-256 \(SHA256.hex(second.digest)), the original \(SHA256.hex(first.digest))")
                }
                totals.files += 1
                totals.bytes += first.size
            case S_IFLNK:
                let target = try TreeCopier.linkTarget("\(original)/\(name)", relative: path)
                let copiedTarget = try TreeCopier.linkTarget("\(copy)/\(name)", relative: path)
                guard target == copiedTarget else {
                    throw SupervisorError(.verification, "the copy of the symbolic link \(path) points to \(copiedTarget), the original to \(target)")
                }
                totals.symbolicLinks += 1
            default:
                throw SupervisorError(.cipherdir, "\(path) in the store is a device, socket or pipe, which rekey does not copy")
            }
        }
    }

    /// Checks type, owner, mode and, for regular files, the size that stat reports.
    @discardableResult
    private func compareMetadata(_ original: String, _ copy: String, relative: String) throws -> stat {
        var first = stat()
        var second = stat()
        guard lstat(original, &first) == 0 else {
            throw SupervisorError(.system, "cannot read \(relative) in the old store: \(errnoText())")
        }
        guard lstat(copy, &second) == 0 else {
            throw SupervisorError(.verification, "the copy of \(relative) cannot be read: \(errnoText())")
        }
        guard first.st_mode & S_IFMT == second.st_mode & S_IFMT else {
            throw SupervisorError(.verification, "the copy of \(relative) is not of the original's file type")
        }
        guard first.st_uid == second.st_uid, first.st_gid == second.st_gid else {
            throw SupervisorError(.verification,
                "the copy of \(relative) is owned by \(second.st_uid):\(second.st_gid), the original by \(first.st_uid):\(first.st_gid)")
        }
        let isLink = first.st_mode & S_IFMT == S_IFLNK
        guard isLink || first.st_mode & 0o7777 == second.st_mode & 0o7777 else {
            throw SupervisorError(.verification,
                "the copy of \(relative) has mode \(String(second.st_mode & 0o7777, radix: 8)), the original \(String(first.st_mode & 0o7777, radix: 8))")
        }
        guard first.st_mode & S_IFMT != S_IFREG || first.st_size == second.st_size else {
            throw SupervisorError(.verification, "the copy of \(relative) has \(second.st_size) bytes, the original \(first.st_size)")
        }
        return first
    }

    private func digest(of path: String, store: String, relative: String,
                        buffer: inout [UInt8]) throws -> (size: Int64, digest: [UInt8]) {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else {
            throw SupervisorError(store == "old" ? .system : .verification, "cannot open \(relative) in the \(store) store: \(errnoText())")
        }
        defer { close(fd) }
        var hasher = SHA256()
        var size: Int64 = 0
        while true {
            let count = read(fd, &buffer, buffer.count)
            if count < 0 && errno == EINTR {
                continue
            }
            guard count >= 0 else {
                throw SupervisorError(store == "old" ? .system : .verification, "cannot read \(relative) in the \(store) store: \(errnoText())")
            }
            if count == 0 {
                break
            }
            if shouldStop() {
                throw RekeyStopped()
            }
            hasher.update(buffer[0..<count])
            size += Int64(count)
        }
        return (size, hasher.finalize())
    }
}
