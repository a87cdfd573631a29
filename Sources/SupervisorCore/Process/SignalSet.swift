import CSupervisor
import Glibc

/// The signals the supervisor takes through its signalfd instead of default handlers.
public enum SignalSet {
    public static let handled: [Int32] = [SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGCHLD]

    /// Blocks the handled signals in the calling thread and in every thread started after it.
    ///
    /// - Important: Call it first thing in `main`, before any other thread exists, or a signal
    ///   may land on a thread that still has it unblocked.
    public static func blockHandled() {
        var mask = handledMask()
        pthread_sigmask(SIG_BLOCK, &mask, nil)
        signal(SIGPIPE, SIG_IGN)
    }

    static func handledMask() -> sigset_t {
        var mask = sigset_t()
        sigemptyset(&mask)
        for signal in handled {
            sigaddset(&mask, signal)
        }
        return mask
    }
}
