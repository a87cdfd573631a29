import Glibc

/// The journal plugin's counters, read from its status file (one "name value" pair per line,
/// replaced by rename at least once a second while the broker runs).
public struct JournalStatus: Codable, Sendable, Equatable {
    /// Unix seconds of the plugin's last status update.
    public var updatedAt: Double
    public var directory: String
    /// Bytes in use in the journal's segments: headers, records and their padding, without the
    /// unused zeros of a prepared segment.
    public var bytes: Int
    /// Bytes of the records a compaction would keep.
    public var liveBytes: Int
    public var segments: Int
    public var topics: Int
    public var pendingQoS2: Int
    public var recordsWritten: Int
    /// Unix seconds of the newest record made durable (fdatasync), or nil when there is none.
    public var lastSyncAt: Double?
    public var failedWrites: Int
    /// Unix seconds of the last failed write or fdatasync, or nil when there was none.
    public var lastFailureAt: Double?
    public var rejectedPublishes: Int
    public var recoveredRecords: Int
    public var truncatedBytes: Int
    public var replayedMessages: Int
    public var compactions: Int
    public var maxCompactionPauseMilliseconds: Double
    /// "subscribed", "connecting", "waiting", "failed" or "stopped".
    public var witness: String

    /// Parses the status file's text; returns nil when a required value is missing.
    public init?(text: String) {
        var values: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let space = line.firstIndex(of: " ") else { continue }
            values[String(line[..<space])] = String(line[line.index(after: space)...])
        }
        func integer(_ name: String) -> Int? { values[name].flatMap { Int($0) } }
        func seconds(_ name: String) -> Double? {
            guard let nanoseconds = values[name].flatMap({ Int64($0) }), nanoseconds > 0 else { return nil }
            return Double(nanoseconds) / 1e9
        }
        guard values["format"] == "1", let updatedAt = seconds("updated_at_ns"), let bytes = integer("journal_bytes") else {
            return nil
        }
        self.updatedAt = updatedAt
        directory = values["directory"] ?? ""
        self.bytes = bytes
        liveBytes = integer("live_bytes") ?? 0
        segments = integer("segments") ?? 0
        topics = integer("topics") ?? 0
        pendingQoS2 = integer("pending_qos2") ?? 0
        recordsWritten = integer("records_written") ?? 0
        lastSyncAt = seconds("last_sync_at_ns")
        failedWrites = integer("failed_writes") ?? 0
        lastFailureAt = seconds("last_failure_at_ns")
        rejectedPublishes = integer("rejected_publishes") ?? 0
        recoveredRecords = integer("recovered_records") ?? 0
        truncatedBytes = integer("truncated_bytes") ?? 0
        replayedMessages = integer("replayed_messages") ?? 0
        compactions = integer("compactions") ?? 0
        maxCompactionPauseMilliseconds = values["max_compaction_pause_ms"].flatMap { Double($0) } ?? 0
        witness = values["witness"] ?? "unknown"
    }

    /// Reads the status file at `path`; nil when it is missing or incomplete.
    public static func read(_ path: String) -> JournalStatus? {
        guard let bytes = FileSystem.readAll(path) else {
            return nil
        }
        return JournalStatus(text: String(decoding: bytes, as: UTF8.self))
    }
}
