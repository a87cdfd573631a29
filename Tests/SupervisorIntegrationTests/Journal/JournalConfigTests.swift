import Testing
@testable import SupervisorCore

/// Rendering and checking journal mode's configuration lines; no broker runs.
@Suite struct JournalConfigTests {
    static let template = """
        persistence true
        persistence_location /var/lib/mosquitto/
        persistence_file mosquitto.db
        autosave_on_changes true
        autosave_interval 1
        per_listener_settings false
        listener 1883 0.0.0.0
        protocol mqtt
        """

    static func settings(_ configure: (inout Settings) -> Void = { _ in }) -> Settings {
        var settings = Settings()
        settings.durability = .journal
        settings.journalPlugin = "/opt/plugins/libmosquitto_journal.so"
        configure(&settings)
        return settings
    }

    @Test func pluginLinesComeFirstAndAutosaveLast() {
        let text = JournalConfig(settings: Self.settings { $0.sessionAutosaveInterval = 45 }).render(Self.template)
        let lines = text.split(separator: "\n").map(String.init).filter { !$0.hasPrefix("#") && !$0.isEmpty }
        #expect(lines.first == "plugin /opt/plugins/libmosquitto_journal.so")
        #expect(lines.contains("plugin_opt_journal_dir /var/lib/mosquitto/journal"))
        #expect(lines.contains("plugin_opt_database_file /var/lib/mosquitto/mosquitto.db"))
        #expect(lines.contains("plugin_opt_status_file /run/mosquitto/journal-status/status"))
        #expect(lines.contains("plugin_opt_witness_address 127.0.0.1:1883"))
        #expect(Array(lines.suffix(2)) == ["autosave_on_changes false", "autosave_interval 45"])
        let config = BrokerConfig(text: text)
        #expect(config.validate(mountpoint: "/var/lib/mosquitto", durability: .journal) == nil)
    }

    @Test(arguments: [
        ("", "false", "allow"),
        ("acl_file /etc/mosquitto/acl", "false", "defer"),
        ("password_file /etc/mosquitto/passwd", "true", "allow"),
        ("plugin /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so", "true", "defer"),
    ])
    func securityOptionsFollowTemplate(extra: String, passwordAuthentication: String, aclDefault: String) {
        let text = JournalConfig(settings: Self.settings()).render(Self.template + "\n" + extra + "\n")
        #expect(text.contains("plugin_opt_witness_password_auth \(passwordAuthentication)\n"))
        #expect(text.contains("plugin_opt_acl_default \(aclDefault)\n"))
    }

    @Test func ipv6ListenerAddressIsBracketed() {
        let template = Self.template.replacingOccurrences(of: "listener 1883 0.0.0.0", with: "listener 1884 ::1")
        let text = JournalConfig(settings: Self.settings()).render(template)
        #expect(text.contains("plugin_opt_witness_address [::1]:1884\n"))
    }

    @Test func journalChecksRejectWhatTheModeCannotUse() {
        let rendered = JournalConfig(settings: Self.settings()).render(Self.template)
        let perListener = rendered.replacingOccurrences(of: "per_listener_settings false", with: "per_listener_settings true")
        #expect(BrokerConfig(text: perListener).validate(mountpoint: "/var/lib/mosquitto", durability: .journal)?
            .hasPrefix("per_listener_settings true is not supported in journal mode") == true)
        let websocketsOnly = JournalConfig(settings: Self.settings()).render(
            Self.template.replacingOccurrences(of: "protocol mqtt", with: "protocol websockets"))
        #expect(BrokerConfig(text: websocketsOnly).validate(mountpoint: "/var/lib/mosquitto", durability: .journal)?
            .hasPrefix("journal mode needs an MQTT listener over TCP") == true)
        #expect(BrokerConfig(text: Self.template).validate(mountpoint: "/var/lib/mosquitto", durability: .journal)?
            .hasPrefix("the journal plugin line is missing") == true)
    }

    @Test func autosaveChecksStayAsStrict() {
        let rendered = JournalConfig(settings: Self.settings()).render(Self.template)
        #expect(BrokerConfig(text: rendered).validate(mountpoint: "/var/lib/mosquitto")?
            .hasPrefix("autosave_on_changes must be true") == true)
        #expect(BrokerConfig(text: Self.template).validate(mountpoint: "/var/lib/mosquitto") == nil)
    }

    @Test func durabilitySettingsParse() throws {
        let settings = try Settings.load(environment: ["SUPERVISOR_DURABILITY": "journal", "SUPERVISOR_SESSION_AUTOSAVE_INTERVAL": "30"],
                                         arguments: ["--journal-plugin", "/usr/lib/mosquitto-supervisor/libmosquitto_journal.so"])
        #expect(settings.durability == .journal)
        #expect(settings.sessionAutosaveInterval == 30)
        #expect(settings.journalPlugin == "/usr/lib/mosquitto-supervisor/libmosquitto_journal.so")
        #expect(try Settings.load(environment: [:], arguments: []).durability == .autosave)
        #expect(throws: SupervisorError.self) {
            try Settings.load(environment: ["SUPERVISOR_DURABILITY": "wal"], arguments: [])
        }
        #expect(throws: SupervisorError.self) {
            try Settings.load(environment: ["SUPERVISOR_SESSION_AUTOSAVE_INTERVAL": "0"], arguments: [])
        }
    }

    @Test func statusFileParses() throws {
        let status = try #require(JournalStatus(text: """
            format 1
            updated_at_ns 1700000000500000000
            directory /var/lib/mosquitto/journal
            journal_bytes 1048576
            live_bytes 2048
            segments 2
            topics 10
            last_sync_at_ns 1700000000000000000
            failed_writes 0
            last_failure_at_ns 0
            witness subscribed
            """))
        #expect(status.bytes == 1_048_576)
        #expect(status.topics == 10)
        #expect(status.lastSyncAt == 1_700_000_000)
        #expect(status.lastFailureAt == nil)
        #expect(JournalHealth.check(status, now: 1_700_000_001).0)
        var failed = status
        failed.lastFailureAt = 1_700_000_000
        #expect(!JournalHealth.check(failed, now: 1_700_000_001).0)
        #expect(!JournalHealth.check(status, now: 1_700_000_100).0)
        #expect(JournalStatus(text: "format 2\nupdated_at_ns 1\njournal_bytes 0\n") == nil)
    }
}
