import Glibc

/// Explains why the broker ended without a stop request, from its exit status and its last
/// output lines, so that the supervisor's error line names the value at fault and the fix.
public enum BrokerExit {
    /// The exit code of Mosquitto 2.0 for a configuration it rejects (an unknown option, an
    /// invalid value).
    public static let configurationRejectedCode: Int32 = 3

    /// Returns the explanation that follows "mosquitto (pid N) ended by itself with STATUS",
    /// starting with "; ", or an empty string when the output gives no clue.
    ///
    /// - Parameter template: the template path; rendering keeps line numbers, so line N of the
    ///   rendered configuration comes from line N of the template.
    public static func explanation(of status: ExitStatus, output: [String], template: String) -> String {
        let messages = output.map(message(of:))
        let errors = messages.filter { $0.hasPrefix("Error") }

        if let inUse = messages.lastIndex(where: { $0.contains("Address already in use") }) {
            let port = messages[..<inUse].compactMap(listenerPort(in:)).last
            let value = port.map { "port \($0) is" } ?? "a listener port is"
            return "; \(value) already in use by another program (mosquitto: \(messages[inUse])); stop that program, or set MOSQUITTO_PORT or MOSQUITTO_WEBSOCKETS_PORT (or the listener line in the template) to a free port"
        }
        if let unassignable = messages.lastIndex(where: { $0.contains("Cannot assign requested address") }) {
            return "; a listener's address is not an address of this host or container (mosquitto: \(messages[unassignable])); set MOSQUITTO_BIND_ADDRESS (or the listener line in the template) to one of its addresses, or leave it empty for all of them"
        }
        if status == .exited(configurationRejectedCode) {
            let quoted = errors.isEmpty ? (messages.last.map { [$0] } ?? []) : errors
            let line = errors.compactMap(configurationLine(in:)).last
            let fix = line.map { "fix or remove line \($0) of the template \(template)" } ?? "fix the template \(template)"
            return "; mosquitto rejected its configuration (mosquitto: \(quoted.joined(separator: " "))); \(fix), then start again"
        }
        if !errors.isEmpty {
            return "; mosquitto: \(errors.suffix(3).joined(separator: " "))"
        }
        if status == .signaled(SIGKILL) {
            let last = messages.last.map { "; its last output: \($0)" } ?? ""
            return "\(last); something outside the supervisor killed it, such as the kernel's out-of-memory killer (see `dmesg`)"
        }
        return messages.last.map { "; its last output: \($0)" } ?? ""
    }

    /// Drops Mosquitto's timestamp prefix ("2026-01-02T03:04:05: " or "1700000000: ").
    static func message(of line: String) -> String {
        guard let separator = line.firstRange(of: ": ") else {
            return line
        }
        let prefix = line[..<separator.lowerBound]
        guard !prefix.isEmpty, prefix.allSatisfy({ $0.isNumber || $0 == "-" || $0 == ":" || $0 == "T" }) else {
            return line
        }
        return String(line[separator.upperBound...])
    }

    /// Returns the port of an "Opening ipv4 listen socket on port 1883." line.
    static func listenerPort(in message: String) -> Int? {
        guard message.hasPrefix("Opening "), let range = message.firstRange(of: "listen socket on port ") else {
            return nil
        }
        return Int(message[range.upperBound...].prefix { $0.isNumber })
    }

    /// Returns the line number of an "Error found at /run/mosquitto/mosquitto.conf:39." line.
    static func configurationLine(in message: String) -> Int? {
        guard message.hasPrefix("Error found at "), let colon = message.lastIndex(of: ":") else {
            return nil
        }
        return Int(message[message.index(after: colon)...].prefix { $0.isNumber })
    }
}
