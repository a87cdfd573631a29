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
            dependencies: ["SupervisorCore"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
