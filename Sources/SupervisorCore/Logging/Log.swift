import Foundation
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
        let millis = now.tv_nsec / 1_000_000
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
            parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday,
            parts.tm_hour, parts.tm_min, parts.tm_sec, millis)
    }
}

/// Formats a duration for log lines, in milliseconds.
public func formatDuration(_ duration: Duration) -> String {
    let (seconds, attoseconds) = duration.components
    let millis = Double(seconds) * 1000 + Double(attoseconds) / 1e15
    if millis < 10 {
        return String(format: "%.1f ms", millis)
    }
    return "\(Int(millis.rounded())) ms"
}
