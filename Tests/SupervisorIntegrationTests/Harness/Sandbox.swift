import Foundation
import Glibc

/// A directory tree for one supervisor under test: cipherdir, mountpoint, passfile, template,
/// ACL, rendered configuration and logs.
///
/// The root is bind-mounted on itself and made a shared mount, so the gocryptfs mount that the
/// supervisor makes inside its own mount namespace also shows on the host. That lets a test see
/// a mount left behind after the namespace is gone.
final class Sandbox {
    static let defaultPassphrase = "correct horse, \"battery\" $staple\\ 7f3a"

    let root: String
    var cipherdir: String { root + "/cipher" }
    var mountpoint: String { root + "/mnt" }
    var passfile: String { root + "/secrets/passphrase" }
    var template: String { root + "/etc/mosquitto.conf.template" }
    var acl: String { root + "/etc/acl" }
    var config: String { root + "/run/mosquitto.conf" }
    var socket: String { root + "/run/supervisor.sock" }
    var logs: String { root + "/logs" }
    let passphrase: String
    let hasPassfile: Bool

    init(passphrase: String = Sandbox.defaultPassphrase, writePassfile: Bool = true) throws {
        var template = Array("/tmp/msup-test-XXXXXX".utf8CString)
        guard let created = mkdtemp(&template) else {
            throw HarnessError("mkdtemp failed: \(String(cString: strerror(errno)))")
        }
        root = String(cString: created)
        self.passphrase = passphrase
        hasPassfile = writePassfile
        chmod(root, 0o755)
        try Shell.run(["mount", "--bind", root, root])
        try Shell.run(["mount", "--make-shared", root])
        for directory in ["secrets", "etc", "run", "logs"] {
            mkdir(root + "/" + directory, 0o755)
        }
        chmod(root + "/secrets", 0o700)
        if writePassfile {
            try write(passphrase + "\n", to: passfile, mode: 0o600)
        }
        let shipped = try String(contentsOf: Requirements.repositoryRoot.appendingPathComponent("mosquitto.conf.template"), encoding: .utf8)
        try write(shipped, to: self.template, mode: 0o644)
        let shippedACL = try String(contentsOf: Requirements.repositoryRoot.appendingPathComponent("config/acl"), encoding: .utf8)
        try write(shippedACL, to: acl, mode: 0o644)
    }

    /// Returns the environment that points `supervisor run` at this sandbox.
    func environment(_ extra: [String: String] = [:]) -> [String: String] {
        var environment = [
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "SUPERVISOR_CIPHERDIR": cipherdir,
            "SUPERVISOR_MOUNTPOINT": mountpoint,
            "SUPERVISOR_PASSFILE": passfile,
            "SUPERVISOR_TEMPLATE": template,
            "SUPERVISOR_CONFIG": config,
            "SUPERVISOR_SOCKET": socket,
            "SUPERVISOR_STOP_TIMEOUT": "8",
            "MOSQUITTO_ACL_FILE": acl,
            "MOSQUITTO_BIND_ADDRESS": "127.0.0.1",
        ]
        if !hasPassfile {
            environment["SUPERVISOR_PASSFILE"] = nil
        }
        environment.merge(extra) { $1 }
        return environment
    }

    func write(_ text: String, to path: String, mode: mode_t) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        chmod(path, mode)
    }

    /// Lists what is in the mountpoint's underlying directory in the host's mount namespace.
    func filesUnderMountpoint() -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: mountpoint)) ?? []
    }

    /// True when the host's mount table lists a mount on the mountpoint.
    var isMounted: Bool {
        // FileHandle reads to the end; String(contentsOfFile:) stops after the first 4 KB of a procfs file.
        let bytes = (try? FileHandle(forReadingFrom: URL(fileURLWithPath: "/proc/self/mountinfo")).readToEnd()) ?? nil
        let table = String(decoding: bytes ?? Data(), as: UTF8.self)
        return table.split(separator: "\n").contains { $0.split(separator: " ").dropFirst(4).first == Substring(mountpoint) }
    }

    /// Unmounts whatever the test left and removes the tree.
    func remove() {
        _ = try? Shell.run(["fusermount3", "-u", "-z", mountpoint])
        _ = try? Shell.run(["umount", "-R", "-l", root])
        _ = try? FileManager.default.removeItem(atPath: root)
    }
}

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) {
        self.description = description
    }
}
