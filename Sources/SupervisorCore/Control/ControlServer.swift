import CSupervisor
import FoundationEssentials
import Glibc

/// The control socket: a Unix stream socket, owner-only, that writes one JSON status report to
/// each client and closes. It is served from the event loop, so it costs nothing while idle.
public final class ControlServer {
    public let path: String
    private var fd: Int32 = -1

    public init(path: String) {
        self.path = path
    }

    public func start(loop: EventLoop, report: @escaping () -> StatusReport) throws {
        let directory = String(path[..<path.lastIndex(of: "/")!])
        if !directory.isEmpty && !FileSystem.makeDirectories(directory, mode: 0o700) {
            throw SupervisorError(.system, "cannot create \(directory) for the control socket: \(errnoText()); set SUPERVISOR_SOCKET")
        }
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else {
            throw SupervisorError(.system, "cannot create the control socket: \(errnoText())")
        }
        unlink(path)
        var address = try UnixAddress(path: path)
        let previousMask = umask(0o177)
        let bound = address.withSockaddr { bind(fd, $0, $1) }
        umask(previousMask)
        guard bound == 0, chmod(path, 0o600) == 0, listen(fd, 16) == 0 else {
            let reason = errnoText()
            close(fd)
            throw SupervisorError(.system, "cannot listen on the control socket \(path): \(reason); set SUPERVISOR_SOCKET to a writable path")
        }
        let listener = fd
        try loop.watchReadable(listener) {
            while true {
                let client = csup_accept_cloexec(listener)
                if client < 0 {
                    return
                }
                Self.send(report(), to: client)
                close(client)
            }
        }
    }

    public func stop() {
        if fd >= 0 {
            close(fd)
            unlink(path)
            fd = -1
        }
    }

    private static func send(_ report: StatusReport, to client: Int32) {
        guard var data = try? JSONEncoder().encode(report) else {
            return
        }
        data.append(UInt8(ascii: "\n"))
        _ = data.withUnsafeBytes { Glibc.send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }
}

/// A `sockaddr_un` for a filesystem path.
struct UnixAddress {
    private var storage = sockaddr_un()

    init(path: String) throws {
        storage.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: storage.sun_path)
        guard bytes.count < capacity else {
            throw SupervisorError(.usage, "the socket path \(path) is longer than \(capacity - 1) bytes; choose a shorter SUPERVISOR_SOCKET")
        }
        withUnsafeMutableBytes(of: &storage.sun_path) { buffer in
            buffer.copyBytes(from: bytes)
        }
    }

    mutating func withSockaddr<T>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        withUnsafePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                body($0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
    }
}
