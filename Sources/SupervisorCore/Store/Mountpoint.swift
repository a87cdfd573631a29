import CSupervisor
import Glibc

/// The directory the store is mounted on, which is also the broker's persistence_location.
public struct Mountpoint {
    public let path: String

    public init(path: String) {
        self.path = path
    }

    /// True when the kernel lists a mount at the path but the FUSE server behind it is gone,
    /// which is what a killed gocryptfs leaves.
    public var hasDeadMount: Bool {
        MountTable.entry(at: path) != nil && Self.liveness(of: path) == ENOTCONN
    }

    /// Calls statfs on `path` and returns 0 or the errno.
    ///
    /// statfs always reaches the FUSE server. The kernel may serve stat from its attribute cache
    /// for a second after the server died, so only statfs proves the mount live.
    public static func liveness(of path: String) -> Int32 {
        csup_statfs_errno(path)
    }

    /// Makes the path ready for a mount: cleans a dead mount, creates a missing directory and
    /// rejects anything else that is mounted or stored there. The directory is left root-owned
    /// and not writable by others, so a broker that outlives the mount cannot write plaintext into it.
    public func prepare(fusermount: String, children: ChildProcesses) throws {
        if hasDeadMount {
            Log.warning("found a dead mount on \(path), left by a gocryptfs that was killed; cleaning it up")
            try detachDeadMount(fusermount: fusermount, children: children)
        }
        if let entry = MountTable.entry(at: path) {
            throw SupervisorError(.mountpoint,
                "\(path) already has a \(entry.filesystemType) mount of \(entry.source); unmount it, or stop the other broker that uses it")
        }
        switch FileSystem.kind(of: path) {
        case (.missing, _):
            guard FileSystem.makeDirectories(path, mode: 0o755) else {
                throw SupervisorError(.mountpoint, "cannot create the mountpoint \(path): \(errnoText()); create it as an empty directory")
            }
            Log.info("created the missing mountpoint \(path)")
        case (.other, let code) where code != 0:
            throw SupervisorError(.mountpoint, "cannot access the mountpoint \(path): \(errnoText(code))")
        case (.other, _):
            throw SupervisorError(.mountpoint, "the mountpoint \(path) is not a directory; remove the file or set SUPERVISOR_MOUNTPOINT to an empty directory")
        case (.directory, _):
            break
        }
        guard let names = FileSystem.entries(of: path) else {
            throw SupervisorError(.mountpoint, "cannot list the mountpoint \(path): \(errnoText())")
        }
        guard names.isEmpty else {
            throw SupervisorError(.mountpoint,
                "the mountpoint \(path) is not empty (\(FileSystem.summarize(names))); these files may be unencrypted data from an earlier broker: move them away (re-publish what you need), then start again")
        }
        guard chown(path, 0, 0) == 0, chmod(path, 0o755) == 0 else {
            throw SupervisorError(.mountpoint, "cannot make \(path) owned by root with mode 0755: \(errnoText())")
        }
    }

    /// Removes a mount whose FUSE server is gone: `fusermount3 -u`, then a lazy unmount.
    /// Only called when no broker runs, because a lazy unmount hides the mount from new lookups only.
    func detachDeadMount(fusermount: String, children: ChildProcesses) throws {
        let request = SpawnRequest(path: fusermount, arguments: ["-u", "--", path], environment: [:])
        if let result = try children.run(request, timeout: .seconds(5)), result.status == .exited(0) {
            Log.info("removed the dead mount on \(path) with fusermount3 -u")
            return
        }
        if umount2(path, Int32(MNT_DETACH)) == 0 {
            Log.warning("removed the dead mount on \(path) with a lazy unmount")
            return
        }
        throw SupervisorError(.mountpoint, "cannot remove the dead mount on \(path): \(errnoText()); run `fusermount3 -u \(path)` on the host or restart the container")
    }
}
