import Glibc
import Synchronization

/// An advisory lock, flock(2), on the cipherdir directory itself, which keeps `supervisor rekey`
/// away from a store that is in use.
///
/// `supervisor run` and `supervisor passwd` hold it shared; `supervisor rekey` and the recovery of
/// an interrupted rekey hold it exclusively. The lock belongs to the directory's inode, so it
/// also works between containers that mount the same volume on one host. A network
/// filesystem may not support it.
public final class StoreLock {
    public let path: String
    private let fd: Int32

    private init(path: String, fd: Int32) {
        self.path = path
        self.fd = fd
    }

    deinit {
        close(fd)
    }

    public enum Outcome {
        case acquired(StoreLock)
        /// Another process holds a lock that conflicts with the one requested.
        case busy
        /// The filesystem does not support flock; the errno text.
        case unsupported(String)
    }

    /// Tries to lock the directory at `path` without waiting.
    public static func acquire(_ path: String, exclusive: Bool) throws -> Outcome {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else {
            throw SupervisorError(.cipherdir, "cannot open the cipherdir \(path) to lock it: \(errnoText())")
        }
        if flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) == 0 {
            return .acquired(StoreLock(path: path, fd: fd))
        }
        let code = errno
        close(fd)
        if code == EWOULDBLOCK || code == EINTR {
            return .busy
        }
        if code == ENOLCK || code == EINVAL || code == EOPNOTSUPP {
            return .unsupported(errnoText(code))
        }
        throw SupervisorError(.system, "flock on the cipherdir \(path) failed: \(errnoText(code))")
    }

    /// The shared lock `supervisor run` holds until the process exits.
    private static let heldForRun = Mutex<[String: Int32]>([:])

    /// Takes the shared lock for `supervisor run` and keeps it until the process exits, so that
    /// `supervisor rekey` refuses to work on the store meanwhile. A second call for the same
    /// path does nothing.
    ///
    /// - Throws: `inUse` while a rekey holds the lock.
    public static func holdForRun(cipherdir: String) throws {
        let alreadyHeld = heldForRun.withLock { $0[cipherdir] != nil }
        if alreadyHeld {
            return
        }
        switch try acquire(cipherdir, exclusive: false) {
        case .acquired(let lock):
            let fd = dup(lock.fd)
            guard fd >= 0 else {
                throw SupervisorError(.system, "dup of the cipherdir lock failed: \(errnoText())")
            }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            heldForRun.withLock { $0[cipherdir] = fd }
        case .busy:
            throw SupervisorError(.inUse,
                "`supervisor rekey` is working on the store in \(cipherdir) (it holds the store's lock); wait until it has finished, then start again")
        case .unsupported(let reason):
            Log.warning("cannot lock the cipherdir \(cipherdir) (\(reason)); `supervisor rekey` will not notice that this broker uses the store")
        }
    }
}
