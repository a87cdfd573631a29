import Foundation
import Glibc

/// Reads every byte of every file under some directories and reports each needle found:
/// the confidentiality check that runs after each scenario.
///
/// It also looks for a secret in the command line and environment of every process on the
/// host. Searches are exact byte matches, so a needle is found only in the encoding
/// the caller gives.
enum PlaintextScanner {
    /// The first bytes of every Mosquitto database: 00 B5 00 "mosquitto db".
    static let databaseHeader: [UInt8] = [0x00, 0xB5, 0x00] + Array("mosquitto db".utf8)

    /// A byte sequence to look for, with the name a finding shows in place of the bytes.
    struct Needle: Hashable {
        let name: String
        let bytes: [UInt8]

        init(name: String, bytes: [UInt8]) {
            self.name = name
            self.bytes = bytes
        }

        /// Creates a text needle that findings show as itself.
        init(_ text: String) {
            self.init(name: text, bytes: Array(text.utf8))
        }

        static let databaseHeader = Needle(name: "the Mosquitto database header", bytes: PlaintextScanner.databaseHeader)
    }

    struct Finding: CustomStringConvertible {
        let file: String
        let needle: String
        var description: String { "\(needle) in \(file)" }
    }

    /// The name a finding has when a file could not be read, so an unread file fails the check.
    static let unreadable = "unreadable file"

    /// Scans the trees for each text needle and for the database header.
    static func scan(_ directories: [String], for needles: [String]) -> [Finding] {
        scan(directories, for: needles.filter { !$0.isEmpty }.map(Needle.init) + [.databaseHeader])
    }

    /// Scans every regular file under the paths (symbolic links are not followed) for each
    /// needle. A file that cannot be read becomes a finding named `unreadable`.
    static func scan(_ directories: [String], for needles: [Needle]) -> [Finding] {
        let patterns = needles.filter { !$0.bytes.isEmpty }
        var findings: [Finding] = []
        for path in regularFiles(under: directories) {
            guard let data = FileManager.default.contents(atPath: path) else {
                findings.append(Finding(file: path, needle: unreadable))
                continue
            }
            for needle in patterns where contains(data, needle.bytes) {
                findings.append(Finding(file: path, needle: needle.name))
            }
        }
        return findings
    }

    /// Lists the regular files under the paths, found with lstat so that a symbolic link, a
    /// socket or a FIFO is never opened. A path that is itself a regular file is included.
    static func regularFiles(under directories: [String]) -> [String] {
        var files: [String] = []
        for directory in directories {
            var info = stat()
            if lstat(directory, &info) == 0 && info.st_mode & S_IFMT == S_IFREG {
                files.append(directory)
                continue
            }
            guard let enumerator = FileManager.default.enumerator(atPath: directory) else { continue }
            while let relative = enumerator.nextObject() as? String {
                let path = directory + "/" + relative
                var info = stat()
                if lstat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFREG {
                    files.append(path)
                }
            }
        }
        return files
    }

    static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        haystack.withUnsafeBytes { contains($0, needle) }
    }

    static func contains(_ haystack: Data, _ needle: [UInt8]) -> Bool {
        haystack.withUnsafeBytes { contains($0, needle) }
    }

    private static func contains(_ haystack: UnsafeRawBufferPointer, _ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, haystack.count >= needle.count, let base = haystack.baseAddress else {
            return false
        }
        // memchr finds each candidate for the first byte (Glibc does not export memmem).
        return needle.withUnsafeBytes { pattern in
            let first = Int32(pattern[0])
            let last = haystack.count - pattern.count
            var offset = 0
            while offset <= last {
                guard let hit = memchr(base + offset, first, last - offset + 1) else {
                    return false
                }
                if memcmp(hit, pattern.baseAddress!, pattern.count) == 0 {
                    return true
                }
                offset = base.distance(to: hit) + 1
            }
            return false
        }
    }

    /// Pids whose command line contains `secret`, from every /proc/PID/cmdline on the host.
    static func processesWithSecretInCommandLine(_ secret: String) -> [String] {
        processes(whose: "cmdline", contains: secret)
    }

    /// Pids whose environment contains `secret`, from every /proc/PID/environ on the host.
    static func processesWithSecretInEnvironment(_ secret: String) -> [String] {
        processes(whose: "environ", contains: secret)
    }

    private static func processes(whose file: String, contains secret: String) -> [String] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.filter { Int($0) != nil }.filter { pid in
            guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/\(file)") else { return false }
            return contains(data, Array(secret.utf8))
        }
    }
}
