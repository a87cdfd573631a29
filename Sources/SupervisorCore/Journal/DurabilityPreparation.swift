import Glibc

/// The startup step of the durability mode, run on the proven mount before the broker starts.
///
/// Journal mode checks the plugin and the broker version and prepares the plugin's status
/// directory. Autosave mode makes sure that no journal left by journal mode contains retained
/// messages that mosquitto.db lacks.
struct DurabilityPreparation {
    let settings: Settings
    let user: UserAccount
    /// The first line of `mosquitto -h`, such as "mosquitto version 2.0.11".
    let mosquittoVersion: String?
    /// The broker database file inside the mount.
    let databaseFile: String

    func prepare() throws -> String {
        switch settings.durability {
        case .journal:
            return try prepareJournal()
        case .autosave:
            return try retireJournal()
        }
    }

    private func prepareJournal() throws -> String {
        let config = JournalConfig(settings: settings)
        let plugin = config.pluginPath
        guard access(plugin, F_OK) == 0 else {
            throw SupervisorError(.environment,
                "the journal plugin \(plugin) does not exist; install \(JournalConfig.pluginFileName) (built by `swift build --product mosquitto_journal`) there, or set SUPERVISOR_JOURNAL_PLUGIN")
        }
        let readable: Bool = user.impersonate {
            let fd = open(plugin, O_RDONLY | O_CLOEXEC)
            if fd >= 0 {
                close(fd)
            }
            return fd >= 0
        }
        guard readable else {
            throw SupervisorError(.environment,
                "user \(user.name) cannot read the journal plugin \(plugin): \(errnoText()); make the file and its directories readable by that user")
        }
        guard let version = mosquittoVersion, version.contains("version 2.0.") else {
            throw SupervisorError(.environment,
                "journal mode needs mosquitto 2.0 (plugin API version 5), found \"\(mosquittoVersion ?? "no version")\"; install Debian bookworm's mosquitto or set SUPERVISOR_DURABILITY=autosave")
        }
        let directory = config.statusDirectory
        guard FileSystem.makeDirectories(directory, mode: 0o755), chown(directory, user.uid, user.gid) == 0,
              chmod(directory, 0o755) == 0 else {
            throw SupervisorError(.system, "cannot prepare \(directory) for the journal plugin's status: \(errnoText()); set SUPERVISOR_CONFIG to a writable path")
        }
        unlink(config.statusFile)
        return "journal mode: plugin \(plugin), journal in \(config.journalDirectory), sessions saved every \(settings.sessionAutosaveInterval) s"
    }

    /// A journal from journal mode is redundant once the broker stopped cleanly, because the
    /// broker saved mosquitto.db after the newest record. The plugin then leaves a `clean-stop`
    /// file. Otherwise the journal may contain the only copy of recent retained messages.
    private func retireJournal() throws -> String {
        let directory = JournalConfig(settings: settings).journalDirectory
        guard FileSystem.kind(of: directory).0 == .directory else {
            return "autosave mode: no journal"
        }
        let entries = FileSystem.entries(of: directory) ?? []
        if !entries.contains(where: { $0.hasSuffix(".seg") }) || entries.contains("clean-stop") {
            let aside = "\(directory).retired-\(DatabaseGuard.timestampForFileName())"
            guard rename(directory, aside) == 0 else {
                throw SupervisorError(.database, "cannot move the old journal \(directory) to \(aside): \(errnoText())")
            }
            Log.warning("moved the journal of an earlier journal-mode run to \(aside): it stopped cleanly, so \(databaseFile) contains every retained message; delete it once you stay in autosave mode")
            return "autosave mode: retired the old journal to \(aside)"
        }
        throw SupervisorError(.database,
            "the journal in \(directory) may hold retained messages that \(databaseFile) lacks, because journal mode did not stop cleanly; start once with SUPERVISOR_DURABILITY=journal and stop the supervisor, then switch to autosave (or move the directory aside to drop those messages)")
    }
}
