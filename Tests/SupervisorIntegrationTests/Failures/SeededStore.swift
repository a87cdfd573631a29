import Foundation
import Glibc

/// The store that most failure tests start from. A real first start with the sandbox's default
/// passphrase creates it once per test run, with one retained message. It is kept as a tar
/// archive that each test unpacks into its own sandbox.
enum SeededStore {
    static let topic = "alice/seeded"
    static let payload = "seeded-retained-payload-\(getpid())"
    /// The line `SupervisorUnderTest.retained` returns for the seeded message.
    static let retainedLine = "\(topic) \(payload)"

    /// The cipherdir of the seed, as a base64 tar archive (Shell returns text, not bytes).
    private static let archive: Result<String, any Error> = Result { try makeArchive() }

    private static func makeArchive() throws -> String {
        let sandbox = try Sandbox()
        defer { sandbox.remove() }
        let supervisor = try SupervisorUnderTest(sandbox: sandbox, name: "seed")
        defer { supervisor.forceStop() }
        try supervisor.waitUntilRunning()
        let published = try supervisor.publish(topic: topic, message: payload)
        guard published.status == 0 else {
            throw HarnessError("seeding: mosquitto_pub failed: \(published.error)")
        }
        guard supervisor.stop() == 0 else {
            throw HarnessError("seeding: the supervisor did not stop cleanly; log:\n\(supervisor.supervisorLog)")
        }
        let packed = try Shell.run(["/bin/sh", "-c", "tar -C \"$0\" -cf - . | base64 -w 0", sandbox.cipherdir])
        guard packed.status == 0, !packed.output.isEmpty else {
            throw HarnessError("seeding: tar of \(sandbox.cipherdir) failed: \(packed.error)")
        }
        return packed.output
    }

    /// Unpacks the seeded store into the sandbox's cipherdir.
    static func unpack(into sandbox: Sandbox) throws {
        let encoded = try archive.get()
        mkdir(sandbox.cipherdir, 0o700)
        let unpacked = try Shell.run(["/bin/sh", "-c", "base64 -d | tar -C \"$0\" -xpf -", sandbox.cipherdir],
                                     input: Data(encoded.utf8))
        guard unpacked.status == 0 else {
            throw HarnessError("cannot unpack the seeded store: \(unpacked.error)")
        }
    }
}

extension Sandbox {
    /// Creates a sandbox whose cipherdir contains the seeded store.
    static func seeded() throws -> Sandbox {
        let sandbox = try Sandbox()
        do {
            try SeededStore.unpack(into: sandbox)
        } catch {
            sandbox.remove()
            throw error
        }
        return sandbox
    }

    /// Writes an executable script under the sandbox and returns its path.
    func writeScript(_ name: String, _ text: String) throws -> String {
        mkdir(root + "/bin", 0o755)
        let path = root + "/bin/" + name
        try write(text, to: path, mode: 0o755)
        return path
    }

    /// Mounts the store with gocryptfs itself in a private mount namespace, runs `script` with
    /// `$M` set to the plaintext view, and unmounts. The view is a directory of its own, never
    /// the mountpoint, so the mountpoint's underlying directory stays as the supervisor left it.
    ///
    /// - Parameter passfile: given to `gocryptfs -passfile`; by default a copy of the sandbox's
    ///   passphrase that the test cannot have changed.
    func inspectStore(_ script: String, passfile: String? = nil) throws -> CommandResult {
        let view = root + "/inspect"
        mkdir(view, 0o700)
        let rightPassfile = root + "/secrets/inspect-passphrase"
        try write(passphrase + "\n", to: rightPassfile, mode: 0o600)
        let wrapped = """
            set -e
            gocryptfs -q -nosyslog -passfile "$0" -- "$1" "$2"
            M=$2
            trap 'fusermount3 -u "$M"' EXIT
            \(script)
            """
        return try Shell.run(["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", wrapped,
                              passfile ?? rightPassfile, cipherdir, view])
    }

    /// Returns the SHA-256 of a file inside the store, or nil when the store does not open or the file is missing.
    func storeFileHash(_ name: String) throws -> String? {
        let result = try inspectStore("sum=$(sha256sum \"$M/\(name)\")\necho \"${sum%% *}\"")
        return result.status == 0 ? result.output.trimmingCharacters(in: .whitespacesAndNewlines) : nil
    }
}

/// Every file under the cipherdir with its mode and bytes, to show that a failed start changed
/// nothing in the store.
struct CipherdirSnapshot: Equatable {
    struct Entry: Equatable {
        let mode: mode_t
        let bytes: Data
    }

    let entries: [String: Entry]

    init(_ sandbox: Sandbox) {
        var entries: [String: Entry] = [:]
        let enumerator = FileManager.default.enumerator(atPath: sandbox.cipherdir)
        while let relative = enumerator?.nextObject() as? String {
            let path = sandbox.cipherdir + "/" + relative
            var info = stat()
            guard lstat(path, &info) == 0 else { continue }
            let bytes = info.st_mode & S_IFMT == S_IFREG ? (FileManager.default.contents(atPath: path) ?? Data()) : Data()
            entries[relative] = Entry(mode: info.st_mode, bytes: bytes)
        }
        self.entries = entries
    }
}
