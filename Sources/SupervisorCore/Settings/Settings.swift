import FoundationEssentials
import Glibc

/// The action `supervisor run` takes when an existing `mosquitto.db` cannot be read or is not a Mosquitto database.
public enum BadDatabasePolicy: String, Sendable, CaseIterable {
    /// Stop with an error and leave the file untouched.
    case refuse
    /// Rename the file to `mosquitto.db.bad-<UTC timestamp>` and start with an empty database.
    case moveAside = "move-aside"
}

/// The action `supervisor run` takes when the broker ends without a stop request.
public enum RestartPolicy: String, Sendable, CaseIterable {
    /// Tear down in order and exit with the broker's status, so the container runtime decides.
    case never
    /// Restart the broker on the same mount with backoff, up to a limit within a window.
    case onFailure = "on-failure"
}

/// The settings of `supervisor run` and `supervisor status`, from the environment and flags.
public struct Settings: Sendable, Equatable {
    public var cipherdir = "/encrypted"
    public var mountpoint = "/var/lib/mosquitto"
    public var passfile = "/run/secrets/gocryptfs_passphrase"
    /// True when the passfile was named explicitly, so its absence is an error instead of a fallback.
    public var passfileExplicit = false
    /// The path of the passphrase generated on first start when none is configured. Empty disables generation.
    public var generatedPassfile = ""
    public var template = "/etc/mosquitto/mosquitto.conf.template"
    public var config = "/run/mosquitto/mosquitto.conf"
    /// Seconds the broker gets between SIGTERM and SIGKILL.
    public var stopTimeout: Double = 8
    /// Seconds gocryptfs gets to report a ready mount.
    public var mountTimeout: Double = 30
    public var socket = "/run/supervisor/supervisor.sock"
    public var mosquitto = "mosquitto"
    public var gocryptfs = "gocryptfs"
    public var fusermount = "fusermount3"
    public var brokerUser = "mosquitto"
    public var badDatabase = BadDatabasePolicy.refuse
    public var restart = RestartPolicy.never
    /// The maximum number of broker restarts within `restartWindow` seconds under `on-failure`.
    public var restartLimit = 5
    public var restartWindow: Double = 60
    public var durability = DurabilityMode.autosave
    /// The journal mode's broker plugin; empty means libmosquitto_journal.so next to the supervisor
    /// binary, or else in /usr/lib/mosquitto-supervisor/.
    public var journalPlugin = ""
    /// Seconds between the broker's saves of sessions and subscriptions in journal mode.
    public var sessionAutosaveInterval = 60

    public init() {}

    /// One setting: its variable, its flag, and how a text value is stored.
    struct Option: Sendable {
        let variable: String
        let flag: String
        let help: String
        let apply: @Sendable (inout Settings, String) throws -> Void
    }

    static let options: [Option] = [
        Option(variable: "SUPERVISOR_CIPHERDIR", flag: "--cipherdir",
               help: "encrypted gocryptfs directory (default /encrypted)") { $0.cipherdir = try path($1, "--cipherdir") },
        Option(variable: "SUPERVISOR_MOUNTPOINT", flag: "--mountpoint",
               help: "plaintext view and the broker's persistence_location (default /var/lib/mosquitto)") {
                   $0.mountpoint = try path($1, "--mountpoint") },
        Option(variable: "SUPERVISOR_PASSFILE", flag: "--passfile",
               help: "file whose first line is the passphrase (default /run/secrets/gocryptfs_passphrase)") {
                   $0.passfile = try path($1, "--passfile")
                   $0.passfileExplicit = true },
        Option(variable: "SUPERVISOR_GENERATED_PASSFILE", flag: "--generated-passfile",
               help: "where to create a random passphrase on first start when none is configured (default: off)") {
                   $0.generatedPassfile = $1.isEmpty ? "" : try path($1, "--generated-passfile") },
        Option(variable: "SUPERVISOR_TEMPLATE", flag: "--template",
               help: "mosquitto.conf template (default /etc/mosquitto/mosquitto.conf.template)") {
                   $0.template = try path($1, "--template") },
        Option(variable: "SUPERVISOR_CONFIG", flag: "--config",
               help: "where the rendered mosquitto.conf is written (default /run/mosquitto/mosquitto.conf)") {
                   $0.config = try path($1, "--config") },
        Option(variable: "SUPERVISOR_STOP_TIMEOUT", flag: "--stop-timeout",
               help: "seconds the broker gets after SIGTERM before SIGKILL (default 8)") {
                   $0.stopTimeout = try seconds($1, "--stop-timeout") },
        Option(variable: "SUPERVISOR_MOUNT_TIMEOUT", flag: "--mount-timeout",
               help: "seconds gocryptfs gets to mount the store (default 30)") {
                   $0.mountTimeout = try seconds($1, "--mount-timeout") },
        Option(variable: "SUPERVISOR_SOCKET", flag: "--socket",
               help: "control socket that `supervisor status` asks (default /run/supervisor/supervisor.sock)") {
                   $0.socket = try path($1, "--socket") },
        Option(variable: "SUPERVISOR_MOSQUITTO", flag: "--mosquitto",
               help: "mosquitto program (default: found on PATH)") { $0.mosquitto = try nonEmpty($1, "--mosquitto") },
        Option(variable: "SUPERVISOR_GOCRYPTFS", flag: "--gocryptfs",
               help: "gocryptfs program (default: found on PATH)") { $0.gocryptfs = try nonEmpty($1, "--gocryptfs") },
        Option(variable: "SUPERVISOR_FUSERMOUNT", flag: "--fusermount",
               help: "fusermount3 program (default: found on PATH)") { $0.fusermount = try nonEmpty($1, "--fusermount") },
        Option(variable: "SUPERVISOR_BROKER_USER", flag: "--broker-user",
               help: "user the broker runs as, and owner of the mount root (default mosquitto)") {
                   $0.brokerUser = try nonEmpty($1, "--broker-user") },
        Option(variable: "SUPERVISOR_BAD_DATABASE", flag: "--bad-database",
               help: "refuse | move-aside: what to do with an unreadable mosquitto.db (default refuse)") {
                   $0.badDatabase = try choice($1, "--bad-database") },
        Option(variable: "SUPERVISOR_RESTART", flag: "--restart",
               help: "never | on-failure: restart the broker when it fails (default never)") {
                   $0.restart = try choice($1, "--restart") },
        Option(variable: "SUPERVISOR_RESTART_LIMIT", flag: "--restart-limit",
               help: "broker restarts allowed within the restart window (default 5)") {
                   $0.restartLimit = try count($1, "--restart-limit") },
        Option(variable: "SUPERVISOR_RESTART_WINDOW", flag: "--restart-window",
               help: "seconds over which restarts are counted (default 60)") {
                   $0.restartWindow = try seconds($1, "--restart-window") },
        Option(variable: "SUPERVISOR_DURABILITY", flag: "--durability",
               help: "autosave | journal: save the whole database after every change, or journal each retained message before its acknowledgement (default autosave)") {
                   $0.durability = try choice($1, "--durability") },
        Option(variable: "SUPERVISOR_JOURNAL_PLUGIN", flag: "--journal-plugin",
               help: "journal mode's broker plugin (default: libmosquitto_journal.so next to the supervisor binary, else in /usr/lib/mosquitto-supervisor/)") {
                   $0.journalPlugin = try path($1, "--journal-plugin") },
        Option(variable: "SUPERVISOR_SESSION_AUTOSAVE_INTERVAL", flag: "--session-autosave-interval",
               help: "journal mode: seconds between the broker's saves of sessions and subscriptions (default 60)") {
                   $0.sessionAutosaveInterval = try intervalSeconds($1, "--session-autosave-interval") },
    ]

