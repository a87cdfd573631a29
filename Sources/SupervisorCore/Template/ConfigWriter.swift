import Glibc

/// Renders the template, validates the result and writes it where the broker reads it.
public struct ConfigWriter {
    public let settings: Settings

    public init(settings: Settings) {
        self.settings = settings
    }

    /// Returns the variables a template may use: the environment, then the supervisor's own settings.
    ///
    /// `SUPERVISOR_ALLOW_ANONYMOUS` is derived: `false` whenever `MOSQUITTO_PASSWORD_FILE` is set,
    /// otherwise `MOSQUITTO_ALLOW_ANONYMOUS` (`true` when unset or empty).
    public func variables(environment: [String: String]) -> [String: String] {
        var variables = environment
        variables["GOCRYPT_PASSWORD"] = nil
        variables["SUPERVISOR_CIPHERDIR"] = settings.cipherdir
        variables["SUPERVISOR_MOUNTPOINT"] = settings.mountpoint
        variables["SUPERVISOR_CONFIG"] = settings.config
        variables["SUPERVISOR_TEMPLATE"] = settings.template
        variables["SUPERVISOR_BROKER_USER"] = settings.brokerUser
        let passwordFile = environment["MOSQUITTO_PASSWORD_FILE"] ?? ""
        let allowAnonymous = environment["MOSQUITTO_ALLOW_ANONYMOUS"] ?? ""
        variables["SUPERVISOR_ALLOW_ANONYMOUS"] = passwordFile.isEmpty
            ? (allowAnonymous.isEmpty ? "true" : allowAnonymous) : "false"
        return variables
    }

    /// Reads and renders the template and validates the result without writing anything.
    public func render(environment: [String: String]) throws -> (text: String, config: BrokerConfig) {
        guard let bytes = FileSystem.readAll(settings.template) else {
            throw SupervisorError(.template,
                "cannot read the template \(settings.template): \(errnoText()); mount your template there or set SUPERVISOR_TEMPLATE")
        }
        let template = String(decoding: bytes, as: UTF8.self)
        var text = try TemplateRenderer(variables: variables(environment: environment))
            .render(template, source: settings.template)
        if settings.durability == .journal {
            text = JournalConfig(settings: settings).render(text)
        }
        let config = BrokerConfig(text: text)
        if let problem = config.validate(mountpoint: settings.mountpoint, durability: settings.durability) {
            throw SupervisorError(.template, "the configuration rendered from \(settings.template) is rejected: \(problem)")
        }
        return (text, config)
    }

    /// Writes the rendered text atomically, readable by the broker user (Mosquitto re-reads it as
    /// that user on SIGHUP) and writable by root only.
    public func write(_ text: String, brokerGroup: gid_t) throws {
        let path = settings.config
        let directory = String(path[..<path.lastIndex(of: "/")!])
        if !directory.isEmpty && !FileSystem.makeDirectories(directory, mode: 0o755) {
            throw SupervisorError(.template, "cannot create \(directory) for the rendered configuration: \(errnoText())")
        }
        let temporary = "\(path).tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o640)
        guard fd >= 0 else {
            throw SupervisorError(.template, "cannot write the rendered configuration \(temporary): \(errnoText()); set SUPERVISOR_CONFIG to a writable path")
        }
        let bytes = Array(text.utf8)
        let written = Glibc.write(fd, bytes, bytes.count)
        let synced = fsync(fd) == 0
        fchown(fd, 0, brokerGroup)
        fchmod(fd, 0o640)
        close(fd)
        guard written == bytes.count, synced, rename(temporary, path) == 0 else {
            unlink(temporary)
            throw SupervisorError(.template, "cannot write the rendered configuration \(path): \(errnoText())")
        }
    }
}
