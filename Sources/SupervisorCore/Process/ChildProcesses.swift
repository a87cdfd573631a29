import CSupervisor
import Glibc

/// The supervisor's children: starts them, pipes their output into the event loop, and records
/// how each one ended when the loop reaps it.
public final class ChildProcesses {
    public let loop: EventLoop
    private var exits: [pid_t: ExitStatus] = [:]
    private var exitHandlers: [pid_t: (ExitStatus) -> Void] = [:]
    /// Set when SIGTERM or SIGINT arrives while a helper is waited for, so the wait ends early.
    public var interrupted: () -> Bool = { false }

    public init(loop: EventLoop) {
        self.loop = loop
        loop.onChildExit = { [unowned self] pid, status in
            exits[pid] = status
            exitHandlers.removeValue(forKey: pid)?(status)
        }
    }

    /// A running child with its output pipe, which the loop reads line by line.
    public struct Started {
        public let pid: pid_t
        /// The write end of the child's standard input, when input was requested.
        public let input: Int32?
        /// The read end of the child's merged standard output and error.
        public let output: Int32
    }

    /// Starts a child whose standard output and error both go to one pipe read by the loop.
    ///
    /// - Parameters:
    ///   - wantsInput: gives the child a pipe on standard input; the caller writes and closes it.
    ///   - onLine: receives each output line.
    ///   - onExit: receives the exit status when the loop reaps the child.
    public func start(
        _ request: SpawnRequest, wantsInput: Bool = false,
        onLine: @escaping (String) -> Void, onExit: ((ExitStatus) -> Void)? = nil
    ) throws -> Started {
        var outputPipe: [Int32] = [0, 0]
        guard csup_pipe_cloexec(&outputPipe) == 0 else {
            throw SupervisorError(.system, "pipe2 failed: \(errnoText())")
        }
        var inputPipe: [Int32] = [-1, -1]
        if wantsInput {
            guard csup_pipe_cloexec(&inputPipe) == 0 else {
                close(outputPipe[0])
                close(outputPipe[1])
                throw SupervisorError(.system, "pipe2 failed: \(errnoText())")
            }
        }
        var spawn = request
        spawn.standardOutput = outputPipe[1]
        spawn.standardError = outputPipe[1]
        spawn.standardInput = wantsInput ? inputPipe[0] : nil
        let pid: pid_t
        do {
            pid = try Spawner.spawn(spawn)
        } catch {
            for fd in outputPipe + inputPipe where fd >= 0 {
                close(fd)
            }
            throw error
        }
        close(outputPipe[1])
        if wantsInput {
            close(inputPipe[0])
        }
        loop.adopt(pid)
        if let onExit {
            exitHandlers[pid] = onExit
        }
        try loop.watchLines(of: outputPipe[0], onLine)
        return Started(pid: pid, input: wantsInput ? inputPipe[1] : nil, output: outputPipe[0])
    }

    /// Returns the exit status of a child once it has been reaped.
    public func status(of pid: pid_t) -> ExitStatus? {
        exits[pid]
    }

    /// Runs a short-lived program to completion and returns its status and output lines.
    ///
    /// Signals keep being handled while it runs. When `interrupted` becomes true, or `timeout`
    /// passes, the program gets SIGTERM and then SIGKILL, and the result is nil.
    public func run(
        _ request: SpawnRequest, input: [UInt8]? = nil, timeout: Duration = .seconds(30)
    ) throws -> (status: ExitStatus, output: [String])? {
        var lines: [String] = []
        let started = try start(request, wantsInput: input != nil, onLine: { lines.append($0) })
        if let fd = started.input, let input {
            write(all: input, to: fd)
            close(fd)
        }
        let deadline = ContinuousClock.now + timeout
        let finished = loop.run(until: deadline) {
            interrupted() || (exits[started.pid] != nil && !loop.isWatching(started.output))
        }
        if !finished || exits[started.pid] == nil {
            terminate(started.pid)
            loop.run(until: .now + .seconds(2)) { !loop.isWatching(started.output) }
            exits[started.pid] = nil
            return nil
        }
        return (exits.removeValue(forKey: started.pid)!, lines)
    }

    /// Sends SIGTERM, then SIGKILL after two seconds, and waits until the child is reaped.
    public func terminate(_ pid: pid_t) {
        guard exits[pid] == nil else { return }
        kill(pid, SIGTERM)
        if !loop.run(until: .now + .seconds(2), { exits[pid] != nil }) {
            kill(pid, SIGKILL)
            loop.run(until: .now + .seconds(5)) { exits[pid] != nil }
        }
    }

    /// Writes every byte to a pipe; the data is small (a passphrase), so it fits the pipe buffer.
    public func write(all bytes: [UInt8], to fd: Int32) {
        var offset = 0
        while offset < bytes.count {
            let count = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                return
            }
            offset += count
        }
    }
}
