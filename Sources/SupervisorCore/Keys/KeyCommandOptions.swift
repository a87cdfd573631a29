import Glibc

/// The flags of `supervisor passwd` and `supervisor rekey`, and the settings they share with
/// `supervisor run` (cipherdir, mountpoint, passfile, programs).
struct KeyCommandOptions {
    var settings: Settings
    /// The file with the current passphrase, "-" for standard input; nil means the passphrase
    /// `supervisor run` would use (the passfile, or the generated passfile).
    var oldPassfile: String?
    /// The file with the new passphrase, "-" for standard input.
    var newPassfile: String
    /// rekey: delete the old store after the swap instead of keeping it.
    var removeOld = false
    /// rekey: where the two temporary mountpoints are created.
    var mountDirectory = "/tmp"

    /// Reads the command's own flags, then passes the rest to `Settings.load`.
    ///
    /// - Parameter rekey: accepts `--remove-old` and `--mount-dir`, which only rekey has.
    static func parse(command: String, environment: [String: String], arguments: [String], rekey: Bool) throws -> KeyCommandOptions {
        var remaining: [String] = []
        var oldPassfile: String?
        var newPassfile: String?
        var removeOld = false
        var mountDirectory = "/tmp"
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            let name = argument.hasPrefix("--") ? String(argument.prefix { $0 != "=" }) : argument
            func value() throws -> String {
                if argument.count > name.count {
                    return String(argument.dropFirst(name.count + 1))
                }
                index += 1
                guard index < arguments.count else {
                    throw SupervisorError(.usage, "option \(name) needs a value; run `supervisor \(command) --help`")
                }
                return arguments[index]
            }
            switch name {
            case "--old-passfile":
                oldPassfile = try nonEmpty(value(), name)
            case "--new-passfile":
                newPassfile = try nonEmpty(value(), name)
            case "--remove-old" where rekey && argument == name:
                removeOld = true
            case "--mount-dir" where rekey:
                let directory = try value()
                guard directory.hasPrefix("/") else {
                    throw SupervisorError(.usage, "--mount-dir must be an absolute path, got \"\(directory)\"")
                }
                mountDirectory = directory
            default:
                remaining.append(argument)
            }
            index += 1
        }
        guard let newPassfile else {
            throw SupervisorError(.usage,
                "missing --new-passfile FILE: the file whose first line is the new passphrase (- reads it from standard input); run `supervisor \(command) --help`")
        }
        if oldPassfile == "-" && newPassfile == "-" {
            throw SupervisorError(.usage, "--old-passfile and --new-passfile cannot both be - (standard input); put one of them in a file")
        }
        let settings: Settings
        do {
            settings = try Settings.load(environment: environment, arguments: remaining)
        } catch let error as SupervisorError {
            throw SupervisorError(error.code, error.message.replacing("supervisor run --help", with: "supervisor \(command) --help"))
        }
        var options = KeyCommandOptions(settings: settings, oldPassfile: oldPassfile, newPassfile: newPassfile)
        options.removeOld = removeOld
        options.mountDirectory = mountDirectory
        return options
    }

    private static func nonEmpty(_ value: String, _ name: String) throws -> String {
        guard !value.isEmpty else {
            throw SupervisorError(.usage, "\(name) is empty; give a file whose first line is the passphrase, or - for standard input")
        }
        return value
    }

    /// Reads the current passphrase of the store.
    func oldPassphrase() throws -> Passphrase {
        if let oldPassfile {
            return try Self.readPassphrase(oldPassfile, flag: "--old-passfile")
        }
        let generated = settings.generatedPassfile
        let hasPassfile = access(settings.passfile, F_OK) == 0
        let hasGenerated = !generated.isEmpty && access(generated, F_OK) == 0
        guard hasPassfile || hasGenerated || settings.passfileExplicit else {
            throw SupervisorError(.passphrase,
                "no current passphrase: the passfile \(settings.passfile) does not exist; give the store's current passphrase with --old-passfile FILE")
        }
        // The environment variable GOCRYPT_PASSWORD is not read here: passphrases come from files.
        return try PassphraseSource(settings: settings, legacyVariable: nil).resolve(storeInitialized: true)
    }

    /// The file that `supervisor run` reads the passphrase from with these settings: the
    /// passfile, or the generated passfile when only that one exists.
    var runPassfile: String {
        let generated = settings.generatedPassfile
        if access(settings.passfile, F_OK) != 0 && !settings.passfileExplicit
            && !generated.isEmpty && access(generated, F_OK) == 0 {
            return generated
        }
        return settings.passfile
    }

    func newPassphrase() throws -> Passphrase {
        try Self.readPassphrase(newPassfile, flag: "--new-passfile")
    }

    /// Reads the first line of a passphrase file, or of standard input for "-".
    static func readPassphrase(_ path: String, flag: String) throws -> Passphrase {
        guard path == "-" else {
            guard access(path, F_OK) == 0 else {
                throw SupervisorError(.passphrase, "cannot read \(flag) \(path): \(errnoText()); give a file whose first line is the passphrase")
            }
            return try Passphrase.read(passfile: path)
        }
        guard isatty(STDIN_FILENO) == 0 else {
            throw SupervisorError(.usage,
                "\(flag) - reads standard input, which is a terminal; pipe the passphrase in (for example `supervisor ... < FILE`) or give a file")
        }
        var content: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while content.count < 65536 {
            let count = read(STDIN_FILENO, &buffer, buffer.count)
            if count < 0 && errno == EINTR {
                continue
            }
            guard count >= 0 else {
                throw SupervisorError(.passphrase, "cannot read the passphrase from standard input: \(errnoText())")
            }
            if count == 0 {
                break
            }
            content.append(contentsOf: buffer[0..<count])
            if content.contains(UInt8(ascii: "\n")) {
                break
            }
        }
        return try Passphrase.validated(Passphrase.firstLine(of: content), origin: "standard input")
    }
}
