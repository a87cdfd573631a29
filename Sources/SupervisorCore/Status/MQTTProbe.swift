import Glibc

/// Sends an MQTT 3.1.1 CONNECT with a clean session and waits for the CONNACK. It publishes and
/// subscribes to nothing, so the broker has no change to save. Any return code counts as a
/// response, so no credentials are needed.
public enum MQTTProbe {
    public enum Outcome: Equatable, Sendable {
        case connack(returnCode: UInt8)
        case failed(String)
    }

    /// Returns the CONNECT packet: protocol "MQTT" level 4, clean session, keep-alive 10 s, and `clientID`.
    public static func connectPacket(clientID: String) -> [UInt8] {
        let id = Array(clientID.utf8)
        var variable: [UInt8] = [0x00, 0x04] + Array("MQTT".utf8) + [0x04, 0x02, 0x00, 0x0A]
        variable += [UInt8(id.count >> 8), UInt8(id.count & 0xff)] + id
        return [0x10, UInt8(variable.count)] + variable
    }

    public static func probe(host: String, port: Int, deadline: ContinuousClock.Instant) -> Outcome {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var results: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &results) == 0, let address = results else {
            return .failed("cannot resolve \(host)")
        }
        defer { freeaddrinfo(results) }
        let fd = socket(address.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            return .failed("socket failed: \(errnoText())")
        }
        defer { close(fd) }
        if connect(fd, address.pointee.ai_addr, address.pointee.ai_addrlen) != 0 && errno != EINPROGRESS {
            return .failed("connect to \(host):\(port) failed: \(errnoText())")
        }
        guard wait(fd, for: Int16(POLLOUT), until: deadline) else {
            return .failed("no TCP connection to \(host):\(port) before the timeout")
        }
        var socketError: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &socketError, &length)
        guard socketError == 0 else {
            return .failed("connect to \(host):\(port) failed: \(errnoText(socketError))")
        }
        let packet = connectPacket(clientID: "supervisor-status-\(getpid())")
        guard send(fd, packet, packet.count, Int32(MSG_NOSIGNAL)) == packet.count else {
            return .failed("sending CONNECT to \(host):\(port) failed: \(errnoText())")
        }
        var reply: [UInt8] = []
        while reply.count < 4 {
            guard wait(fd, for: Int16(POLLIN), until: deadline) else {
                return .failed("no CONNACK from \(host):\(port) before the timeout")
            }
            var buffer = [UInt8](repeating: 0, count: 4 - reply.count)
            let count = recv(fd, &buffer, buffer.count, 0)
            if count <= 0 {
                return .failed("\(host):\(port) closed the connection without a CONNACK")
            }
            reply += buffer[0..<count]
        }
        guard reply[0] == 0x20, reply[1] == 0x02 else {
            return .failed("\(host):\(port) replied with bytes that are not a CONNACK")
        }
        let disconnect: [UInt8] = [0xE0, 0x00]
        _ = send(fd, disconnect, disconnect.count, Int32(MSG_NOSIGNAL))
        return .connack(returnCode: reply[3])
    }

    /// Waits in poll(2) until `fd` is ready or the deadline passes.
    static func wait(_ fd: Int32, for events: Int16, until deadline: ContinuousClock.Instant) -> Bool {
        while true {
            let remaining = deadline - .now
            guard remaining > .zero else {
                return false
            }
            let (seconds, attoseconds) = remaining.components
            var request = pollfd(fd: fd, events: events, revents: 0)
            let millis = Int32(min(seconds * 1000 + attoseconds / 1_000_000_000_000_000 + 1, 60_000))
            let result = poll(&request, 1, millis)
            if result > 0 {
                return true
            }
            if result < 0 && errno != EINTR {
                return false
            }
        }
    }
}
