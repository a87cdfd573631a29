import Foundation

/// The result of a command the tests ran.
struct CommandResult {
    let status: Int32
    let output: String
    let error: String
}

/// Runs commands for the tests with Foundation.Process, with a time limit.
enum Shell {
    /// A perl program that clears the signal mask and execs its arguments. The test runner's
    /// threads block SIGALRM and SIGTERM, and a child inherits that mask, so without the reset
    /// `mosquitto_sub -W` never times out and `timeout` cannot stop anything.
    static let resetSignalMask = "sigprocmask(SIG_SETMASK, POSIX::SigSet->new) or die \"sigprocmask: $!\"; exec {$ARGV[0]} @ARGV or die \"exec $ARGV[0]: $!\""

    @discardableResult
    static func run(_ arguments: [String], environment: [String: String]? = nil, input: Data? = nil,
                    timeout: TimeInterval = 30) throws -> CommandResult {
        let process = Process()
        let program = arguments[0].hasPrefix("/") ? arguments[0] : (Requirements.locate(arguments[0]) ?? arguments[0])
        process.executableURL = URL(fileURLWithPath: Requirements.locate("perl") ?? "/usr/bin/perl")
        process.arguments = ["-MPOSIX", "-e", resetSignalMask, program] + arguments.dropFirst()
        if let environment {
            process.environment = environment
        }
        let output = Pipe()
        let error = Pipe()
        process.standardOutput = output
        process.standardError = error
        let inputPipe = Pipe()
        process.standardInput = input == nil ? FileHandle.nullDevice : inputPipe
        try process.run()
        if let input {
            inputPipe.fileHandleForWriting.write(input)
            try inputPipe.fileHandleForWriting.close()
        }
        let collector = OutputCollector(output: output, error: error)
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline {
            usleep(10_000)
        }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
        }
        process.waitUntilExit()
        let (stdout, stderr) = collector.finish()
        return CommandResult(status: process.terminationStatus, output: stdout, error: stderr)
    }

    /// Runs a shell script with /bin/sh -c.
    @discardableResult
    static func sh(_ script: String, timeout: TimeInterval = 30) throws -> CommandResult {
        try run(["/bin/sh", "-c", script], timeout: timeout)
    }
}

/// Reads both pipes on background threads so a chatty command never blocks on a full pipe.
private final class OutputCollector: @unchecked Sendable {
    private let group = DispatchGroup()
    private var stdout = Data()
    private var stderr = Data()

    init(output: Pipe, error: Pipe) {
        group.enter()
        DispatchQueue.global().async {
            self.stdout = output.fileHandleForReading.readDataToEndOfFile()
            self.group.leave()
        }
        group.enter()
        DispatchQueue.global().async {
            self.stderr = error.fileHandleForReading.readDataToEndOfFile()
            self.group.leave()
        }
    }

    func finish() -> (String, String) {
        group.wait()
        return (String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
    }
}
