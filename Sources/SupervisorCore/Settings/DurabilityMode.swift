/// The way `supervisor run` makes retained messages durable.
public enum DurabilityMode: String, Sendable, CaseIterable {
    /// Mosquitto rewrites its whole database after every change (`autosave_on_changes`). It
    /// acknowledges a publish before that save, so a crash in between loses the message.
    case autosave
    /// The journal plugin writes each retained publish to a journal on the encrypted store and
    /// syncs it before the broker acknowledges it; Mosquitto saves sessions and subscriptions on a
    /// time-based autosave. docs/durability.md describes its guarantees and gaps.
    case journal
}

extension Settings {
    /// Parses a whole number of seconds from 1 to 86400.
    static func intervalSeconds(_ value: String, _ name: String) throws -> Int {
        guard let number = Int(value), number >= 1, number <= 86_400 else {
            throw SupervisorError(.usage, "\(name) must be a whole number of seconds from 1 to 86400, got \"\(value)\"")
        }
        return number
    }
}
