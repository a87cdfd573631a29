import Foundation
import Glibc
import Testing

/// How a `supervisor passwd` or `supervisor rekey` run on the host ended.
struct KeyCommandResult {
    let status: Int32
    /// True when a signal ended the process; `status` is then the signal number.
    let signaled: Bool
    let output: String
    let error: String
}

/// Helpers for the key-management tests: run the key commands on the host against a sandbox,
/// create stores directly with gocryptfs, and read retained messages back through `supervisor run`.
enum KeyTestSupport {
    static let newPassphrase = "new passphrase, \"quoted\" $and\\ 9c41"

    /// Runs `supervisor COMMAND` on the host with the sandbox's settings. Standard error goes
    /// to a file in the sandbox, so a test can watch progress lines while the command runs.
    static func run(_ command: String, _ arguments: [String], sandbox: Sandbox, environment: [String: String] = [:],
                    input: String? = nil, timeout: TimeInterval = 120,
                    whileRunning: ((Process, () -> String) -> Void)? = nil) throws -> KeyCommandResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Requirements.supervisorBinary)
        process.arguments = [command] + arguments
        process.environment = sandbox.environment(environment)
        let errorPath = "\(sandbox.logs)/\(command)-\(UUID().uuidString).err"
        _ = FileManager.default.createFile(atPath: errorPath, contents: nil)
        let outputPath = errorPath.replacingOccurrences(of: ".err", with: ".out")
        _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        process.standardError = FileHandle(forWritingAtPath: errorPath)
        process.standardOutput = FileHandle(forWritingAtPath: outputPath)
        let inputPipe = Pipe()
        process.standardInput = input == nil ? FileHandle.nullDevice : inputPipe
        try process.run()
        if let input {
            inputPipe.fileHandleForWriting.write(Data(input.utf8))
            try inputPipe.fileHandleForWriting.close()
        }
        let readError = { (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? "" }
        whileRunning?(process, readError)
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline {
            usleep(20_000)
        }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
        }
        process.waitUntilExit()
        return KeyCommandResult(
            status: process.terminationStatus,
            signaled: process.terminationReason == .uncaughtSignal,
            output: (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "",
            error: readError())
    }

    /// Writes a passphrase file in the sandbox's secrets directory and returns its path.
    static func writePassfile(_ passphrase: String, named name: String, in sandbox: Sandbox) throws -> String {
        let path = "\(sandbox.root)/secrets/\(name)"
        try sandbox.write(passphrase + "\n", to: path, mode: 0o600)
        return path
    }

    /// Creates a store in the sandbox's cipherdir with `gocryptfs -init`.
    static func initializeStore(_ sandbox: Sandbox, passphrase: String? = nil) throws {
        mkdir(sandbox.cipherdir, 0o700)
        let result = try Shell.run(["gocryptfs", "-init", "-q", "--", sandbox.cipherdir],
                                   input: Data(((passphrase ?? sandbox.passphrase) + "\n").utf8))
        guard result.status == 0 else {
            throw HarnessError("gocryptfs -init failed with \(result.status): \(result.error)")
        }
    }

    /// Mounts `cipherdir` on `mountpoint` with a foreground gocryptfs that keeps running after
    /// this returns. Returns 0 once the mount is listed, or gocryptfs's exit code.
    ///
    /// Foreground mode, because in its own daemon mode gocryptfs would keep the descriptor
    /// that Foundation's `Process` watches to notice an exit, so `Shell.run` would never return.
    @discardableResult
    static func mount(_ cipherdir: String, on mountpoint: String, passphrase: String) throws -> Int32 {
        mkdir(mountpoint, 0o755)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Requirements.locate("gocryptfs") ?? "/usr/bin/gocryptfs")
        process.arguments = ["-fg", "-q", "--", cipherdir, mountpoint]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        let input = Pipe()
        process.standardInput = input
        try process.run()
        input.fileHandleForWriting.write(Data((passphrase + "\n").utf8))
        try input.fileHandleForWriting.close()
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if gocryptfsMounts(under: mountpoint).contains(mountpoint) {
                return 0
            }
            if !process.isRunning {
                return process.terminationStatus
            }
            usleep(10_000)
        }
        kill(process.processIdentifier, SIGKILL)
        throw HarnessError("gocryptfs did not mount \(cipherdir) on \(mountpoint) within 30 s")
    }

    static func unmount(_ mountpoint: String) {
        _ = try? Shell.run(["fusermount3", "-u", mountpoint])
    }

    static func contents(_ path: String) -> Data? {
        FileManager.default.contents(atPath: path)
    }

    /// Lists the gocryptfs mounts under `root` in the test process's mount table.
    static func gocryptfsMounts(under root: String) -> [String] {
        let table = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        return table.split(separator: "\n").compactMap { line -> String? in
            let fields = line.split(separator: " ")
            guard fields.count > 4, line.contains(" - fuse.gocryptfs "), fields[4].hasPrefix(root) else {
                return nil
            }
            return String(fields[4])
        }
    }

    /// Names in the cipherdir that `supervisor rekey` creates: the journal, its work directory
    /// and kept old stores.
    static func rekeyEntries(_ sandbox: Sandbox) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: sandbox.cipherdir)) ?? [])
            .filter { $0.hasPrefix(".supervisor-rekey") }.sorted()
    }

    /// Starts `supervisor run`, publishes each message as retained, checks it is retained and stops.
    static func publish(_ messages: [(topic: String, payload: String)], sandbox: Sandbox) throws {
        let supervisor = try SupervisorUnderTest(sandbox: sandbox, name: "publish-\(UUID().uuidString)")
        defer { supervisor.forceStop() }
        try supervisor.waitUntilRunning()
        for message in messages {
            let result = try supervisor.publish(topic: message.topic, message: message.payload)
            guard result.status == 0 else {
                throw HarnessError("mosquitto_pub failed: \(result.error)")
            }
        }
        guard try supervisor.retained(topic: "alice/#", count: messages.count).count == messages.count else {
            throw HarnessError("the broker did not retain \(messages.count) messages")
        }
        guard supervisor.stop() == 0 else {
            throw HarnessError("the supervisor did not stop cleanly; log:\n\(supervisor.supervisorLog)")
        }
    }

    /// Starts `supervisor run` with `passfile`, reads the retained messages under alice/# and
    /// stops. Returns the "topic payload" lines and the supervisor's log, or nil lines when it
    /// did not reach running. The log then contains the reason, and `exitCode` the exit code.
    static func readRetained(sandbox: Sandbox, passfile: String, count: Int)
        throws -> (lines: [String]?, log: String, exitCode: Int32?) {
        let supervisor = try SupervisorUnderTest(sandbox: sandbox, environment: ["SUPERVISOR_PASSFILE": passfile],
                                                 name: "read-\(UUID().uuidString)")
        defer { supervisor.forceStop() }
        do {
            try supervisor.waitUntilRunning()
        } catch {
            return (nil, supervisor.supervisorLog, supervisor.waitForExit())
        }
        let lines = try supervisor.retained(topic: "alice/#", count: count, seconds: 5).sorted()
        let code = supervisor.stop()
        return (lines, supervisor.supervisorLog, code)
    }
}
