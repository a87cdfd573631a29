import FoundationEssentials
import Glibc
import SupervisorCore

// Blocked before any other thread exists, so every handled signal reaches the signalfd.
SignalSet.blockHandled()

let usage = """
    supervisor: runs Mosquitto on a gocryptfs-encrypted persistence directory, as a container's PID 1.

    Usage:
      supervisor run [OPTIONS]      unlock and mount the store, start the broker, supervise it
      supervisor status [--json] [--timeout SECONDS] [OPTIONS]
                                    health check: exit 0 when healthy, 1 when not
      supervisor render [OPTIONS]   print the configuration rendered from the template and exit
      supervisor version            print the versions of the supervisor, mosquitto and gocryptfs
      supervisor passwd --new-passfile FILE [OPTIONS]
                                    change the passphrase of the store (the master key stays)
      supervisor rekey --new-passfile FILE [OPTIONS]
                                    replace the store's master key, with the broker stopped
      supervisor COMMAND --help     help for one command

    Exit codes of `supervisor run` are listed in the README.
    """

let runHelp = """
    Usage: supervisor run [OPTIONS]

    Unlocks the gocryptfs store in the cipherdir (initializing it on first start), mounts it on the
    mountpoint, proves the mount, renders the template, starts mosquitto and supervises it. SIGTERM
    or SIGINT stops the broker, syncs and unmounts. SIGHUP re-renders the template and reloads the
    broker. SIGUSR1 and SIGUSR2 are forwarded to the broker.

    The passphrase is the first line of the passfile. GOCRYPT_PASSWORD is still read, with a warning.

    Each option can also be set by the environment variable named after it; the flag wins.

    \(Settings.optionHelp)

    Exit codes: 0 clean stop; the broker's own code, or 128+signal, when it ended by itself;
    64 invalid setting, 65 passphrase, 66 environment (/dev/fuse, programs, user), 67 cipherdir,
    68 mountpoint, 69 mount not ready or not proven, 70 template, 71 broker database,
    72 gocryptfs ended while in use, 73 unmount failed, 74 restart limit, 75 system call failed.
    """

let renderHelp = """
    Usage: supervisor render [OPTIONS]

    Prints the configuration that `supervisor run` would write, after the same checks, and exits.
    Exit code 0 when the template renders and passes the checks, 70 otherwise.

    \(Settings.optionHelp)
    """

let versionHelp = """
    Usage: supervisor version

    Prints the supervisor's version and those of mosquitto and gocryptfs found on PATH.
    """

func fail(_ error: Error) -> Never {
    if let error = error as? SupervisorError {
        Log.commandError(error.message)
        exit(error.code.rawValue)
    }
    Log.commandError("\(error)")
    exit(SupervisorError.Code.system.rawValue)
}

func wantsHelp(_ arguments: [String]) -> Bool {
    arguments.contains("--help") || arguments.contains("-h")
}

/// Prints `help` when the arguments request it; otherwise runs `body` and exits with the code it
/// returns, or with the code of the error it throws.
func perform(_ arguments: [String], help: String, _ body: () throws -> Int32) -> Never {
    if wantsHelp(arguments) {
        print(help)
        exit(0)
    }
    do {
        exit(try body())
    } catch {
        fail(error)
    }
}

var arguments = Array(CommandLine.arguments.dropFirst())
let command = arguments.isEmpty ? "" : arguments.removeFirst()
let processEnvironment = ProcessInfo.processInfo.environment

switch command {
case "run":
    perform(arguments, help: runHelp) {
        // Read and scrubbed before the environment is copied for the children.
        let legacyPassphrase = PassphraseSource.takeLegacyVariable()
        let environment = processEnvironment.filter { $0.key != "GOCRYPT_PASSWORD" }
        let settings = try Settings.load(environment: environment, arguments: arguments)
        let supervisor = try Supervisor(settings: settings, environment: environment, legacyPassphrase: legacyPassphrase)
        return supervisor.run()
    }

case "status":
    perform(arguments, help: StatusCommand.help) {
        try StatusCommand(environment: processEnvironment, arguments: arguments).run()
    }

case "render":
    perform(arguments, help: renderHelp) {
        let environment = processEnvironment.filter { $0.key != "GOCRYPT_PASSWORD" }
        let settings = try Settings.load(environment: environment, arguments: arguments)
        print(try ConfigWriter(settings: settings).render(environment: environment).text, terminator: "")
        return 0
    }

case "version":
    perform(arguments, help: versionHelp) {
        print("supervisor \(supervisorVersion)")
        for line in VersionProbe.externalVersions(environment: processEnvironment) {
            print(line)
        }
        return 0
    }

case "passwd":
    perform(arguments, help: PasswdCommand.help) {
        try PasswdCommand(environment: processEnvironment, arguments: arguments).run()
    }

case "rekey":
    perform(arguments, help: RekeyCommand.help) {
        try RekeyCommand(environment: processEnvironment, arguments: arguments).run()
    }

case "--help", "-h", "help":
    print(usage)

case "":
    Log.commandError("missing command; run `supervisor --help`")
    exit(SupervisorError.Code.usage.rawValue)

default:
    Log.commandError("unknown command \(command); run `supervisor --help`")
    exit(SupervisorError.Code.usage.rawValue)
}
