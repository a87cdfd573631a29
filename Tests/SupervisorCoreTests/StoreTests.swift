import Foundation
import Testing
@testable import SupervisorCore

@Suite struct DatabaseGuardTests {
    static func database(chunks: [[UInt8]]) -> [UInt8] {
        var bytes = DatabaseGuard.magic + [0, 0, 0, 0] + [0, 0, 0, 6]
        for (index, payload) in chunks.enumerated() {
            let length = UInt32(payload.count)
            bytes += [0, 0, 0, UInt8(index + 1)]
            bytes += [UInt8(length >> 24), UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff), UInt8(length & 0xff)]
            bytes += payload
        }
        return bytes
    }

    @Test func wellFormedDatabaseIsValid() {
        let bytes = Self.database(chunks: [[1, 2, 3], Array(repeating: 7, count: 300)])
        #expect(DatabaseGuard.inspect(bytes) == .valid(bytes: bytes.count))
    }

    @Test func truncatedDatabaseIsInvalid() {
        let bytes = Self.database(chunks: [[1, 2, 3], Array(repeating: 7, count: 300)])
        guard case .invalid(let reason) = DatabaseGuard.inspect(Array(bytes.dropLast(10))) else {
            Issue.record("a truncated database passed")
            return
        }
        #expect(reason.contains("truncated"))
    }

    @Test(arguments: [
        ([UInt8](), "it is empty"),
        ([UInt8](repeating: 0, count: 4096), "it contains only zero bytes"),
        (Array("retained: hello".utf8), "it does not start with the Mosquitto database header"),
    ])
    func badContentIsInvalid(content: [UInt8], reason: String) {
        #expect(DatabaseGuard.inspect(content) == .invalid(reason))
    }
}

@Suite struct PassphraseTests {
    @Test func firstLineIsKeptExactly() {
        let content = Array(" pa ss,$\"\\x \r\nsecond line\n".utf8)
        #expect(Passphrase.firstLine(of: content) == Array(" pa ss,$\"\\x \r".utf8))
        #expect(Passphrase.firstLine(of: Array("no newline".utf8)) == Array("no newline".utf8))
    }

    @Test func emptyPassphraseIsRejected() {
        let error = #expect(throws: SupervisorError.self) {
            try Passphrase.validated([], origin: "/run/secrets/p")
        }
        #expect(error?.code == .passphrase)
        #expect(error?.message.contains("/run/secrets/p is empty") == true)
    }

    @Test func descriptionHidesTheBytes() throws {
        let passphrase = try Passphrase.validated(Array("hunter2".utf8), origin: "GOCRYPT_PASSWORD")
        #expect(!passphrase.description.contains("hunter2"))
        #expect("\(passphrase)" == "passphrase from GOCRYPT_PASSWORD (7 bytes)")
    }

    @Test func generatedPassphraseIsRandomHex() throws {
        let first = try Passphrase.generate(origin: "a")
        let second = try Passphrase.generate(origin: "b")
        #expect(first.bytes.count == 64)
        #expect(first.bytes != second.bytes)
        #expect(first.bytes.allSatisfy { Array("0123456789abcdef".utf8).contains($0) })
    }
}

@Suite struct GocryptfsExitTests {
    @Test(arguments: [
        (Int32(12), SupervisorError.Code.passphrase, "wrong passphrase"),
        (9, .passphrase, "empty passphrase"),
        (22, .passphrase, "empty passphrase"),
        (10, .mountpoint, "rejected the mountpoint"),
        (6, .cipherdir, "rejected the cipherdir"),
        (8, .cipherdir, "gocryptfs.conf"),
        (11, .cipherdir, "gocryptfs.conf"),
        (23, .cipherdir, "gocryptfs.conf"),
        (19, .environment, "--device /dev/fuse --cap-add SYS_ADMIN"),
        (1, .mount, "exit code 1"),
    ])
    func exitCodeMapsToError(code: Int32, expected: SupervisorError.Code, text: String) {
        let error = GocryptfsExit.error(code: code, cipherdir: "/encrypted", mountpoint: "/var/lib/mosquitto", operation: "mount", output: "")
        #expect(error.code == expected)
        #expect(error.message.contains(text), "got: \(error.message)")
    }

    @Test func supervisorCodesAreDistinctAndOutsideBrokerCodes() {
        let values = SupervisorError.Code.all.map(\.rawValue)
        #expect(Set(values).count == values.count)
        #expect(values.allSatisfy { (64...79).contains($0) })
    }
}

@Suite struct MountTableTests {
    static let sample = """
        22 27 0:21 / /proc rw,relatime - proc proc rw
        45 27 0:40 / /var/lib/mosquitto rw,nosuid,nodev,relatime - fuse.gocryptfs /encrypted rw,user_id=0,group_id=0,default_permissions,allow_other
        46 27 0:41 / /tmp/with\\040space rw shared:4 - fuse.gocryptfs /data/ci\\040pher rw
        """

    @Test func parsesFieldsAndEscapes() {
        let entries = MountTable.parse(Self.sample)
        #expect(entries.count == 3)
        #expect(entries[1] == MountEntry(mountpoint: "/var/lib/mosquitto", filesystemType: "fuse.gocryptfs", source: "/encrypted"))
        #expect(entries[2].mountpoint == "/tmp/with space")
        #expect(entries[2].source == "/data/ci pher")
    }

    @Test func proofRejectsWrongMounts() {
        let entries = MountTable.parse(Self.sample)
        #expect(MountProof.mismatch(of: entries[1], cipherdir: "/encrypted") == nil)
        #expect(MountProof.mismatch(of: entries[1], cipherdir: "/other")?.contains("source is /encrypted") == true)
        #expect(MountProof.mismatch(of: entries[0], cipherdir: "/encrypted")?.contains("proc, not fuse.gocryptfs") == true)
        #expect(MountProof.mismatch(of: nil, cipherdir: "/encrypted")?.contains("no mount") == true)
    }
}

@Suite struct ProcessTests {
    @Test func waitStatusDecodes() {
        #expect(ExitStatus(waitStatus: 3 << 8) == .exited(3))
        #expect(ExitStatus(waitStatus: 9) == .signaled(9))
        #expect(ExitStatus.signaled(15).shellCode == 143)
        #expect(ExitStatus.exited(0).description == "exit code 0")
        #expect(ExitStatus.signaled(9).description == "signal SIGKILL")
    }

    @Test func connectPacketIsMQTT311CleanSession() {
        let packet = MQTTProbe.connectPacket(clientID: "ab")
        #expect(packet == [0x10, 14, 0x00, 0x04, 0x4D, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x0A, 0x00, 0x02, 0x61, 0x62])
    }
}
