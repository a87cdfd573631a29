import Glibc

/// Small file system helpers that report errno instead of throwing Foundation errors.
enum FileSystem {
    enum Kind { case missing, directory, other }

    static func kind(of path: String) -> (Kind, Int32) {
        var info = stat()
        if stat(path, &info) != 0 {
            return (errno == ENOENT ? .missing : .other, errno)
        }
        return (info.st_mode & S_IFMT == S_IFDIR ? .directory : .other, 0)
    }

    /// Names in a directory, without `.` and `..`, sorted; nil when it cannot be read.
    static func entries(of path: String) -> [String]? {
        guard let directory = opendir(path) else {
            return nil
        }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." {
                names.append(name)
            }
        }
        return names.sorted()
    }

    /// Creates `path` and its missing parents with `mode`.
    static func makeDirectories(_ path: String, mode: mode_t) -> Bool {
        var current = ""
        for component in path.split(separator: "/") {
            current += "/" + component
            if mkdir(current, mode) == 0 {
                // mkdir applies the umask; a 0700 umask would hide the rendered configuration
                // from the broker user, so the mode is set exactly.
                chmod(current, mode)
            } else if errno != EEXIST {
                return false
            }
        }
        return true
    }

    /// Lists up to `limit` names for an error message, with the count of the rest.
    static func summarize(_ names: [String], limit: Int = 8) -> String {
        let shown = names.prefix(limit).joined(separator: ", ")
        return names.count > limit ? "\(shown) and \(names.count - limit) more" : shown
    }

    /// Reads up to about `limit` bytes of a file; nil when it cannot be opened or read (a
    /// directory, for example), with errno telling why.
    static func readAll(_ path: String, limit: Int = 1 << 20) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            return nil
        }
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while result.count < limit {
            let count = read(fd, &buffer, buffer.count)
            if count < 0 && errno == EINTR { continue }
            if count < 0 {
                let readError = errno
                close(fd)
                errno = readError
                return nil
            }
            if count == 0 { break }
            result.append(contentsOf: buffer[0..<count])
        }
        close(fd)
        return result
    }
}
