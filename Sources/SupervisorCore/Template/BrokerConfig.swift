/// The rendered mosquitto.conf as the supervisor reads it: the directives that decide where and
/// how often the broker saves, and where it listens.
public struct BrokerConfig: Sendable, Equatable {
    /// A listener that accepts MQTT over TCP, which the health check connects to.
    public struct Listener: Sendable, Equatable {
        public let port: Int
        public let address: String?
        public let proto: String
    }

    public let directives: [(name: String, value: String, line: Int)]
    public let listeners: [Listener]

    public static func == (lhs: BrokerConfig, rhs: BrokerConfig) -> Bool {
        lhs.listeners == rhs.listeners && lhs.directives.elementsEqual(rhs.directives) { $0 == $1 }
    }

    public init(text: String) {
        var directives: [(String, String, Int)] = []
        var listeners: [Listener] = []
        var lineNumber = 0
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            let line = rawLine.trimmingCharacters(in: " \t\r")
            if line.isEmpty || line.hasPrefix("#") {
                continue
            }
            let name = String(line.prefix { $0 != " " && $0 != "\t" })
            let value = String(line.dropFirst(name.count)).trimmingCharacters(in: " \t")
            directives.append((name, value, lineNumber))
            if name == "listener" {
                let fields = value.split(whereSeparator: { $0 == " " || $0 == "\t" })
                if let port = fields.first.flatMap({ Int($0) }) {
                    listeners.append(Listener(port: port, address: fields.count > 1 ? String(fields[1]) : nil, proto: "mqtt"))
                }
            } else if name == "protocol", let last = listeners.popLast() {
                listeners.append(Listener(port: last.port, address: last.address, proto: value))
            }
        }
        self.directives = directives
        self.listeners = listeners
    }

    /// Returns the last value of a directive, which is the one Mosquitto uses for single-valued options.
    public func value(of name: String) -> String? {
        directives.last { $0.name == name }?.value
    }

    public var persistenceFile: String { value(of: "persistence_file") ?? "mosquitto.db" }

    /// The address and port the health check connects to: the first MQTT listener on TCP.
    public var probeTarget: (host: String, port: Int)? {
        guard let listener = listeners.first(where: { $0.proto == "mqtt" && $0.port > 0 }) else {
            return nil
        }
        let address = listener.address ?? ""
        if address.isEmpty || address == "0.0.0.0" || address == "::" {
            return ("127.0.0.1", listener.port)
        }
        return (address, listener.port)
    }

    /// Checks that the broker will save every change onto the mount; returns the first problem.
    public func validate(mountpoint: String, durability: DurabilityMode = .autosave) -> String? {
        guard value(of: "persistence") == "true" else {
            return "persistence must be true (found \(value(of: "persistence") ?? "no persistence line")); set `persistence true`"
        }
        let location = value(of: "persistence_location") ?? ""
        guard Self.samePath(location, mountpoint) else {
            return "persistence_location must be the mountpoint \(mountpoint) (found \(location.isEmpty ? "none" : location)); write `persistence_location ${SUPERVISOR_MOUNTPOINT}/`"
        }
        guard !persistenceFile.contains("/") else {
            return "persistence_file must be a file name without a directory (found \(persistenceFile))"
        }
        if durability == .journal {
            if let problem = journalProblem() {
                return problem
            }
        } else {
            guard value(of: "autosave_on_changes") == "true" else {
                return "autosave_on_changes must be true (found \(value(of: "autosave_on_changes") ?? "none")); set `autosave_on_changes true`"
            }
            let interval = value(of: "autosave_interval") ?? ""
            guard let number = Int(interval), number > 0 else {
                return "autosave_interval must be a positive whole number (found \(interval.isEmpty ? "none" : interval)); Mosquitto reads anything else as 0, which turns autosave off"
            }
        }
        guard directives.contains(where: { $0.name == "listener" }) else {
            return "there is no listener line; add one such as `listener 1883`"
        }
        for directive in directives where directive.name == "listener" {
            let fields = directive.value.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard let port = fields.first.flatMap({ Int($0) }), (0...65535).contains(port) else {
                return "line \(directive.line): the listener port must be a number from 0 to 65535 (found `listener \(directive.value)`); check MOSQUITTO_PORT and MOSQUITTO_WEBSOCKETS_PORT"
            }
            if port == 0 && !(fields.count > 1 && fields[1].hasPrefix("/")) {
                return "line \(directive.line): `listener 0` needs a Unix socket path as its address (found `listener \(directive.value)`)"
            }
            // A listener line has a port and at most one address. An address of digits only is
            // read as an IPv4 number (83 is 0.0.0.83), so both cases come from a value with a space.
            if fields.count > 2 || (fields.count == 2 && fields[1].allSatisfy(\.isNumber)) {
                return "line \(directive.line): a listener takes a port and at most one address, an IP address or host name (found `listener \(directive.value)`); check MOSQUITTO_PORT, MOSQUITTO_WEBSOCKETS_PORT and MOSQUITTO_BIND_ADDRESS for spaces"
            }
        }
        return nil
    }

    static func samePath(_ lhs: String, _ rhs: String) -> Bool {
        func normalized(_ path: String) -> String {
            var result = path
            while result.count > 1 && result.hasSuffix("/") {
                result.removeLast()
            }
            return result
        }
        return !lhs.isEmpty && normalized(lhs) == normalized(rhs)
    }
}

private extension StringProtocol {
    func trimmingCharacters(in set: String) -> String {
        let characters = Set(set)
        let trimmedFront = drop { characters.contains($0) }
        var end = trimmedFront.endIndex
        while end > trimmedFront.startIndex, characters.contains(trimmedFront[trimmedFront.index(before: end)]) {
            end = trimmedFront.index(before: end)
        }
        return String(trimmedFront[..<end])
    }
}
