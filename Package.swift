// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "mosquitto-supervisor",
    products: [
        .executable(name: "supervisor", targets: ["supervisor"]),
        // The broker plugin of journal mode, loaded by mosquitto as libmosquitto_journal.so.
        .library(name: "mosquitto_journal", type: .dynamic, targets: ["MosquittoJournal"]),
    ],
    targets: [
        // Linux calls that the Glibc module does not export (prctl, signalfd, syncfs, epoll flags).
        .target(name: "CSupervisor"),
        .target(name: "SupervisorCore", dependencies: ["CSupervisor"]),
        // C, the language of Mosquitto's plugin API; headers from Debian's mosquitto-dev. The flags keep
        // the Swift runtime out of the broker: without Swift's start file nothing references it, and
        // a static standard library links only what is referenced. (A loaded libswiftCore.so would
        // install its crash handlers in mosquitto.)
        .target(name: "MosquittoJournal", linkerSettings: [.unsafeFlags(["-nostartfiles", "-static-stdlib"])]),
        .executableTarget(name: "supervisor", dependencies: ["SupervisorCore"]),
        .testTarget(name: "SupervisorCoreTests", dependencies: ["SupervisorCore"]),
        .testTarget(
            name: "SupervisorIntegrationTests",
            // The supervisor executable is a dependency so that it is built before these tests run it.
            dependencies: ["SupervisorCore", "supervisor"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
