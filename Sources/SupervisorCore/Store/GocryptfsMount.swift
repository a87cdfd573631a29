import CSupervisor
import Glibc

/// A gocryptfs process serving the mount, run in the foreground as the supervisor's child.
///
/// It runs in its own session so that no signal meant for the broker or the supervisor's
/// process group reaches it: gocryptfs 2.3 dies on SIGHUP and SIGQUIT and leaves a dead mount.
public final class GocryptfsMount {
    public let cipherdir: String
    public let mountpoint: String
    public private(set) var pid: pid_t = 0
    public private(set) var exitStatus: ExitStatus?
    public private(set) var isReady = false
    private var recentOutput: [String] = []

    /// The line gocryptfs 2.3 prints once the kernel has the mount.
    static let readyLine = "Filesystem mounted and ready."
    /// Progress lines that gocryptfs 2.3 prints on every mount; they are left out of error messages.
    static let progressLines = [
        "Reading Password from stdin", "Decrypting master key", "The option \"-allow_other\" is set.",
    ]

    public init(cipherdir: String, mountpoint: String) {
        self.cipherdir = cipherdir
        self.mountpoint = mountpoint
    }

    public var isRunning: Bool { pid > 0 && exitStatus == nil }

    /// Starts gocryptfs and waits until it reports the mount ready, it exits, a stop request
    /// arrives, or `timeout` passes.
    public func mount(passphrase: Passphrase, gocryptfs: String, children: ChildProcesses,
                      environment: [String: String], timeout: Duration, onExit: @escaping (ExitStatus) -> Void) throws {
        var request = SpawnRequest(
            path: gocryptfs,
            arguments: ["-fg", "-nosyslog", "-allow_other", "--", cipherdir, mountpoint],
            environment: environment)
        request.newSession = true
        let started = try children.start(request, wantsInput: true, onLine: { [unowned self] line in
            if line == Self.readyLine {
                isReady = true
            }
            recentOutput.append(line)
            if recentOutput.count > 20 {
                recentOutput.removeFirst()
            }
            Log.forward(line, from: "gocryptfs")
        }, onExit: { [unowned self] status in
            exitStatus = status
            onExit(status)
        })
        pid = started.pid
        if let input = started.input {
            children.write(all: passphrase.bytes + [UInt8(ascii: "\n")], to: input)
            close(input)
        }
        let finished = children.loop.run(until: .now + timeout) {
            isReady || exitStatus != nil || children.interrupted()
        }
        if isReady {
            return
        }
        if let status = exitStatus {
            let output = recentOutput.filter { line in
                !Self.progressLines.contains { line.hasPrefix($0) }
            }.joined(separator: " ")
            throw GocryptfsExit.error(code: status.shellCode, cipherdir: cipherdir, mountpoint: mountpoint,
                                      operation: "mount", output: output, passphraseOrigin: passphrase.origin)
        }
        children.terminate(pid)
        if !finished {
            throw SupervisorError(.mount,
                "gocryptfs did not mount \(cipherdir) on \(mountpoint) within \(formatDuration(timeout)); raise SUPERVISOR_MOUNT_TIMEOUT if the host is slow")
        }
        throw StartupInterrupted()
    }

    /// Flushes the backing filesystem of the cipherdir to disk. syncfs on the FUSE mount itself
    /// does not reach gocryptfs, so the sync goes to the filesystem under the cipherdir.
    public func syncBackingFilesystem() -> Bool {
        let fd = open(cipherdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else {
            Log.error("cannot open the cipherdir \(cipherdir) to sync it: \(errnoText())")
            return false
        }
        defer { close(fd) }
        guard csup_syncfs(fd) == 0 else {
            Log.error("syncfs on the cipherdir \(cipherdir) failed: \(errnoText())")
            return false
        }
        return true
    }

    /// Unmounts with `fusermount3 -u`, retried for about a second while the mount is busy, then
    /// with a lazy unmount as a last resort, and waits for gocryptfs to exit.
    ///
    /// - Important: Call it only after the broker has been reaped, because a lazy unmount under a
    ///   running broker would let it write into the underlying directory.
    /// - Returns: false when the mount could not be removed.
    public func unmount(fusermount: String, children: ChildProcesses) -> Bool {
        var unmounted = false
        for attempt in 1...5 where MountTable.entry(at: mountpoint) != nil {
            let request = SpawnRequest(path: fusermount, arguments: ["-u", "--", mountpoint], environment: [:])
            let result = try? children.run(request, timeout: .seconds(3))
            if result?.status == .exited(0) {
                unmounted = true
                break
            }
            let detail = result.map { "\($0.status): \($0.output.joined(separator: " "))" } ?? "timed out"
            Log.warning("fusermount3 -u \(mountpoint) failed with \(detail) (attempt \(attempt) of 5)")
            children.loop.run(until: .now + .milliseconds(200)) { false }
        }
        if !unmounted && MountTable.entry(at: mountpoint) != nil {
            if umount2(mountpoint, Int32(MNT_DETACH)) == 0 {
                Log.warning("unmounted \(mountpoint) lazily after fusermount3 -u kept failing; the broker had already exited")
                unmounted = true
            } else {
                Log.error("cannot unmount \(mountpoint): \(errnoText())")
            }
        } else {
            unmounted = true
        }
        if isRunning {
            if !children.loop.run(until: .now + .seconds(3), { exitStatus != nil }) {
                Log.warning("gocryptfs (pid \(pid)) did not exit after the unmount; sending SIGTERM")
                children.terminate(pid)
            }
        }
        return unmounted && MountTable.entry(at: mountpoint) == nil
    }
}
