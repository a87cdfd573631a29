import FoundationEssentials
import Glibc
import Synchronization

/// The supervisor's log: one line per event on standard error, with a UTC timestamp and level.
///
/// Lines must never contain a secret; callers pass values that are safe to show (paths, pids,
/// durations, exit codes). Broker output is copied to standard output unchanged by `forward`.
public enum Log {
    public enum Level: String, Sendable {
        case info, warning, error
    }

    private static let lock = Mutex(())

    public static func info(_ message: String) { write(.info, message) }
    public static func warning(_ message: String) { write(.warning, message) }
    public static func error(_ message: String) { write(.error, message) }

    public static func write(_ level: Level, _ message: String) {
        let line = "\(timestamp()) supervisor \(level.rawValue): \(message)\n"
        emit(line, to: STDERR_FILENO)
    }

    /// Writes a command's one-line error, `supervisor: <text>`, without timestamp or level.
    public static func commandError(_ text: String) {
        emit("supervisor: \(text)\n", to: STDERR_FILENO)
    }

    /// Copies one line of a child's output to standard output with the child's name in front.
    public static func forward(_ line: String, from source: String) {
        emit("\(source): \(line)\n", to: STDOUT_FILENO)
    }

    private static func emit(_ line: String, to fd: Int32) {
        lock.withLock { _ in
            var bytes = Array(line.utf8)
            var offset = 0
            while offset < bytes.count {
                let written = bytes.withUnsafeMutableBytes { buffer in
                    Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                }
                if written < 0 {
                    if errno == EINTR { continue }
                    return
                }
                offset += written
            }
        }
    }

    private static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        let date = "\(padded(parts.tm_year + 1900, 4))-\(padded(parts.tm_mon + 1, 2))-\(padded(parts.tm_mday, 2))"
        let time = "\(padded(parts.tm_hour, 2)):\(padded(parts.tm_min, 2)):\(padded(parts.tm_sec, 2))"
        return "\(date)T\(time).\(padded(Int32(now.tv_nsec / 1_000_000), 3))Z"
    }
}

/// Returns `value` in decimal with at least `width` digits, zero-padded.
///
/// The supervisor formats numbers itself, without Foundation's `String(format:)`, which depends
/// on ICU's locale data.
public func padded(_ value: Int32, _ width: Int) -> String {
    let text = String(value)
    return String(repeating: "0", count: max(0, width - text.count)) + text
}

/// Returns `value` rounded to `places` decimal places (0 to 3), such as "12.5".
public func formatDecimal(_ value: Double, places: Int) -> String {
    guard value.isFinite else {
        return String(value)
    }
    var scale = 1.0
    for _ in 0..<places {
        scale *= 10
    }
    let scaled = (abs(value) * scale).rounded()
    let whole = Int(scaled / scale)
    let fraction = Int(scaled - Double(whole) * scale)
    let sign = value < 0 && scaled > 0 ? "-" : ""
    guard places > 0 else {
        return "\(sign)\(whole)"
    }
    return "\(sign)\(whole).\(padded(Int32(fraction), places))"
}

/// Formats a duration for log lines, in milliseconds.
public func formatDuration(_ duration: Duration) -> String {
    let (seconds, attoseconds) = duration.components
    let millis = Double(seconds) * 1000 + Double(attoseconds) / 1e15
    if millis < 10 {
        return "\(formatDecimal(millis, places: 1)) ms"
    }
    return "\(Int(millis.rounded())) ms"
}
