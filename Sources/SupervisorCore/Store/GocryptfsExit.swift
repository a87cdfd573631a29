/// Turns a gocryptfs 2.3 exit code into the supervisor's error, with the fix for the operator.
///
/// Codes from gocryptfs's exitcodes package, checked against the 2.3 binary: 6 cipherdir,
/// 8 and 23 config write or load, 9 and 22 empty passphrase, 10 mountpoint, 11 config missing,
/// 12 wrong passphrase, 19 fusermount failed.
public enum GocryptfsExit {
    /// - Parameter passphraseOrigin: where the passphrase came from (a path or a variable), so a
    ///   wrong one can be found.
    public static func error(code: Int32, cipherdir: String, mountpoint: String, operation: String, output: String,
                             passphraseOrigin: String? = nil) -> SupervisorError {
        let detail = output.isEmpty ? "" : " (gocryptfs: \(output))"
        switch code {
        case 12:
            let origin = passphraseOrigin.map { " from \($0)" } ?? ""
            return SupervisorError(.passphrase,
                "wrong passphrase\(origin) for the store in \(cipherdir)\(detail); provide the store's current passphrase (the one set at creation or by the last `supervisor passwd`); a file saved with Windows line endings adds a carriage return to it")
        case 9, 22:
            return SupervisorError(.passphrase,
                "gocryptfs received an empty passphrase for \(cipherdir)\(detail); put the passphrase on the first line of the passfile")
        case 10:
            return SupervisorError(.mountpoint,
                "gocryptfs rejected the mountpoint \(mountpoint)\(detail); it must be an empty directory with no mount on it")
        case 6:
            return SupervisorError(.cipherdir,
                "gocryptfs rejected the cipherdir \(cipherdir)\(detail); it must be a directory that is empty (first start) or holds a gocryptfs store")
        case 8, 11, 23:
            return SupervisorError(.cipherdir,
                "gocryptfs cannot use \(cipherdir)/gocryptfs.conf\(detail); restore the file from your backup of the store's configuration")
        case 19:
            return SupervisorError(.environment,
                "mounting \(mountpoint) is not permitted\(detail); run the container with --device /dev/fuse --cap-add SYS_ADMIN (and --security-opt apparmor:unconfined where AppArmor is active)")
        default:
            return SupervisorError(.mount,
                "gocryptfs \(operation) of \(cipherdir) failed with exit code \(code)\(detail); see its output above")
        }
    }
}
