import Glibc

/// Checks that the mountpoint is the live gocryptfs mount of the cipherdir before the broker
/// writes to it.
public enum MountProof {
    public static let filesystemType = "fuse.gocryptfs"

    /// Returns nil when `entry` is a gocryptfs mount of `cipherdir`, or the reason it is not.
    public static func mismatch(of entry: MountEntry?, cipherdir: String) -> String? {
        guard let entry else {
            return "no mount is listed in /proc/self/mountinfo"
        }
        guard entry.filesystemType == filesystemType else {
            return "the mount is \(entry.filesystemType), not \(filesystemType)"
        }
        guard entry.source == cipherdir else {
            return "the mount's source is \(entry.source), not \(cipherdir)"
        }
        return nil
    }

    /// Proves the mount: listed as gocryptfs of the cipherdir, root owned by the broker user
    /// (set on first start), and writable by that user.
    public static func prove(mountpoint: String, cipherdir: String, user: UserAccount) throws {
        let canonicalCipherdir = realpath(cipherdir, nil).map { pointer in
            defer { free(pointer) }
            return String(cString: pointer)
        } ?? cipherdir
        if let reason = mismatch(of: MountTable.entry(at: mountpoint), cipherdir: canonicalCipherdir) {
            throw SupervisorError(.mount, "the store is not mounted on \(mountpoint): \(reason); the broker was not started")
        }
        let liveness = Mountpoint.liveness(of: mountpoint)
        guard liveness == 0 else {
            throw SupervisorError(.mount, "the mount on \(mountpoint) does not respond: \(errnoText(liveness)); the broker was not started")
        }
        var info = stat()
        guard stat(mountpoint, &info) == 0 else {
            throw SupervisorError(.mount, "cannot stat the mount root \(mountpoint): \(errnoText()); the broker was not started")
        }
        if info.st_uid != user.uid || info.st_gid != user.gid || info.st_mode & 0o777 != 0o700 {
            guard chown(mountpoint, user.uid, user.gid) == 0, chmod(mountpoint, 0o700) == 0 else {
                throw SupervisorError(.mount, "cannot give the mount root \(mountpoint) to user \(user.name): \(errnoText())")
            }
            Log.info("gave the mount root \(mountpoint) to user \(user.name) with mode 0700")
        }
        let probe = "\(mountpoint)/.supervisor-probe-\(getpid())"
        let failure: String? = user.impersonate {
            let fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            guard fd >= 0 else {
                return "create a file: \(errnoText())"
            }
            close(fd)
            guard unlink(probe) == 0 else {
                return "remove a file: \(errnoText())"
            }
            return nil
        }
        if let failure {
            unlink(probe)
            throw SupervisorError(.mount, "user \(user.name) cannot \(failure) in \(mountpoint); the broker was not started")
        }
    }
}
