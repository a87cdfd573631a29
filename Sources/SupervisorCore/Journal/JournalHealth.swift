import Foundation

/// The "journal" check of `supervisor status` in journal mode.
enum JournalHealth {
    /// The plugin rewrites its status at least once a second while the broker's loop runs.
    static let staleAfterSeconds = 10.0
    /// A failed write counts against health for this long; the plugin retries with the next publish.
    static let failureWindowSeconds = 60.0

    static func check(_ status: JournalStatus?, now: Double) -> (Bool, String) {
        guard let status else {
            return (false, "the journal plugin's status file is missing or incomplete; the broker may not have loaded the plugin (see its log)")
        }
        let age = now - status.updatedAt
        if age > staleAfterSeconds {
            return (false, String(format: "the journal plugin's status is %.0f s old; the broker's loop may be stuck", age))
        }
        if status.witness != "subscribed" {
            return (false, "the journal's witness session is \(status.witness), so QoS 2 retained publishes are rejected until it subscribes (see the broker log)")
        }
        if let failure = status.lastFailureAt, now - failure < failureWindowSeconds {
            return (false, String(format: "a journal write failed %.0f s ago (%d failed writes); retained publishes are rejected while the store cannot be written", now - failure, status.failedWrites))
        }
        let sync = status.lastSyncAt.map { String(format: "last sync %.1f s ago", now - $0) } ?? "nothing synced yet"
        return (true, String(format: "journal %@ in %d segments (%@ live), %d topics, %@",
                             megabytes(status.bytes), status.segments, megabytes(status.liveBytes), status.topics, sync))
    }

    private static func megabytes(_ bytes: Int) -> String {
        String(format: "%.1f MB", Double(bytes) / 1_000_000)
    }
}
