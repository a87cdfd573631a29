import FoundationEssentials
import Glibc

/// Reads the running supervisor's status report from its control socket, within a deadline.
public enum ControlClient {
    public static func fetch(socket path: String, deadline: ContinuousClock.Instant) -> Result<StatusReport, SupervisorError> {
        let fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else {
            return .failure(SupervisorError(.system, "socket failed: \(errnoText())"))
        }
        defer { close(fd) }
        guard var address = try? UnixAddress(path: path) else {
            return .failure(SupervisorError(.usage, "the socket path \(path) is too long"))
        }
        if address.withSockaddr({ connect(fd, $0, $1) }) != 0 && errno != EINPROGRESS && errno != EAGAIN {
            return .failure(SupervisorError(.system, "no supervisor is listening on \(path): \(errnoText())"))
        }
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 16384)
        while true {
            guard MQTTProbe.wait(fd, for: Int16(POLLIN), until: deadline) else {
                return .failure(SupervisorError(.system, "the supervisor on \(path) did not respond before the timeout"))
            }
            let count = recv(fd, &buffer, buffer.count, 0)
            if count < 0 && (errno == EAGAIN || errno == EINTR) {
                continue
            }
            if count <= 0 {
                break
            }
            data.append(contentsOf: buffer[0..<count])
        }
        do {
            return .success(try JSONDecoder().decode(StatusReport.self, from: data))
        } catch {
            return .failure(SupervisorError(.system, "the supervisor on \(path) sent a report that cannot be read: \(error)"))
        }
    }
}
