import CSupervisor
import Glibc

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
            guard let output = firstLine(of: path, arguments) else {
                return "\(name): cannot run \(path): \(errnoText())"
            }
            return output.split(separator: ";").first.map(String.init) ?? output
        }
    }

    /// Runs a program outside any event loop, as `supervisor version` has none, and returns the
    /// first line of its merged output.
    static func firstLine(of path: String, _ arguments: [String]) -> String? {
        var pipe: [Int32] = [0, 0]
        guard csup_pipe_cloexec(&pipe) == 0 else {
            return nil
        }
        var request = SpawnRequest(path: path, arguments: arguments, environment: [:])
        request.standardOutput = pipe[1]
        request.standardError = pipe[1]
        guard let pid = try? Spawner.spawn(request) else {
            close(pipe[0])
            close(pipe[1])
            return nil
        }
        close(pipe[1])
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = read(pipe[0], &buffer, buffer.count)
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            output += buffer[0..<count]
        }
        close(pipe[0])
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let text = String(decoding: output, as: UTF8.self)
        return text.split(separator: "\n").first.map(String.init) ?? ""
    }
}
