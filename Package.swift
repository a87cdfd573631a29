// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "mosquitto-supervisor",
    targets: [
        // Linux calls that the Glibc module does not export (prctl, signalfd, syncfs, epoll flags).
        .target(name: "CSupervisor"),
        .target(name: "SupervisorCore", dependencies: ["CSupervisor"]),
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
