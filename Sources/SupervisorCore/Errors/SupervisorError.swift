/// A failure of the supervisor itself, with the exit code that `supervisor run` ends with.
///
/// The message is one line that names the value at fault and the fix. Codes 64 to 79 are the
/// supervisor's own, so they never collide with the broker's codes (1, 3, 13) or with 128+signal.
public struct SupervisorError: Error, CustomStringConvertible, Sendable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: Int32
        public let name: String

        /// An invalid flag or setting value.
        public static let usage = Code(rawValue: 64, name: "usage")
        /// The passphrase is missing, unreadable, empty or wrong.
        public static let passphrase = Code(rawValue: 65, name: "passphrase")
        /// The container or host lacks something: /dev/fuse, a program, the mosquitto user, mount permission.
        public static let environment = Code(rawValue: 66, name: "environment")
        /// The cipherdir is missing, not writable, not a gocryptfs store, or its config is corrupt.
        public static let cipherdir = Code(rawValue: 67, name: "cipherdir")
        /// The mountpoint is missing, not a directory, or not empty.
        public static let mountpoint = Code(rawValue: 68, name: "mountpoint")
        /// gocryptfs did not mount in time, or the mount failed the liveness proof.
        public static let mount = Code(rawValue: 69, name: "mount")
        /// The template is missing or the rendered configuration is invalid.
        public static let template = Code(rawValue: 70, name: "template")
        /// The broker database exists but cannot be read or is not a Mosquitto database.
        public static let database = Code(rawValue: 71, name: "database")
        /// gocryptfs ended while the broker was running.
        public static let storeLost = Code(rawValue: 72, name: "store-lost")
        /// The store could not be unmounted cleanly at shutdown.
        public static let unmount = Code(rawValue: 73, name: "unmount")
        /// The broker kept failing and the restart limit was reached.
        public static let restartLimit = Code(rawValue: 74, name: "restart-limit")
        /// A system call failed where no other code applies.
        public static let system = Code(rawValue: 75, name: "system")
        /// The store is in use. For `supervisor passwd` and `rekey`: a gocryptfs mount of the
        /// cipherdir elsewhere, or another process has locked the store. For `run`: a rekey has locked it.
        public static let inUse = Code(rawValue: 76, name: "in-use")
        /// `supervisor rekey`: the cipherdir's filesystem lacks the space or inodes for the new store.
        public static let noSpace = Code(rawValue: 77, name: "no-space")
        /// `supervisor rekey`: a copied file differs from its original; the old store stays in use.
        public static let verification = Code(rawValue: 78, name: "verification")

        public static let all: [Code] = [
            .usage, .passphrase, .environment, .cipherdir, .mountpoint, .mount, .template,
            .database, .storeLost, .unmount, .restartLimit, .system, .inUse, .noSpace, .verification,
        ]

        public var description: String { name }
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
