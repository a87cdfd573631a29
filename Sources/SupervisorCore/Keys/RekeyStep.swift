import Glibc

/// The steps of `supervisor rekey`, numbered in the order they complete.
///
/// Before `swapStarted` the old store is untouched, so an interrupted rekey is rolled back.
/// From `swapStarted` on, the new store is complete and verified, so an interrupted rekey is
/// finished. The test hook `SUPERVISOR_TEST_REKEY_CRASH_AFTER_STEP` takes these numbers.
enum RekeyStep: Int, CaseIterable, CustomStringConvertible {
    case journalStarted = 1
    case oldStoreMounted
    case newStoreCreated
    case newStoreMounted
    case copied
    case verified
    case unmounted
    case swapStarted
    case firstOldEntryMoved
    case oldEntriesMoved
    case swapInStarted
    case firstNewEntryMoved
    case newEntriesMoved
    case swapDone
    case oldStoreDisposed
    case finished

    var description: String {
        switch self {
        case .journalStarted: return "wrote the journal (phase building)"
        case .oldStoreMounted: return "mounted the old store with the old passphrase"
        case .newStoreCreated: return "created the new store with a new master key"
        case .newStoreMounted: return "mounted the new store"
        case .copied: return "copied every file into the new store"
        case .verified: return "remounted the new store and verified every file"
        case .unmounted: return "unmounted both stores and synced the filesystem"
        case .swapStarted: return "wrote the journal (phase swap-out)"
        case .firstOldEntryMoved: return "moved the first entry of the old store aside"
        case .oldEntriesMoved: return "moved every entry of the old store aside"
        case .swapInStarted: return "wrote the journal (phase swap-in)"
        case .firstNewEntryMoved: return "moved the first entry of the new store into place"
        case .newEntriesMoved: return "moved every entry of the new store into place"
        case .swapDone: return "wrote the journal (phase done)"
        case .oldStoreDisposed: return "kept or removed the old store"
        case .finished: return "removed the journal"
        }
    }

    static let testHookVariable = "SUPERVISOR_TEST_REKEY_CRASH_AFTER_STEP"
}

/// Reports each completed step of a rekey in the log. For tests only, it kills the process
/// with SIGKILL after the step named by `SUPERVISOR_TEST_REKEY_CRASH_AFTER_STEP`. The tests
/// use it to show that a crash at each step leaves a store that the next run can use.
struct RekeyProgress {
    /// The step after which the process kills itself; nil outside the crash tests.
    let crashAfter: RekeyStep?

    init(environment: [String: String]) {
        crashAfter = environment[RekeyStep.testHookVariable].flatMap(Int.init).flatMap(RekeyStep.init(rawValue:))
    }

    /// A progress report without the test hook, for the recovery that `supervisor run` performs.
    init() {
        crashAfter = nil
    }

    func reached(_ step: RekeyStep, _ detail: String = "") {
        Log.info("rekey step \(step.rawValue) of \(RekeyStep.allCases.count): \(step)\(detail.isEmpty ? "" : "; \(detail)")")
        if step == crashAfter {
            Log.warning("\(RekeyStep.testHookVariable)=\(step.rawValue): killing this process with SIGKILL to simulate a crash")
            kill(getpid(), SIGKILL)
        }
    }
}
