import Foundation
import Glibc
import Testing

/// The scanner that every confidentiality check relies on must find what it looks for.
/// These tests need no root and no namespaces.
@Suite struct PlaintextScannerTests {
    let directory: String

    init() throws {
        var template = Array("/tmp/msup-scanner-XXXXXX".utf8CString)
        guard let created = mkdtemp(&template) else {
            throw HarnessError("mkdtemp failed: \(String(cString: strerror(errno)))")
        }
        directory = String(cString: created)
    }

    private func write(_ bytes: [UInt8], to name: String) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: "\(directory)/\(name)"))
    }

    private func remove() {
        _ = try? FileManager.default.removeItem(atPath: directory)
    }

    @Test func findsNeedleAnywhereInFile() throws {
        defer { remove() }
        let needle = Array("alice/secret-topic".utf8)
        let filler = [UInt8](repeating: UInt8(ascii: "a"), count: 70_000)
        try write(needle + filler, to: "start")
        try write(filler + needle + filler, to: "middle")
        try write(filler + needle, to: "end")
        try FileManager.default.createDirectory(atPath: "\(directory)/nested/deeper", withIntermediateDirectories: true)
        try write([0, 0xFF] + needle, to: "nested/deeper/file")

        let findings = PlaintextScanner.scan([directory], for: [PlaintextScanner.Needle("alice/secret-topic")])
        #expect(Set(findings.map(\.file)) == Set(["start", "middle", "end", "nested/deeper/file"].map { "\(directory)/\($0)" }))
    }

    @Test func ignoresPartialMatches() throws {
        defer { remove() }
        try write(Array("alice/secret-topi".utf8) + Array("lice/secret-topic".utf8), to: "partial")
        try write(Array("alice/secret-topi".utf8), to: "truncated")
        #expect(PlaintextScanner.scan([directory], for: [PlaintextScanner.Needle("alice/secret-topic")]).isEmpty)
    }

    @Test func findsBinaryNeedleAndDatabaseHeader() throws {
        defer { remove() }
        let payload: [UInt8] = [0x00, 0x0A, 0xFF, 0x80, 0x00, 0x7F, 0x01]
        try write([1, 2, 3] + payload + PlaintextScanner.databaseHeader, to: "database")
        let findings = PlaintextScanner.scan([directory], for: [PlaintextScanner.Needle(name: "payload", bytes: payload), .databaseHeader])
        #expect(Set(findings.map(\.needle)) == ["payload", PlaintextScanner.Needle.databaseHeader.name])
    }

    @Test func scansFileGivenAsPath() throws {
        defer { remove() }
        try write(Array("config with passphrase-1234".utf8), to: "mosquitto.conf")
        let findings = PlaintextScanner.scan(["\(directory)/mosquitto.conf"], for: [PlaintextScanner.Needle("passphrase-1234")])
        #expect(findings.map(\.file) == ["\(directory)/mosquitto.conf"])
    }

    /// A FIFO would block a read forever and a symbolic link may point out of the tree.
    @Test func skipsSymbolicLinksAndFIFOs() throws {
        defer { remove() }
        let outside = "\(directory)-outside"
        try Data("alice/secret-topic".utf8).write(to: URL(fileURLWithPath: outside))
        defer { unlink(outside) }
        #expect(symlink(outside, "\(directory)/link") == 0)
        #expect(mkfifo("\(directory)/fifo", 0o600) == 0)
        #expect(PlaintextScanner.regularFiles(under: [directory]) == [])
        #expect(PlaintextScanner.scan([directory], for: [PlaintextScanner.Needle("alice/secret-topic")]).isEmpty)
    }

    @Test func findsSecretInProcessCommandLineAndEnvironment() throws {
        defer { remove() }
        let secret = "scanner-secret-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        // The shell waits on its standard input (a builtin, so no child) with the secret as $0.
        process.arguments = ["-c", "read line", secret]
        process.environment = ["SCANNER_TEST_VALUE": secret + "-environment"]
        let input = Pipe()
        process.standardInput = input
        try process.run()
        defer {
            try? input.fileHandleForWriting.close()
            process.waitUntilExit()
        }
        let pid = String(process.processIdentifier)
        #expect(PlaintextScanner.processesWithSecretInCommandLine(secret) == [pid])
        #expect(PlaintextScanner.processesWithSecretInEnvironment(secret + "-environment") == [pid])
    }
}
