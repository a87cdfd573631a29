import Glibc

/// The encrypted directory on the volume: checked, and initialized on first start.
public struct Cipherdir {
    public let path: String

    public init(path: String) {
        self.path = path
    }

    public var configPath: String { path + "/gocryptfs.conf" }

    public var isInitialized: Bool {
        access(configPath, F_OK) == 0
    }

    /// Checks that the directory can hold a store: creates it when missing, rejects one that is
    /// not writable or contains other files without a gocryptfs.conf.
    ///
    /// - Returns: true when the store still has to be initialized.
    public func prepare() throws -> Bool {
        switch FileSystem.kind(of: path) {
        case (.missing, _):
            guard FileSystem.makeDirectories(path, mode: 0o700) else {
                throw SupervisorError(.cipherdir, "cannot create the cipherdir \(path): \(errnoText()); create it or mount a volume there")
            }
            Log.warning("created the missing cipherdir \(path) for a new store; if you expected an existing store, stop and mount the store's volume there, or correct SUPERVISOR_CIPHERDIR")
        case (.other, let code) where code != 0:
            throw SupervisorError(.cipherdir, "cannot access the cipherdir \(path): \(errnoText(code)); check the volume mounted there")
        case (.other, _):
            throw SupervisorError(.cipherdir, "the cipherdir \(path) is not a directory; mount a directory or volume there")
        case (.directory, _):
            break
        }
        guard access(path, W_OK) == 0 else {
            throw SupervisorError(.cipherdir, "the cipherdir \(path) is not writable: \(errnoText()); mount the volume read-write")
        }
        if isInitialized {
            return false
        }
        guard let names = FileSystem.entries(of: path) else {
            throw SupervisorError(.cipherdir, "cannot list the cipherdir \(path): \(errnoText())")
        }
        guard names.isEmpty else {
            throw SupervisorError(.cipherdir,
                "the cipherdir \(path) has no gocryptfs.conf but is not empty (\(FileSystem.summarize(names))); point SUPERVISOR_CIPHERDIR at the store or at an empty directory, or restore gocryptfs.conf from your backup")
        }
        return true
    }

    /// Initializes a new store with `gocryptfs -init`, passing the passphrase on standard input.
    public func initialize(with passphrase: Passphrase, gocryptfs: String, children: ChildProcesses, environment: [String: String]) throws {
        var request = SpawnRequest(path: gocryptfs, arguments: ["-init", "-q", "--", path], environment: environment)
        request.newSession = true
        guard let result = try children.run(request, input: passphrase.bytes + [UInt8(ascii: "\n")], timeout: .seconds(60)) else {
            throw StartupInterrupted()
        }
        guard result.status == .exited(0) else {
            let code = result.status.shellCode
            throw GocryptfsExit.error(code: code, cipherdir: path, mountpoint: "", operation: "-init",
                                      output: result.output.joined(separator: " "))
        }
    }
}

/// Thrown when a stop request arrives during startup; startup then undoes what it did.
public struct StartupInterrupted: Error {}
