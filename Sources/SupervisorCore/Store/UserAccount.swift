import Glibc

/// A local user, such as the `mosquitto` user the broker drops to.
public struct UserAccount: Sendable, Equatable {
    public let name: String
    public let uid: uid_t
    public let gid: gid_t

    public static func lookup(_ name: String) -> UserAccount? {
        guard let entry = getpwnam(name) else {
            return nil
        }
        return UserAccount(name: name, uid: entry.pointee.pw_uid, gid: entry.pointee.pw_gid)
    }

    /// Runs `body` with the effective user and group of this account, then returns to root.
    ///
    /// The kernel checks file access on the FUSE mount (mounted with default_permissions) against
    /// the effective ids, so this shows what the broker itself will be allowed to do. glibc
    /// applies seteuid to every thread of the process.
    public func impersonate<T>(_ body: () throws -> T) rethrows -> T {
        let savedGroups = getgroups(0, nil)
        var groups = [gid_t](repeating: 0, count: Int(max(savedGroups, 0)))
        _ = getgroups(Int32(groups.count), &groups)
        var ownGroup = [gid]
        _ = setgroups(1, &ownGroup)
        _ = setegid(gid)
        _ = seteuid(uid)
        defer {
            _ = seteuid(0)
            _ = setegid(0)
            _ = setgroups(groups.count, &groups)
        }
        return try body()
    }
}
