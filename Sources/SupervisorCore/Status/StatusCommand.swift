import FoundationEssentials
import Glibc

/// `supervisor status`: the health check. It requests the running supervisor's report and
/// checks the store, the broker process, the broker's MQTT listener and persistence itself, all
/// within one timeout, so a frozen process or a dead mount cannot make it hang.
public struct StatusCommand {
    public static let help = """
        Usage: supervisor status [--json] [--timeout SECONDS] [OPTIONS]

        Checks, within the timeout (default 3 s):
          supervisor    the supervisor answers on its control socket and is running
          store         the mountpoint is a live gocryptfs mount of the cipherdir
          broker        the mosquitto process exists and is not stopped
          mqtt          an MQTT CONNECT to the broker's first listener gets a CONNACK
          persistence   the broker has logged no failed save; reports the database's age
          journal       journal mode only: the plugin's status is fresh, its witness session is
                        subscribed and no write failed in the last minute; reports size and last sync
        Exit code 0 when every check passes, 1 otherwise, 64 for an invalid option.

          --json              print one JSON object instead of one line per check
          --timeout SECONDS   bound for the whole command (default 3)

        It reads the same settings as `supervisor run` (SUPERVISOR_SOCKET, SUPERVISOR_CIPHERDIR,
        SUPERVISOR_MOUNTPOINT, SUPERVISOR_CONFIG and their flags).
        """

    public let settings: Settings
    public let json: Bool
    public let timeout: Double

    public init(environment: [String: String], arguments: [String]) throws {
        var remaining: [String] = []
        var json = false
        var timeout = 3.0
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            if argument == "--json" {
                json = true
            } else if argument == "--timeout" || argument.hasPrefix("--timeout=") {
                var value = String(argument.dropFirst("--timeout=".count))
                if argument == "--timeout" {
                    index += 1
                    value = index < arguments.count ? arguments[index] : ""
                }
                guard let seconds = Double(value), seconds > 0, seconds <= 600 else {
                    throw SupervisorError(.usage, "--timeout must be a number of seconds above 0 and at most 600, got \"\(value)\"")
                }
                timeout = seconds
            } else {
                remaining.append(argument)
            }
            index += 1
        }
        settings = try Settings.load(environment: environment, arguments: remaining)
        self.json = json
        self.timeout = timeout
    }

    /// Runs every check and prints the result; returns 0 when healthy and 1 otherwise.
    public func run() -> Int32 {
        let result = HealthCheck(settings: settings, timeout: .milliseconds(Int(timeout * 1000))).run()
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            if let data = try? encoder.encode(result), let text = String(data: data, encoding: .utf8) {
                print(text)
            }
        } else {
            for check in result.checks {
                print("\(check.healthy ? "ok  " : "FAIL") \(check.name): \(check.detail)")
            }
            if let durability = result.durability {
                print("durability: \(durability)")
            }
            print(result.healthy ? "healthy" : "unhealthy")
        }
        fflush(nil)
        return result.healthy ? 0 : 1
    }
}
