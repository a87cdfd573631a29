import Foundation

/// Reads every byte of every file under some directories and reports each needle found:
/// the confidentiality check that runs after each scenario.
enum PlaintextScanner {
    /// The first bytes of every Mosquitto database: 00 B5 00 "mosquitto db".
    static let databaseHeader: [UInt8] = [0x00, 0xB5, 0x00] + Array("mosquitto db".utf8)

    struct Finding: CustomStringConvertible {
        let file: String
        let needle: String
        var description: String { "\(needle) in \(file)" }
    }

    /// Scans the trees for each text needle and for the database header.
    static func scan(_ directories: [String], for needles: [String]) -> [Finding] {
        var patterns: [(String, [UInt8])] = needles.filter { !$0.isEmpty }.map { ($0, Array($0.utf8)) }
        patterns.append(("the Mosquitto database header", databaseHeader))
        var findings: [Finding] = []
        for directory in directories {
            guard let enumerator = FileManager.default.enumerator(atPath: directory) else { continue }
            while let relative = enumerator.nextObject() as? String {
                let path = directory + "/" + relative
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue,
                      let data = FileManager.default.contents(atPath: path) else {
                    continue
                }
                let bytes = [UInt8](data)
                for (name, pattern) in patterns where contains(bytes, pattern) {
                    findings.append(Finding(file: path, needle: name))
                }
            }
        }
        return findings
    }

    static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, haystack.count >= needle.count else { return false }
        let first = needle[0]
        var index = 0
        while index <= haystack.count - needle.count {
            if haystack[index] == first && Array(haystack[index..<index + needle.count]) == needle {
                return true
            }
            index += 1
        }
        return false
    }

    /// Pids whose command line contains `secret`, from every /proc/PID/cmdline on the host.
    static func processesWithSecretInCommandLine(_ secret: String) -> [String] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.filter { Int($0) != nil }.filter { pid in
            guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
            return contains([UInt8](data), Array(secret.utf8))
        }
    }
}
