import CSupervisor
import Glibc

/// A program to start, with its arguments, its environment and the targets of its standard streams.
public struct SpawnRequest {
    public var path: String
    public var arguments: [String]
    public var environment: [String: String]
    /// File descriptors that become the child's 0, 1 and 2; nil means /dev/null.
    public var standardInput: Int32?
    public var standardOutput: Int32?
    public var standardError: Int32?
    /// Starts the child in a new session, so terminal and job-control signals aimed at the
    /// supervisor's process group never reach it.
    public var newSession = false

    public init(path: String, arguments: [String], environment: [String: String]) {
        self.path = path
        self.arguments = arguments
        self.environment = environment
    }
}

/// Starts child processes with posix_spawn; the event loop reaps them.
///
/// The supervisor blocks the signals it handles through signalfd, so the child gets an empty
/// signal mask and default dispositions for those signals.
public enum Spawner {
    public static func spawn(_ request: SpawnRequest) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }

        let targets: [(Int32?, Int32)] = [
            (request.standardInput, 0), (request.standardOutput, 1), (request.standardError, 2),
        ]
        for (source, target) in targets {
            if let source {
                posix_spawn_file_actions_adddup2(&actions, source, target)
            } else {
                let flags = target == 0 ? O_RDONLY : O_WRONLY
                posix_spawn_file_actions_addopen(&actions, target, "/dev/null", flags, 0)
            }
        }

        // Descriptors that are not close-on-exec (some opened by Foundation or inherited from the
        // parent) would otherwise reach the child, and a gocryptfs holding one keeps it open.
        _ = withUnsafeMutablePointer(to: &actions) { csup_spawn_add_close_from($0, 3) }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in SignalSet.handled {
            sigaddset(&defaults, signal)
        }
        sigaddset(&defaults, SIGPIPE)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var flags = Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)
        if request.newSession {
            flags |= csup_spawn_setsid_flag()
        }
        posix_spawnattr_setflags(&attributes, flags)

        let argv = ([request.path] + request.arguments).map { strdup($0) }
        let envp = request.environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") }
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let result = (argv + [nil]).withUnsafeBufferPointer { argvBuffer in
            (envp + [nil]).withUnsafeBufferPointer { envBuffer in
                posix_spawn(&pid, request.path, &actions, &attributes,
                            UnsafeMutablePointer(mutating: argvBuffer.baseAddress!),
                            UnsafeMutablePointer(mutating: envBuffer.baseAddress!))
            }
        }
        guard result == 0 else {
            throw SupervisorError(.system, "could not start \(request.path): \(errnoText(result))")
        }
        return pid
    }
}

/// Locates programs by name on PATH, as a shell would.
public enum ProgramLocator {
    public static func locate(_ name: String, path: String?) -> String? {
        if name.contains("/") {
            return access(name, X_OK) == 0 ? name : nil
        }
        let directories = (path ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .split(separator: ":")
        for directory in directories {
            let candidate = "\(directory)/\(name)"
            var info = stat()
            if stat(candidate, &info) == 0, info.st_mode & S_IFMT == S_IFREG, access(candidate, X_OK) == 0 {
                return candidate
            }
        }
        return nil
    }
}
