import Foundation
import SupervisorCore
import Testing

/// Known-answer tests from FIPS 180-4's examples and the NIST test vectors, plus a check that
/// feeding the input in pieces gives the same digest as one call.
@Suite struct SHA256Tests {
    @Test(arguments: [
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
        ("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"),
    ])
    func knownVectors(input: String, expected: String) {
        #expect(SHA256.hex(SHA256.digest(of: Array(input.utf8))) == expected)
    }

    @Test func millionLetterA() {
        var hasher = SHA256()
        let chunk = [UInt8](repeating: UInt8(ascii: "a"), count: 1000)
        for _ in 0..<1000 {
            hasher.update(chunk)
        }
        #expect(SHA256.hex(hasher.finalize()) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    /// Lengths around the 55, 56 and 64-byte padding boundaries, fed in uneven pieces, match
    /// the digest that sha256sum prints for the same bytes.
    @Test func piecesMatchSha256sum() throws {
        for length in [55, 56, 57, 63, 64, 65, 119, 120, 1000, 70_001] {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
            var hasher = SHA256()
            var offset = 0
            var piece = 1
            while offset < bytes.count {
                let end = min(bytes.count, offset + piece)
                hasher.update(bytes[offset..<end])
                offset = end
                piece = piece * 3 + 1
            }
            let pieces = SHA256.hex(hasher.finalize())
            #expect(pieces == SHA256.hex(SHA256.digest(of: bytes)), "length \(length)")

            let file = NSTemporaryDirectory() + "sha256-\(getpid())-\(length)"
            try Data(bytes).write(to: URL(fileURLWithPath: file))
            defer { try? FileManager.default.removeItem(atPath: file) }
            let reference = try Shell.run(["sha256sum", file]).output.split(separator: " ").first.map(String.init)
            #expect(pieces == reference, "length \(length)")
        }
    }
}
