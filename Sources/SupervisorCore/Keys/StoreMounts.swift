import Glibc

/// The gocryptfs mounts of a store that this process's mount namespace can see.
///
/// A mount made in another mount namespace (another container, for example) is not listed;
/// `StoreLock` covers supervisors there.
enum StoreMounts {
    /// Returns the absolute path without symbolic links, which is how gocryptfs records the mount's source.
    static func canonical(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else {
            return path
        }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// Returns the gocryptfs mounts whose source is `directory`.
    static func mounts(of directory: String, in entries: [MountEntry] = MountTable.current()) -> [MountEntry] {
        let source = canonical(directory)
        return entries.filter { $0.filesystemType == MountProof.filesystemType && $0.source == source }
    }
}
