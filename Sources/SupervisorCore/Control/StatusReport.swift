/// The report that the running supervisor sends on its control socket, as JSON.
public struct StatusReport: Codable, Sendable, Equatable {
    public enum Phase: String, Codable, Sendable {
        case starting, running, stopping
    }

    /// How long one startup step took.
    public struct Step: Codable, Sendable, Equatable {
        public let name: String
        public let milliseconds: Double
    }

    public var phase: Phase
    public var supervisorPid: Int32
    public var supervisorStartedAt: Double
    public var brokerPid: Int32?
    public var brokerStartedAt: Double?
    public var brokerRestarts: Int
    public var brokerFailedSaves: Int
    public var gocryptfsPid: Int32?
    public var cipherdir: String
    public var mountpoint: String
    public var config: String
    public var databaseFile: String
    public var probeHost: String?
    public var probePort: Int?
    public var mosquittoVersion: String?
    public var gocryptfsVersion: String?
    public var steps: [Step]
    /// "autosave" or "journal" (SUPERVISOR_DURABILITY).
    public var durability: String? = nil
    /// The journal plugin's counters in journal mode, when its status file could be read.
    public var journal: JournalStatus? = nil
}
