import Testing
@testable import SupervisorCore

@Suite struct JournalHealthTests {
    @Test(arguments: [(8192, "8.0 KiB"), (1_048_575, "1024.0 KiB"), (1 << 20, "1.0 MiB"), (21_544_066, "20.5 MiB")])
    func sizeUsesBinaryUnits(bytes: Int, text: String) {
        #expect(JournalHealth.size(bytes) == text)
    }

    @Test func countedNounsArePlural() {
        #expect(JournalHealth.counted(1, "segment") == "1 segment")
        #expect(JournalHealth.counted(0, "topic") == "0 topics")
        #expect(JournalHealth.counted(2, "topic") == "2 topics")
    }
}
