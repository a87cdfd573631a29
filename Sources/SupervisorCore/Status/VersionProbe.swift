import Foundation

/// The versions of the programs the supervisor runs, for `supervisor version`.
public enum VersionProbe {
    public static func externalVersions(environment: [String: String]) -> [String] {
        let programs = [
            (environment["SUPERVISOR_MOSQUITTO"] ?? "mosquitto", ["-h"]),
            (environment["SUPERVISOR_GOCRYPTFS"] ?? "gocryptfs", ["-version"]),
        ]
        return programs.map { name, arguments in
            guard let path = ProgramLocator.locate(name, path: environment["PATH"]) else {
                return "\(name): not found on PATH"
            }
            let process = Process()
            process.executableURL = URL(fileURLWithPath: path)
            process.arguments = arguments
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = pipe
            do {
                try process.run()
            } catch {
                return "\(name): cannot run \(path): \(error)"
            }
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            let first = String(decoding: data, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? ""
            return first.split(separator: ";").first.map(String.init) ?? first
        }
    }
}
