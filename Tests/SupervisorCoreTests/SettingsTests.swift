import Foundation
import Testing
@testable import SupervisorCore

@Suite struct SettingsTests {
    @Test func defaultsKeepTheOldLayout() throws {
        let settings = try Settings.load(environment: [:], arguments: [])
        #expect(settings.cipherdir == "/encrypted")
        #expect(settings.mountpoint == "/var/lib/mosquitto")
        #expect(settings.passfile == "/run/secrets/gocryptfs_passphrase")
        #expect(settings.passfileExplicit == false)
        #expect(settings.template == "/etc/mosquitto/mosquitto.conf.template")
        #expect(settings.config == "/run/mosquitto/mosquitto.conf")
        #expect(settings.stopTimeout == 8)
        #expect(settings.socket == "/run/supervisor/supervisor.sock")
        #expect(settings.mosquitto == "mosquitto")
        #expect(settings.gocryptfs == "gocryptfs")
        #expect(settings.fusermount == "fusermount3")
        #expect(settings.restart == .never)
        #expect(settings.badDatabase == .refuse)
    }

    @Test func flagWinsOverVariable() throws {
        let settings = try Settings.load(
            environment: ["SUPERVISOR_CIPHERDIR": "/from-env", "SUPERVISOR_STOP_TIMEOUT": "3"],
            arguments: ["--cipherdir", "/from-flag", "--stop-timeout=5"])
        #expect(settings.cipherdir == "/from-flag")
        #expect(settings.stopTimeout == 5)
    }

    @Test func variablesAreRead() throws {
        let settings = try Settings.load(
            environment: ["SUPERVISOR_MOUNTPOINT": "/data/", "SUPERVISOR_PASSFILE": "/keys/p",
                          "SUPERVISOR_RESTART": "on-failure", "SUPERVISOR_BAD_DATABASE": "move-aside"],
            arguments: [])
        #expect(settings.mountpoint == "/data")
        #expect(settings.passfile == "/keys/p")
        #expect(settings.passfileExplicit)
        #expect(settings.restart == .onFailure)
        #expect(settings.badDatabase == .moveAside)
    }

    @Test(arguments: [
        (["--cipherdir", "relative"], "--cipherdir must be an absolute path"),
        (["--stop-timeout", "abc"], "--stop-timeout must be a number of seconds"),
        (["--stop-timeout", "-1"], "--stop-timeout must be a number of seconds"),
        (["--restart", "always"], "--restart must be one of never, on-failure"),
        (["--bogus", "x"], "unknown option --bogus"),
        (["--mountpoint"], "option --mountpoint needs a value"),
    ])
    func invalidFlagIsRejected(arguments: [String], message: String) {
        let error = #expect(throws: SupervisorError.self) {
            try Settings.load(environment: [:], arguments: arguments)
        }
        #expect(error?.code == .usage)
        #expect(error?.message.contains(message) == true, "got: \(error?.message ?? "")")
    }

    @Test func invalidVariableNamesTheVariable() {
        let error = #expect(throws: SupervisorError.self) {
            try Settings.load(environment: ["SUPERVISOR_STOP_TIMEOUT": "soon"], arguments: [])
        }
        #expect(error?.message.hasPrefix("SUPERVISOR_STOP_TIMEOUT must be a number of seconds") == true)
    }
}

@Suite struct FormattingTests {
    @Test(arguments: [
        (12.345, 1, "12.3"), (0.05, 1, "0.1"), (9.96, 1, "10.0"), (3.0, 0, "3"), (-1.25, 1, "-1.3"), (0.004, 2, "0.00"),
    ])
    func decimalIsRounded(value: Double, places: Int, expected: String) {
        #expect(formatDecimal(value, places: places) == expected)
    }

    @Test func paddedAddsLeadingZeros() {
        #expect(padded(7, 3) == "007")
        #expect(padded(2026, 2) == "2026")
    }
}
