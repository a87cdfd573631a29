import Foundation
import Glibc
import Testing

extension Integration {
    @Suite struct EnvironmentFailures {
        /// A container started without `--device /dev/fuse`: the namespace gets a /dev of its own
        /// that holds only null, zero, random and urandom.
        @Test func devFuseMissing() throws {
            let sandbox = try Sandbox.seeded()
            defer { sandbox.remove() }
            let before = CipherdirSnapshot(sandbox)
            let setup = """
                mount --make-rprivate /dev
                mount -t tmpfs -o mode=0755 dev-without-fuse /dev
                mknod -m 0666 /dev/null c 1 3 && mknod -m 0666 /dev/zero c 1 5
                mknod -m 0666 /dev/random c 1 8 && mknod -m 0666 /dev/urandom c 1 9
                """

            let supervisor = try SupervisorUnderTest(sandbox: sandbox, namespaceSetup: setup)
            defer { supervisor.forceStop() }
            FailureChecks.expectExit(supervisor, code: 66, errorLine: [
                "cannot open /dev/fuse", "No such file or directory", "--device /dev/fuse", "--cap-add SYS_ADMIN",
            ])
            #expect(CipherdirSnapshot(sandbox) == before)
            try FailureChecks.expectStoreIntact(sandbox)
        }

        /// A container without CAP_SYS_ADMIN, or with a security profile that denies mount(2):
        /// /dev/fuse opens, but fusermount3 cannot mount.
        @Test func mountingNotPermitted() throws {
            let sandbox = try Sandbox.seeded()
            defer { sandbox.remove() }
            let before = CipherdirSnapshot(sandbox)

            let supervisor = try SupervisorUnderTest(
                sandbox: sandbox, commandPrefix: ["setpriv", "--inh-caps=-sys_admin", "--bounding-set=-sys_admin"])
            defer { supervisor.forceStop() }
            FailureChecks.expectExit(supervisor, code: 66, errorLine: [
                "mounting \(sandbox.mountpoint) is not permitted", "Operation not permitted", "--cap-add SYS_ADMIN",
            ])
            #expect(CipherdirSnapshot(sandbox) == before)
            try FailureChecks.expectStoreIntact(sandbox)
        }

        /// A program missing from PATH: the namespace's PATH contains links to the other two only.
        @Test(arguments: [
            ("mosquitto", "SUPERVISOR_MOSQUITTO", "Debian package mosquitto"),
            ("gocryptfs", "SUPERVISOR_GOCRYPTFS", "Debian package gocryptfs"),
            ("fusermount3", "SUPERVISOR_FUSERMOUNT", "Debian package fuse3"),
        ])
        func programMissingFromPath(program: String, variable: String, package: String) throws {
            let sandbox = try Sandbox.seeded()
            defer { sandbox.remove() }
            let before = CipherdirSnapshot(sandbox)
            let directory = sandbox.root + "/path-without-\(program)"
            mkdir(directory, 0o755)
            for other in ["mosquitto", "gocryptfs", "fusermount3"] where other != program {
                let target = try #require(Requirements.locate(other))
                symlink(target, directory + "/" + other)
            }

            let supervisor = try SupervisorUnderTest(sandbox: sandbox, namespaceSetup: "export PATH=\(directory)")
            defer { supervisor.forceStop() }
            FailureChecks.expectExit(supervisor, code: 66, errorLine: [
                "\(program) not found on PATH or not executable", package, variable,
            ])
            #expect(CipherdirSnapshot(sandbox) == before)
            try FailureChecks.expectStoreIntact(sandbox)
        }

        @Test func programSettingPointsNowhere() throws {
            let sandbox = try Sandbox.seeded()
            defer { sandbox.remove() }
            let missing = sandbox.root + "/nonexistent/gocryptfs"

            let supervisor = try SupervisorUnderTest(sandbox: sandbox, environment: ["SUPERVISOR_GOCRYPTFS": missing])
            defer { supervisor.forceStop() }
            FailureChecks.expectExit(supervisor, code: 66, errorLine: [
                "\(missing) does not exist or is not executable", "set SUPERVISOR_GOCRYPTFS to the program's path",
            ])
            try FailureChecks.expectStoreIntact(sandbox)
        }

        /// An image without the `mosquitto` user: the namespace gets an /etc/passwd without it.
        @Test func brokerUserMissing() throws {
            let sandbox = try Sandbox.seeded()
            defer { sandbox.remove() }
            let before = CipherdirSnapshot(sandbox)
            let passwd = sandbox.root + "/etc/passwd-without-mosquitto"
            let setup = """
                mount --make-private /
                grep -v '^mosquitto:' /etc/passwd > \(passwd)
                mount --bind \(passwd) /etc/passwd
                """

            let supervisor = try SupervisorUnderTest(sandbox: sandbox, namespaceSetup: setup)
            defer { supervisor.forceStop() }
            FailureChecks.expectExit(supervisor, code: 66, errorLine: [
                "user mosquitto does not exist", "install the mosquitto package", "SUPERVISOR_BROKER_USER",
            ])
            #expect(CipherdirSnapshot(sandbox) == before)
            try FailureChecks.expectStoreIntact(sandbox)
        }

        /// A container with many mounts: /proc/self/mountinfo grows past 4 KB, where Foundation's
        /// String(contentsOfFile:) stops reading, and the store's mount is listed after that.
        @Test func largeMountTable() throws {
            let sandbox = try Sandbox.seeded()
            defer { sandbox.remove() }
            let setup = """
                mount --make-private \(sandbox.root)
                for i in $(seq 120); do
                    mkdir -p \(sandbox.root)/volumes/$i && mount -t tmpfs -o size=4k volume-$i \(sandbox.root)/volumes/$i || exit 1
                done
                """

            let supervisor = try SupervisorUnderTest(sandbox: sandbox, namespaceSetup: setup)
            defer { supervisor.forceStop() }
            try supervisor.waitUntilRunning()
            // Inside the PID namespace, because its /proc has no /proc/self for outside processes.
            let table = try supervisor.inNamespace(["cat", "/proc/self/mountinfo"], pidNamespace: true).output
            #expect(table.utf8.count > 8192, "the mount table has only \(table.utf8.count) bytes")
            #expect(try supervisor.retained(topic: "alice/#") == [SeededStore.retainedLine])
            #expect(supervisor.stop() == 0)
            let log = supervisor.supervisorLog
            #expect(FailureChecks.errorLines(of: supervisor).isEmpty, "log:\n\(log)")
            #expect(log.contains("unmounted \(sandbox.mountpoint); gocryptfs exited with exit code 0"))
            FailureChecks.expectNothingLeftOnMountpoint(sandbox)
            FailureChecks.expectNoSecret(in: supervisor)
        }

        @Test func invalidSettingIsUsageError() throws {
            let sandbox = try Sandbox.seeded()
            defer { sandbox.remove() }

            let supervisor = try SupervisorUnderTest(sandbox: sandbox, environment: ["SUPERVISOR_RESTART": "sometimes"])
            defer { supervisor.forceStop() }
            FailureChecks.expectExit(supervisor, code: 64, errorLine: [
                "SUPERVISOR_RESTART must be one of never, on-failure, got \"sometimes\"",
            ])
            try FailureChecks.expectStoreIntact(sandbox)
        }
    }
}
