import Glibc

/// Counts of what a copy or a verification went through.
struct TreeTotals: Equatable {
    var files = 0
    var directories = 0
    var symbolicLinks = 0
    var bytes: Int64 = 0

    var summary: String {
        "\(files) files (\(bytes) bytes), \(directories) directories, \(symbolicLinks) symbolic links"
    }
}

/// Thrown when SIGTERM or SIGINT arrives while a rekey copies or verifies; the rekey then rolls back.
struct RekeyStopped: Error {}

/// Copies the plaintext tree of the old store's mount into the new store's mount: regular
/// files, directories and symbolic links, with owner, mode and times.
///
/// The plaintext passes only through this process's memory and the two FUSE mounts, so
/// nothing of it reaches the disk unencrypted. Hard links are copied as separate files and
/// extended attributes are not copied; Mosquitto creates neither.
struct TreeCopier {
    static let bufferSize = 1 << 20

    /// Polled between files and between 1 MiB chunks; true makes the copy stop with `RekeyStopped`.
    let shouldStop: () -> Bool

    func copy(from source: String, to destination: String) throws -> TreeTotals {
        var totals = TreeTotals()
        var buffer = [UInt8](repeating: 0, count: Self.bufferSize)
        try copyContents(of: source, to: destination, relative: "", totals: &totals, buffer: &buffer)
        var rootInfo = stat()
        guard lstat(source, &rootInfo) == 0 else {
            throw SupervisorError(.system, "cannot read the root of the old store's mount \(source): \(errnoText())")
        }
        try applyAttributes(of: rootInfo, to: destination, relative: "/")
        return totals
    }

    private func copyContents(of source: String, to destination: String, relative: String,
                              totals: inout TreeTotals, buffer: inout [UInt8]) throws {
        guard let names = FileSystem.entries(of: source) else {
            throw SupervisorError(.system, "cannot list \(Self.display(relative)) in the old store: \(errnoText())")
        }
        for name in names {
            if shouldStop() {
                throw RekeyStopped()
            }
            let from = "\(source)/\(name)"
            let to = "\(destination)/\(name)"
            let path = "\(relative)/\(name)"
            var info = stat()
            guard lstat(from, &info) == 0 else {
                throw SupervisorError(.system, "cannot read \(path) in the old store: \(errnoText())")
            }
            switch info.st_mode & S_IFMT {
            case S_IFDIR:
                guard mkdir(to, 0o700) == 0 else {
                    throw SupervisorError(.system, "cannot create the directory \(path) in the new store: \(errnoText())")
                }
                try copyContents(of: from, to: to, relative: path, totals: &totals, buffer: &buffer)
                try applyAttributes(of: info, to: to, relative: path)
                totals.directories += 1
            case S_IFREG:
                totals.bytes += try copyFile(from, to: to, info: info, relative: path, buffer: &buffer)
                totals.files += 1
            case S_IFLNK:
                let target = try Self.linkTarget(from, relative: path)
                guard symlink(target, to) == 0 else {
                    throw SupervisorError(.system, "cannot create the symbolic link \(path) in the new store: \(errnoText())")
                }
                try applyAttributes(of: info, to: to, relative: path, isLink: true)
                totals.symbolicLinks += 1
            default:
                throw SupervisorError(.cipherdir,
                    "\(path) in the store is a device, socket or pipe, which rekey does not copy; move it out of the store with `supervisor run` stopped, then run rekey again")
            }
        }
    }

    private func copyFile(_ source: String, to destination: String, info: stat, relative: String,
                          buffer: inout [UInt8]) throws -> Int64 {
        let input = open(source, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard input >= 0 else {
            throw SupervisorError(.system, "cannot open \(relative) in the old store: \(errnoText())")
        }
        defer { close(input) }
        let output = open(destination, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard output >= 0 else {
            throw SupervisorError(.system, "cannot create \(relative) in the new store: \(errnoText())")
        }
        defer { close(output) }
        var copied: Int64 = 0
        while true {
            let count = read(input, &buffer, buffer.count)
            if count < 0 && errno == EINTR {
                continue
            }
            guard count >= 0 else {
                throw SupervisorError(.system, "cannot read \(relative) in the old store: \(errnoText())")
            }
            if count == 0 {
                break
            }
            if shouldStop() {
                throw RekeyStopped()
            }
            var offset = 0
            while offset < count {
                let written = buffer.withUnsafeBytes { Glibc.write(output, $0.baseAddress! + offset, count - offset) }
                if written < 0 && errno == EINTR {
                    continue
                }
                guard written > 0 else {
                    throw SupervisorError(.system, "cannot write \(relative) in the new store: \(errnoText())")
                }
                offset += written
            }
            copied += Int64(count)
        }
        // chown clears set-user-ID bits, so the mode is set after the owner.
        var times = [info.st_atim, info.st_mtim]
        guard fchown(output, info.st_uid, info.st_gid) == 0,
              fchmod(output, info.st_mode & 0o7777) == 0,
              futimens(output, &times) == 0 else {
            throw SupervisorError(.system, "cannot set the owner, mode or times of \(relative) in the new store: \(errnoText())")
        }
        return copied
    }

    private func applyAttributes(of info: stat, to path: String, relative: String, isLink: Bool = false) throws {
        var times = [info.st_atim, info.st_mtim]
        if isLink {
            guard fchownat(AT_FDCWD, path, info.st_uid, info.st_gid, AT_SYMLINK_NOFOLLOW) == 0 else {
                throw SupervisorError(.system, "cannot set the owner of the symbolic link \(relative) in the new store: \(errnoText())")
            }
            // Times of a symbolic link are kept when the filesystem allows it; nothing reads them.
            _ = utimensat(AT_FDCWD, path, &times, AT_SYMLINK_NOFOLLOW)
            return
        }
        guard chown(path, info.st_uid, info.st_gid) == 0,
              chmod(path, info.st_mode & 0o7777) == 0,
              utimensat(AT_FDCWD, path, &times, 0) == 0 else {
            throw SupervisorError(.system, "cannot set the owner, mode or times of \(Self.display(relative)) in the new store: \(errnoText())")
        }
    }

    static func linkTarget(_ path: String, relative: String) throws -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let length = readlink(path, &buffer, buffer.count - 1)
        guard length >= 0 else {
            throw SupervisorError(.system, "cannot read the symbolic link \(relative): \(errnoText())")
        }
        return String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func display(_ relative: String) -> String {
        relative.isEmpty ? "/" : relative
    }
}
