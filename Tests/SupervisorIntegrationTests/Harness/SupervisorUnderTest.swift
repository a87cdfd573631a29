import Foundation
import Glibc

/// `supervisor run` as PID 1 of new PID, mount and network namespaces, with loopback up.
///
/// Commands run inside its mount and network namespaces through nsenter, but outside its PID
/// namespace unless asked, so they outlive the supervisor (the kernel kills every process of
/// a PID namespace when its PID 1 exits).
final class SupervisorUnderTest {
    let sandbox: Sandbox
    let process = Process()
    /// The supervisor's pid in the host's PID namespace.
    private(set) var hostPID: pid_t = 0
    let supervisorLogPath: String
    let brokerLogPath: String

    /// - Parameters:
    ///   - namespaceSetup: shell commands run inside the new namespaces, as root with all
    ///     capabilities, just before the supervisor starts. The supervisor starts only when they
    ///     succeed. Mounts made there reach the host when they land under a shared mount.
    ///   - commandPrefix: a program and its arguments that exec the supervisor, such as
    ///     `setpriv` to drop a capability.
    init(sandbox: Sandbox, environment: [String: String] = [:], arguments: [String] = [], name: String = "supervisor",
         namespaceSetup: String = "", commandPrefix: [String] = []) throws {
        self.sandbox = sandbox
        supervisorLogPath = "\(sandbox.logs)/\(name).err"
        brokerLogPath = "\(sandbox.logs)/\(name).out"
        FileManager.default.createFile(atPath: supervisorLogPath, contents: nil)
        FileManager.default.createFile(atPath: brokerLogPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: Requirements.locate("unshare")!)
        let setup = namespaceSetup.isEmpty ? "" : "{\n\(namespaceSetup)\n} && "
        let prelude = "mount --make-private /proc 2>/dev/null; mount -t proc proc /proc && ip link set lo up && \(setup)exec \"$0\" \"$@\""
        let command = commandPrefix + [Requirements.supervisorBinary, "run"] + arguments
        process.arguments = ["--pid", "--fork", "--mount", "--propagation", "unchanged", "--net",
                             "/bin/sh", "-c", prelude] + command
        process.environment = sandbox.environment(environment)
        process.standardOutput = FileHandle(forWritingAtPath: brokerLogPath)
        process.standardError = FileHandle(forWritingAtPath: supervisorLogPath)
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(5)
        while hostPID == 0 && process.isRunning && Date() < deadline {
            if let child = Self.children(of: process.processIdentifier).first,
               let command = try? String(contentsOfFile: "/proc/\(child)/cmdline", encoding: .utf8),
               command.contains("supervisor") && command.contains("run") && !command.contains("ip link") {
                hostPID = child
            } else {
                usleep(5_000)
            }
        }
        // A supervisor that fails at once may exit before it was seen; its exit code and log
        // are still there, and hostPID stays 0.
        guard hostPID != 0 || !process.isRunning else {
            throw HarnessError("the supervisor did not start under unshare; log: \(supervisorLog)")
        }
    }

    static func children(of pid: pid_t) -> [pid_t] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.flatMap { task -> [pid_t] in
            let text = (try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/children", encoding: .utf8)) ?? ""
            return text.split(separator: " ").compactMap { pid_t($0) }
        }
    }

    var supervisorLog: String { (try? String(contentsOfFile: supervisorLogPath, encoding: .utf8)) ?? "" }
    var brokerLog: String { (try? String(contentsOfFile: brokerLogPath, encoding: .utf8)) ?? "" }

