import Glibc

/// Checks `mosquitto.db` before the broker starts, because Mosquitto 2.0 starts with an empty
/// database when it cannot read the file and then replaces the file at its next save.
public struct DatabaseGuard {
    /// The 15 bytes every Mosquitto database starts with: 00 B5 00 "mosquitto db".
    public static let magic: [UInt8] = [0x00, 0xB5, 0x00] + Array("mosquitto db".utf8)
    /// Header length: magic, a 32-bit CRC (unused, 0) and a 32-bit format version.
    static let headerLength = magic.count + 8

    public enum Verdict: Equatable, Sendable {
        case missing
        case valid(bytes: Int)
        case invalid(String)
    }

    /// Judges the content of a database file. Format version 6 (Mosquitto 2.0) is walked chunk by
    /// chunk ([u32 type][u32 length], big-endian) so that a truncated file is caught too.
    public static func inspect(_ content: [UInt8]) -> Verdict {
        guard !content.isEmpty else {
            return .invalid("it is empty")
        }
        guard content.count >= headerLength, Array(content[0..<magic.count]) == magic else {
            if content.allSatisfy({ $0 == 0 }) {
                return .invalid("it contains only zero bytes")
            }
            return .invalid("it does not start with the Mosquitto database header")
        }
        let version = readUInt32(content, at: magic.count + 4)
        guard version == 6 else {
            return .valid(bytes: content.count)
        }
        var offset = headerLength
        while offset < content.count {
            guard offset + 8 <= content.count else {
                return .invalid("it is truncated inside a chunk header at byte \(offset)")
            }
            let length = Int(readUInt32(content, at: offset + 4))
            offset += 8
            guard offset + length <= content.count else {
                return .invalid("it is truncated: a chunk at byte \(offset - 8) needs \(length) bytes, \(content.count - offset) remain")
            }
            offset += length
        }
        return .valid(bytes: content.count)
    }

    private static func readUInt32(_ bytes: [UInt8], at offset: Int) -> UInt32 {
        bytes[offset..<offset + 4].reduce(0) { ($0 << 8) | UInt32($1) }
    }

    public let path: String
    public let user: UserAccount
    public let policy: BadDatabasePolicy

    public init(path: String, user: UserAccount, policy: BadDatabasePolicy) {
        self.path = path
        self.user = user
        self.policy = policy
    }

    /// Reads the database as the broker user and rejects or moves aside a bad one.
    public func check() throws -> Verdict {
        var info = stat()
        if lstat(path, &info) != 0 && errno == ENOENT {
            return .missing
        }
        let verdict: Verdict = user.impersonate {
            guard let content = FileSystem.readAll(path, limit: Int.max) else {
                return .invalid("user \(user.name) cannot read it: \(errnoText())")
            }
            return DatabaseGuard.inspect(content)
        }
        guard case .invalid(let reason) = verdict else {
            return verdict
        }
        switch policy {
        case .refuse:
            throw SupervisorError(.database,
                "the broker database \(path) is unusable because \(reason); Mosquitto would start empty and overwrite it, so the broker was not started. Restore the file, or set SUPERVISOR_BAD_DATABASE=move-aside to keep it aside and start empty")
        case .moveAside:
            let aside = "\(path).bad-\(Self.timestampForFileName())"
            guard rename(path, aside) == 0 else {
                throw SupervisorError(.database, "cannot move the unusable database \(path) to \(aside): \(errnoText())")
            }
            Log.warning("moved the unusable broker database \(path) to \(aside) because \(reason); the broker starts with an empty database")
            return .missing
        }
    }

    static func timestampForFileName() -> String {
        var seconds = time(nil)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        let date = "\(padded(parts.tm_year + 1900, 4))\(padded(parts.tm_mon + 1, 2))\(padded(parts.tm_mday, 2))"
        return "\(date)T\(padded(parts.tm_hour, 2))\(padded(parts.tm_min, 2))\(padded(parts.tm_sec, 2))Z"
    }

}
