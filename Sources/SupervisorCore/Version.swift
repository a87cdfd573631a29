/// The supervisor's version, printed by `supervisor version`.
public let supervisorVersion = "0.1.0"
