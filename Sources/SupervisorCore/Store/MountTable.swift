import FoundationEssentials
import Glibc

/// One line of /proc/self/mountinfo.
public struct MountEntry: Equatable, Sendable {
    public let mountpoint: String
    public let filesystemType: String
    public let source: String
}

/// The mounts the kernel reports for this process's mount namespace.
public enum MountTable {
    /// Parses mountinfo text; octal escapes such as `\040` for a space are decoded.
    public static func parse(_ text: String) -> [MountEntry] {
        text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ", omittingEmptySubsequences: false)
            guard let separator = fields.firstIndex(of: "-"), separator >= 6, fields.count >= separator + 3 else {
                return nil
            }
            return MountEntry(
                mountpoint: unescape(fields[4]),
                filesystemType: String(fields[separator + 1]),
                source: unescape(fields[separator + 2]))
        }
    }

    public static func current() -> [MountEntry] {
        // Read to the end: Foundation's String(contentsOfFile:) returns only the first 4 KB of a
        // procfs file (checked with Swift 6.3 on Linux), which drops later mounts once the table
        // grows past that.
        guard let bytes = FileSystem.readAll("/proc/self/mountinfo", limit: Int.max) else {
            return []
        }
        return parse(String(decoding: bytes, as: UTF8.self))
    }

    /// Returns the topmost mount at `path`, if any.
    public static func entry(at path: String, in entries: [MountEntry] = current()) -> MountEntry? {
        entries.last { $0.mountpoint == path }
    }

    private static func unescape(_ field: Substring) -> String {
        var bytes: [UInt8] = []
        var index = field.utf8.startIndex
        let utf8 = field.utf8
        while index < utf8.endIndex {
            let byte = utf8[index]
            if byte == UInt8(ascii: "\\"),
               let end = utf8.index(index, offsetBy: 4, limitedBy: utf8.endIndex),
               let value = UInt8(String(decoding: utf8[utf8.index(after: index)..<end], as: UTF8.self), radix: 8) {
                bytes.append(value)
                index = end
            } else {
                bytes.append(byte)
                index = utf8.index(after: index)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