    /// Waits until the supervisor's log contains `text`.
    @discardableResult
    func waitForLog(_ text: String, timeout: TimeInterval = 20) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if supervisorLog.contains(text) || brokerLog.contains(text) {
                return true
            }
            if !process.isRunning {
                return supervisorLog.contains(text) || brokerLog.contains(text)
            }
            usleep(20_000)
        }
        return false
    }

    /// Waits for "running" and for the broker's listener to accept a CONNECT.
    func waitUntilRunning(timeout: TimeInterval = 30) throws {
        guard waitForLog("supervisor info: running", timeout: timeout) else {
            throw HarnessError("the supervisor did not reach running; log:\n\(supervisorLog)")
        }
        guard brokerLog.contains("mosquitto version 2"), brokerLog.contains(" running\n") else {
            throw HarnessError("the broker did not report running; broker log:\n\(brokerLog)")
        }
    }

    func signal(_ signal: Int32) {
        // kill(0, ...) would signal the test's own process group.
        if hostPID > 0 {
            kill(hostPID, signal)
        }
    }

    /// Waits for the supervisor to exit and returns its exit code (unshare passes it on).
    func waitForExit(timeout: TimeInterval = 20) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline {
            usleep(10_000)
        }
        if process.isRunning {
            return nil
        }
        return process.terminationStatus
    }

    /// Sends SIGTERM and returns the exit code.
    func stop(timeout: TimeInterval = 20) -> Int32? {
        signal(SIGTERM)
        return waitForExit(timeout: timeout)
    }

    /// Runs a command in the supervisor's mount and network namespaces (and PID namespace when
    /// asked), with `input` on its standard input.
    @discardableResult
    func inNamespace(_ arguments: [String], pidNamespace: Bool = false, input: Data? = nil,
                     timeout: TimeInterval = 20) throws -> CommandResult {
        var enter = ["nsenter", "-t", String(hostPID), "-m", "-n"]
        if pidNamespace {
            enter.append("-p")
        }
        return try Shell.run(enter + ["--"] + arguments, input: input, timeout: timeout)
    }

    func publish(topic: String, message: String, user: String = "alice", qos: Int = 1, retain: Bool = true) throws -> CommandResult {
        var arguments = ["mosquitto_pub", "-h", "127.0.0.1", "-p", "1883", "-q", String(qos), "-u", user, "-i", "pub-\(user)-\(getpid())", "-t", topic, "-m", message]
        if retain {
            arguments.append("-r")
        }
        return try inNamespace(arguments)
    }

    /// Subscribes and returns the retained messages as "topic payload" lines, waiting `seconds`
    /// for `count` messages.
    func retained(topic: String, user: String = "alice", count: Int = 1, seconds: Int = 2) throws -> [String] {
        let result = try inNamespace(["mosquitto_sub", "-h", "127.0.0.1", "-p", "1883", "-u", user,
                                      "-t", topic, "-v", "-C", String(count), "-W", String(seconds), "--retained-only"],
                                     timeout: TimeInterval(seconds + 10))
        return result.output.split(separator: "\n").map(String.init)
    }

    /// Returns the host pid of the supervisor's child with this command name (mosquitto, gocryptfs).
    func childPID(named name: String) -> pid_t? {
        Self.children(of: hostPID).first { pid in
            let comm = (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)) ?? ""
            return comm.trimmingCharacters(in: .whitespacesAndNewlines) == name
        }
    }

    /// Runs `supervisor status` inside all three namespaces, or from the host when `fromHost`
    /// is set: a process outside the PID namespace is not killed when the supervisor exits.
    ///
    /// Inside, it must join the PID namespace as well, because Swift reads its arguments from
    /// /proc/self/cmdline and the namespace's /proc has no entry for outside processes.
    func status(_ arguments: [String] = [], fromHost: Bool = false, timeout: TimeInterval = 20) throws -> CommandResult {
        var command = ["env"]
        for (key, value) in sandbox.environment() {
            command.append("\(key)=\(value)")
        }
        command += [Requirements.supervisorBinary, "status"] + arguments
        if fromHost {
            return try Shell.run(command, timeout: timeout)
        }
        return try inNamespace(command, pidNamespace: true, timeout: timeout)
    }

    /// Kills the whole namespace if a test left it running.
    func forceStop() {
        if process.isRunning && hostPID > 0 {
            kill(hostPID, SIGKILL)
            process.waitUntilExit()
        }
    }
}