    /// Reads the settings from `environment`, then from `arguments` (flags win over variables).
    ///
    /// Flags take the forms `--name value` and `--name=value`. Unknown flags are errors.
    public static func load(environment: [String: String], arguments: [String]) throws -> Settings {
        var settings = Settings()
        for option in options {
            if let value = environment[option.variable] {
                do {
                    try option.apply(&settings, value)
                } catch let error as SupervisorError {
                    throw SupervisorError(.usage, error.message.replacing(
                        option.flag, with: option.variable))
                }
            }
        }

        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            var name = argument
            var value: String?
            if let equals = argument.firstIndex(of: "="), argument.hasPrefix("--") {
                name = String(argument[..<equals])
                value = String(argument[argument.index(after: equals)...])
            }
            guard let option = options.first(where: { $0.flag == name }) else {
                if !argument.hasPrefix("-") {
                    throw SupervisorError(.usage, "unexpected argument \(argument); options take the form --name value, see `supervisor run --help`")
                }
                throw SupervisorError(.usage, "unknown option \(argument); run `supervisor run --help` for the list")
            }
            if value == nil {
                index += 1
                guard index < arguments.count else {
                    throw SupervisorError(.usage, "option \(name) needs a value; run `supervisor run --help`")
                }
                value = arguments[index]
            }
            try option.apply(&settings, value!)
            index += 1
        }
        return settings
    }

    /// The help lines for every option: flag, variable and meaning.
    public static var optionHelp: String {
        options.map { "  \($0.flag) VALUE\n      \($0.help); variable \($0.variable)" }
            .joined(separator: "\n")
    }

    // MARK: - Value parsers

    private static func path(_ value: String, _ name: String) throws -> String {
        guard value.hasPrefix("/") else {
            throw SupervisorError(.usage, "\(name) must be an absolute path, got \"\(value)\"; give a path starting with /")
        }
        var trimmed = value
        while trimmed.count > 1 && trimmed.hasSuffix("/") {
            trimmed.removeLast()
        }
        return trimmed
    }

    private static func nonEmpty(_ value: String, _ name: String) throws -> String {
        guard !value.isEmpty else {
            throw SupervisorError(.usage, "\(name) is empty; give a program name or an absolute path")
        }
        return value
    }

    private static func seconds(_ value: String, _ name: String) throws -> Double {
        guard let number = Double(value), number.isFinite, number > 0, number <= 3600 else {
            throw SupervisorError(.usage, "\(name) must be a number of seconds between 0 and 3600, got \"\(value)\"")
        }
        return number
    }

    private static func count(_ value: String, _ name: String) throws -> Int {
        guard let number = Int(value), number >= 0, number <= 1000 else {
            throw SupervisorError(.usage, "\(name) must be a whole number from 0 to 1000, got \"\(value)\"")
        }
        return number
    }

    private static func choice<T: RawRepresentable & CaseIterable>(_ value: String, _ name: String) throws -> T
    where T.RawValue == String {
        guard let result = T(rawValue: value) else {
            let allowed = T.allCases.map(\.rawValue).joined(separator: ", ")
            throw SupervisorError(.usage, "\(name) must be one of \(allowed), got \"\(value)\"")
        }
        return result
    }
}
