import CSupervisor
import Glibc

/// The secret that unlocks the gocryptfs store. Its description never shows the bytes.
public struct Passphrase: Sendable, CustomStringConvertible {
    /// gocryptfs reads at most this many bytes of a passphrase from standard input.
    public static let maximumLength = 2048

    public let bytes: [UInt8]
    /// The origin for log lines: a path or a variable name.
    public let origin: String

    public var description: String { "passphrase from \(origin) (\(bytes.count) bytes)" }

    /// Takes the first line of `content`, as gocryptfs reads a passfile: everything before the
    /// first newline, with nothing else trimmed (spaces, quotes and a trailing carriage return stay).
    public static func firstLine(of content: [UInt8]) -> [UInt8] {
        if let newline = content.firstIndex(of: UInt8(ascii: "\n")) {
            return Array(content[..<newline])
        }
        return content
    }

    /// Reads the passphrase from a passfile.
    public static func read(passfile path: String) throws -> Passphrase {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            let fix = code == ENOENT
                ? "mount the passphrase file there (a Docker or compose secret) or set SUPERVISOR_PASSFILE"
                : "make it readable by root: owner uid 0 and mode 0400"
            throw SupervisorError(.passphrase, "cannot read passfile \(path): \(errnoText(code)); \(fix)")
        }
        close(fd)
        guard let content = FileSystem.readAll(path, limit: 65536) else {
            throw SupervisorError(.passphrase,
                "cannot read passfile \(path): \(errnoText()); it must be a readable file whose first line is the passphrase")
        }
        return try validated(firstLine(of: content), origin: path)
    }

    static func validated(_ bytes: [UInt8], origin: String) throws -> Passphrase {
        guard !bytes.isEmpty else {
            throw SupervisorError(.passphrase,
                "the passphrase in \(origin) is empty; put the passphrase on the first line")
        }
        guard bytes.count <= maximumLength else {
            throw SupervisorError(.passphrase,
                "the passphrase in \(origin) is \(bytes.count) bytes long; gocryptfs accepts at most \(maximumLength)")
        }
        guard !bytes.contains(0) else {
            throw SupervisorError(.passphrase, "the passphrase in \(origin) contains a NUL byte; remove it")
        }
        return Passphrase(bytes: bytes, origin: origin)
    }

    /// Creates a random passphrase: 32 bytes from getrandom, as 64 hex digits.
    public static func generate(origin: String) throws -> Passphrase {
        var random = [UInt8](repeating: 0, count: 32)
        guard csup_random_bytes(&random, Int32(random.count)) == 0 else {
            throw SupervisorError(.system, "getrandom failed: \(errnoText())")
        }
        let hex = random.map { byte -> String in
            let text = String(byte, radix: 16)
            return text.count == 1 ? "0" + text : text
        }.joined()
        return Passphrase(bytes: Array(hex.utf8), origin: origin)
    }

    /// Writes the passphrase with a newline to a new file readable by root only.
    public func write(to path: String) throws {
        let directory = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
        if !directory.isEmpty {
            _ = FileSystem.makeDirectories(directory, mode: 0o700)
        }
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o400)
        guard fd >= 0 else {
            throw SupervisorError(.passphrase, "cannot create \(path): \(errnoText()); check that its directory is writable by root")
        }
        defer { close(fd) }
        let content = bytes + [UInt8(ascii: "\n")]
        guard Glibc.write(fd, content, content.count) == content.count, fsync(fd) == 0 else {
            unlink(path)
            throw SupervisorError(.passphrase, "cannot write \(path): \(errnoText())")
        }
    }
}

/// Chooses where the passphrase comes from, in a fixed order of precedence.
///
/// 1. The passfile, when it exists or was set explicitly (a missing explicit one is an error).
/// 2. `GOCRYPT_PASSWORD`, the old entrypoint's variable, with a warning that recommends a passfile.
/// 3. The generated passfile from an earlier first start.
/// 4. On a store that is not initialized yet, a new random passphrase in the generated passfile.
/// Otherwise there is no passphrase, which is an error: an initialized store never gets a new key.
public struct PassphraseSource {
    public let settings: Settings
    /// The value of GOCRYPT_PASSWORD, read and removed from the environment at startup.
    public let legacyVariable: [UInt8]?

    public init(settings: Settings, legacyVariable: [UInt8]?) {
        self.settings = settings
        self.legacyVariable = legacyVariable
    }

    /// Removes GOCRYPT_PASSWORD from this process's environment, including the bytes that
    /// /proc/self/environ shows, and returns its value.
    public static func takeLegacyVariable() -> [UInt8]? {
        guard let value = getenv("GOCRYPT_PASSWORD") else {
            return nil
        }
        let bytes = Array(String(cString: value).utf8)
        csup_scrub_environment_variable("GOCRYPT_PASSWORD")
        return bytes
    }

    public func resolve(storeInitialized: Bool) throws -> Passphrase {
        let passfileExists = access(settings.passfile, F_OK) == 0
        if passfileExists || settings.passfileExplicit {
            if legacyVariable != nil && passfileExists {
                Log.warning("both \(settings.passfile) and GOCRYPT_PASSWORD are set; using the passfile and ignoring GOCRYPT_PASSWORD")
            }
            return try Passphrase.read(passfile: settings.passfile)
        }
        if let legacyVariable {
            Log.warning("reading the passphrase from GOCRYPT_PASSWORD, which anyone who can inspect the container's configuration can read; put it in a secret file at \(settings.passfile) (or point SUPERVISOR_PASSFILE at one) and remove GOCRYPT_PASSWORD")
            return try Passphrase.validated(Passphrase.firstLine(of: legacyVariable), origin: "GOCRYPT_PASSWORD")
        }
        let generated = settings.generatedPassfile
        if !generated.isEmpty && access(generated, F_OK) == 0 {
            Log.warning("using the generated passphrase in \(generated); for production, provide your own passphrase as a secret file")
            return try Passphrase.read(passfile: generated)
        }
        if storeInitialized {
            throw SupervisorError(.passphrase,
                "no passphrase for the initialized store in \(settings.cipherdir): \(settings.passfile) does not exist and GOCRYPT_PASSWORD is not set; provide the store's passphrase as a secret file")
        }
        if generated.isEmpty {
            throw SupervisorError(.passphrase,
                "no passphrase configured: \(settings.passfile) does not exist and GOCRYPT_PASSWORD is not set; provide a passphrase file, or set SUPERVISOR_GENERATED_PASSFILE to have one generated")
        }
        let passphrase = try Passphrase.generate(origin: generated)
        try passphrase.write(to: generated)
        Log.warning("generated a random passphrase for the new store in \(generated) (readable by root only); back it up, and for production provide your own passphrase as a secret file")
        return passphrase
    }
}
