import Glibc

/// Journal mode's part of the rendered mosquitto.conf.
///
/// The plugin block goes first, so that the plugin's callbacks run before those of any other
/// plugin in the template (Mosquitto calls ACL callbacks in load order and stops at the first one
/// that decides). The autosave lines go last, because Mosquitto keeps the last value of an option:
/// they switch the template's per-change autosave to a time-based save of sessions and
/// subscriptions.
public struct JournalConfig: Sendable {
    public static let pluginFileName = "libmosquitto_journal.so"
    public static let installedPluginDirectory = "/usr/lib/mosquitto-supervisor"

    public let settings: Settings

    public init(settings: Settings) {
        self.settings = settings
    }

    /// The journal's directory on the encrypted store.
    public var journalDirectory: String { "\(settings.mountpoint)/journal" }

    /// The directory the broker user writes the plugin's status file in, next to the rendered
    /// configuration (outside the store, because it contains only counters).
    public var statusDirectory: String {
        let config = settings.config
        let parent = config[..<(config.lastIndex(of: "/") ?? config.startIndex)]
        return "\(parent)/journal-status"
    }

    public var statusFile: String { "\(statusDirectory)/status" }

    /// SUPERVISOR_JOURNAL_PLUGIN, else the plugin next to this binary, else the installed one.
    public var pluginPath: String {
        if !settings.journalPlugin.isEmpty {
            return settings.journalPlugin
        }
        if let directory = Self.executableDirectory() {
            let candidate = "\(directory)/\(Self.pluginFileName)"
            if access(candidate, F_OK) == 0 {
                return candidate
            }
        }
        return "\(Self.installedPluginDirectory)/\(Self.pluginFileName)"
    }

    /// Adds the plugin block before `text` (the rendered template) and the autosave lines after it.
    public func render(_ text: String) -> String {
        let template = BrokerConfig(text: text)
        let otherPlugins = template.directives.contains { $0.name == "plugin" || $0.name == "auth_plugin" }
        // The witness needs credentials only where something checks them. Otherwise a plugin callback
        // that returns "no opinion" would turn away clients that send a username and no password.
        let passwordCheck = template.value(of: "password_file") != nil || otherPlugins
        // With no ACL file and no other plugin, Mosquitto allows every topic. The plugin's ACL
        // callback must then allow too, because a lone "no opinion" counts as a denial.
        let aclDecidedElsewhere = template.value(of: "acl_file") != nil || otherPlugins
        var lines = [
            "# Journal mode (SUPERVISOR_DURABILITY=journal), added by the supervisor: the journal plugin",
            "# makes each retained publish durable on the encrypted store before the broker acknowledges it.",
            "plugin \(pluginPath)",
            "plugin_opt_journal_dir \(journalDirectory)",
            "plugin_opt_database_file \(settings.mountpoint)/\(template.persistenceFile)",
            "plugin_opt_status_file \(statusFile)",
            "plugin_opt_witness_password_auth \(passwordCheck)",
            "plugin_opt_acl_default \(aclDecidedElsewhere ? "defer" : "allow")",
        ]
        if let target = template.probeTarget {
            let host = target.host.contains(":") ? "[\(target.host)]" : target.host
            lines.append("plugin_opt_witness_address \(host):\(target.port)")
        }
        let header = lines.joined(separator: "\n") + "\n\n"
        let footer = """

            # Journal mode: Mosquitto's own save keeps sessions and subscriptions, every \(settings.sessionAutosaveInterval) s
            # (SUPERVISOR_SESSION_AUTOSAVE_INTERVAL). These lines override the template's autosave lines.
            autosave_on_changes false
            autosave_interval \(settings.sessionAutosaveInterval)

            """
        return header + text + (text.hasSuffix("\n") || text.isEmpty ? "" : "\n") + footer
    }

    static func executableDirectory() -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard length > 0 else {
            return nil
        }
        let path = String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard let slash = path.lastIndex(of: "/") else {
            return nil
        }
        return String(path[..<slash])
    }
}

extension BrokerConfig {
    /// Checks what journal mode needs on top of persistence on the mount; returns the first problem.
    func journalProblem() -> String? {
        if value(of: "per_listener_settings") == "true" {
            return "per_listener_settings true is not supported in journal mode, because the journal plugin would see the publishes of one listener only; set `per_listener_settings false` or SUPERVISOR_DURABILITY=autosave"
        }
        guard directives.contains(where: { $0.name == "plugin" && $0.value.hasSuffix(JournalConfig.pluginFileName) }) else {
            return "the journal plugin line is missing; journal mode adds it, so render the template with SUPERVISOR_DURABILITY=journal"
        }
        guard value(of: "autosave_on_changes") == "false" else {
            return "autosave_on_changes must be false in journal mode (found \(value(of: "autosave_on_changes") ?? "none"))"
        }
        let interval = value(of: "autosave_interval") ?? ""
        guard let seconds = Int(interval), seconds > 0 else {
            return "autosave_interval must be a positive whole number of seconds in journal mode (found \(interval.isEmpty ? "none" : interval))"
        }
        guard probeTarget != nil else {
            return "journal mode needs an MQTT listener over TCP (`listener PORT` with `protocol mqtt`), to which the journal plugin connects its witness session"
        }
        return nil
    }
}
