import CSupervisor
import Glibc

/// The supervisor's single event loop: one epoll set over a signalfd and the pipes and sockets it
/// watches. It sleeps in epoll_wait until the kernel reports a signal, a child exit or data, or
/// until the caller's deadline passes, and never polls.
///
/// The loop is also the one reaper: on every SIGCHLD it collects each exited child with
/// `waitpid(-1, WNOHANG)`, orphans included, and reports each exit to `onChildExit`.
public final class EventLoop {
    public typealias LineHandler = (String) -> Void

    private let epollFD: Int32
    private let signalFD: Int32
    private var lineReaders: [Int32: LineReader] = [:]
    private var readableHandlers: [Int32: () -> Void] = [:]

    /// Called for every handled signal except SIGCHLD.
    public var onSignal: (Int32) -> Void = { _ in }
    /// Called for every reaped child, watched or not.
    public var onChildExit: (pid_t, ExitStatus) -> Void = { _, _ in }
    /// Number of reaped children that the supervisor did not start itself (orphans re-parented to the supervisor).
    public private(set) var orphansReaped = 0
    private var known: Set<pid_t> = []

    public init() throws {
        epollFD = csup_epoll_create()
        guard epollFD >= 0 else {
            throw SupervisorError(.system, "epoll_create1 failed: \(errnoText())")
        }
        signalFD = csup_signalfd(SignalSet.handled, Int32(SignalSet.handled.count))
        guard signalFD >= 0 else {
            throw SupervisorError(.system, "signalfd failed: \(errnoText())")
        }
        try add(signalFD)
    }

    deinit {
        close(signalFD)
        close(epollFD)
    }

    /// Marks `pid` as started by the supervisor, so its exit is not counted as an orphan.
    public func adopt(_ pid: pid_t) {
        known.insert(pid)
    }

    /// Delivers each line read from `fd` to `handler` until end of file, then closes `fd`.
    public func watchLines(of fd: Int32, onEnd: @escaping () -> Void = {}, _ handler: @escaping LineHandler) throws {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        lineReaders[fd] = LineReader(handler: handler, onEnd: onEnd)
        try add(fd)
    }

    /// Calls `handler` whenever `fd` becomes readable (a listening socket, for example).
    public func watchReadable(_ fd: Int32, _ handler: @escaping () -> Void) throws {
        readableHandlers[fd] = handler
        try add(fd)
    }

    public func stopWatching(_ fd: Int32) {
        csup_epoll_remove(epollFD, fd)
        readableHandlers[fd] = nil
        if lineReaders.removeValue(forKey: fd) != nil {
            close(fd)
        }
    }

    /// True while a line reader is still open on `fd`.
    public func isWatching(_ fd: Int32) -> Bool {
        lineReaders[fd] != nil || readableHandlers[fd] != nil
    }

    /// Handles events until `isDone` returns true or `deadline` passes.
    ///
    /// - Returns: true when `isDone` became true, false when the deadline passed first.
    @discardableResult
    public func run(until deadline: ContinuousClock.Instant? = nil, _ isDone: () -> Bool) -> Bool {
        var ready = [Int32](repeating: 0, count: 16)
        while !isDone() {
            var timeout: Int32 = -1
            if let deadline {
                let remaining = deadline - .now
                if remaining <= .zero {
                    return false
                }
                let (seconds, attoseconds) = remaining.components
                let millis = seconds * 1000 + attoseconds / 1_000_000_000_000_000 + 1
                timeout = Int32(min(millis, Int64(Int32.max)))
            }
            let count = csup_epoll_wait(epollFD, &ready, Int32(ready.count), timeout)
            if count < 0 {
                if errno == EINTR { continue }
                Log.error("epoll_wait failed: \(errnoText())")
                return false
            }
            for index in 0..<Int(count) {
                dispatch(ready[index])
            }
        }
        return true
    }

    // MARK: - Private

    private func add(_ fd: Int32) throws {
        guard csup_epoll_add(epollFD, fd) == 0 else {
            throw SupervisorError(.system, "epoll_ctl could not watch descriptor \(fd): \(errnoText())")
        }
    }

    private func dispatch(_ fd: Int32) {
        if fd == signalFD {
            drainSignals()
        } else if let reader = lineReaders[fd] {
            if !reader.readAvailable(from: fd) {
                stopWatching(fd)
                reader.onEnd()
            }
        } else if let handler = readableHandlers[fd] {
            handler()
        }
    }

    private func drainSignals() {
        while true {
            let signal = csup_read_signal(signalFD)
            if signal < 0 {
                return
            }
            if signal == SIGCHLD {
                reapChildren()
            } else {
                onSignal(signal)
            }
        }
    }

    /// Collects every exited child; signalfd merges SIGCHLDs, so one signal may stand for many exits.
    private func reapChildren() {
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG)
            if pid <= 0 {
                return
            }
            if known.remove(pid) == nil {
                orphansReaped += 1
            }
            onChildExit(pid, ExitStatus(waitStatus: status))
        }
    }
}

/// Splits the bytes of a pipe into lines.
private final class LineReader {
    let handler: EventLoop.LineHandler
    let onEnd: () -> Void
    private var pending: [UInt8] = []

    init(handler: @escaping EventLoop.LineHandler, onEnd: @escaping () -> Void) {
        self.handler = handler
        self.onEnd = onEnd
    }

    /// Reads what is available; returns false at end of file or on an error.
    func readAvailable(from fd: Int32) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 8192)
        while true {
            let count = read(fd, &buffer, buffer.count)
            if count > 0 {
                pending.append(contentsOf: buffer[0..<count])
                emitLines()
                continue
            }
            if count < 0 && (errno == EAGAIN || errno == EINTR) {
                return true
            }
            if !pending.isEmpty {
                handler(String(decoding: pending, as: UTF8.self))
                pending.removeAll()
            }
            return false
        }
    }

    private func emitLines() {
        while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
            handler(String(decoding: pending[..<newline], as: UTF8.self))
            pending.removeSubrange(...newline)
        }
        if pending.count > 65536 {
            handler(String(decoding: pending, as: UTF8.self))
            pending.removeAll()
        }
    }
}
