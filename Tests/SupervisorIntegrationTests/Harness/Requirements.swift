import Foundation
import Glibc
import Testing

/// Whether this machine can run the namespace tests: root, /dev/fuse and the real programs.
///
/// Outside CI a missing requirement skips the tests with the reason. With `CI` set the tests
/// run anyway and fail loudly, so a CI machine without FUSE never passes by skipping.
enum Requirements {
    static let programs = ["mosquitto", "mosquitto_pub", "mosquitto_sub", "gocryptfs", "fusermount3", "unshare", "nsenter", "ip", "python3"]

    static var missing: [String] {
        var problems: [String] = []
        if getuid() != 0 {
            problems.append("root")
        }
        if access("/dev/fuse", R_OK | W_OK) != 0 {
            problems.append("/dev/fuse")
        }
        for program in programs where locate(program) == nil {
            problems.append(program)
        }
        if getpwnam("mosquitto") == nil {
            problems.append("the mosquitto user")
        }
        return problems
    }

    static var isCI: Bool {
        !(ProcessInfo.processInfo.environment["CI"] ?? "").isEmpty
    }

    /// True when the tests can run, or must run because this is CI.
    static var enabled: Bool {
        isCI || missing.isEmpty
    }

    static var reason: Comment {
        "needs root, FUSE and the Debian packages mosquitto, mosquitto-clients, gocryptfs, fuse3, iproute2, python3; missing: \(missing.joined(separator: ", "))"
    }

    static func locate(_ program: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin"
        for directory in path.split(separator: ":") + ["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"] {
            let candidate = "\(directory)/\(program)"
            if access(candidate, X_OK) == 0 {
                return candidate
            }
        }
        return nil
    }

    /// The supervisor executable built next to the test bundle, or SUPERVISOR_BINARY.
    static var supervisorBinary: String {
        if let override = ProcessInfo.processInfo.environment["SUPERVISOR_BINARY"] {
            return override
        }
        let testBinary = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var directory = testBinary.deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = directory.appendingPathComponent("supervisor").path
            if access(candidate, X_OK) == 0 {
                return candidate
            }
            directory = directory.deletingLastPathComponent()
        }
        return URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent(".build/debug/supervisor").path
    }

    /// The Python 3 interpreter for the test helpers under tests/helpers. Debian's
    /// /usr/bin/python3 comes first, because a version manager's shim on PATH adds about
    /// 100 ms to every start.
    static var python: String {
        access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : (locate("python3") ?? "python3")
    }

    /// The repository root, for the shipped template and ACL.
    static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }
}
