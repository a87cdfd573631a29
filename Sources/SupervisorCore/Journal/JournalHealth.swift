import FoundationEssentials
import Glibc

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
            return (false, "the journal plugin's status is \(formatDecimal(age, places: 0)) s old; the broker's loop may be stuck")
        }
        if status.witness != "subscribed" {
            return (false, "the journal's witness session is \(status.witness), so QoS 2 retained publishes are rejected until it subscribes (see the broker log)")
        }
        if let failure = status.lastFailureAt, now - failure < failureWindowSeconds {
            return (false, "a journal write failed \(formatDecimal(now - failure, places: 0)) s ago (\(status.failedWrites) failed writes); retained publishes are rejected while the store cannot be written")
        }
        let sync = status.lastSyncAt.map { "last sync \(formatDecimal(now - $0, places: 1)) s ago" } ?? "nothing synced yet"
        return (true, "journal \(size(status.bytes)) in \(counted(status.segments, "segment")) (\(size(status.liveBytes)) live), \(counted(status.topics, "topic")), \(sync)")
    }

    /// Formats a byte count in KiB below one MiB and in MiB above.
    static func size(_ bytes: Int) -> String {
        if bytes < 1 << 20 {
            return "\(formatDecimal(Double(bytes) / 1024, places: 1)) KiB"
        }
        return "\(formatDecimal(Double(bytes) / Double(1 << 20), places: 1)) MiB"
    }

    /// Formats "1 topic" or "2 topics".
    static func counted(_ count: Int, _ noun: String) -> String {
        "\(count) \(noun)\(count == 1 ? "" : "s")"
    }
}
