import Foundation
import Testing
@testable import SupervisorCore

@Suite struct TemplateRendererTests {
    let renderer = TemplateRenderer(variables: ["PORT": "1884", "EMPTY": "", "FILE": "/etc/pw", "NEWLINE": "a\nlistener 1"])

    @Test func substitutesVariablesAndDefaults() throws {
        let text = "listener ${PORT}\nport ${MISSING:-1883} ${EMPTY:-x}\n"
        #expect(try renderer.render(text, source: "t") == "listener 1884\nport 1883 x\n")
    }

    @Test func alternateOnlyWhenSet() throws {
        let text = "${FILE:+password_file ${FILE}}\n${MISSING:+password_file ${MISSING}}\n"
        #expect(try renderer.render(text, source: "t") == "password_file /etc/pw\n\n")
    }

    @Test func unusedDefaultMayReferenceUndefined() throws {
        #expect(try renderer.render("a ${PORT:-${UNDEFINED}}", source: "t") == "a 1884")
    }

    @Test func dollarDollarIsLiteral() throws {
        #expect(try renderer.render("x $$HOME ${PORT}", source: "t") == "x $HOME 1884")
    }

    @Test func commentsAreCopiedUnexpanded() throws {
        #expect(try renderer.render("# uses ${UNDEFINED}\n", source: "t") == "# uses ${UNDEFINED}\n")
    }

    @Test func undefinedVariableNamesItAndItsLine() {
        let error = #expect(throws: SupervisorError.self) {
            try renderer.render("a\nb\nlistener ${NOPE}\n", source: "/etc/t")
        }
        #expect(error?.code == .template)
        #expect(error?.message.contains("/etc/t line 3: variable NOPE is not defined") == true)
    }

    @Test func controlCharacterInValueIsRejected() {
        let error = #expect(throws: SupervisorError.self) {
            try renderer.render("x ${NEWLINE}", source: "t")
        }
        #expect(error?.message.contains("NEWLINE contains control character 0xa") == true)
    }

    @Test func unclosedReferenceIsRejected() {
        #expect(throws: SupervisorError.self) { try renderer.render("x ${PORT", source: "t") }
        #expect(throws: SupervisorError.self) { try renderer.render("x ${PORT:-1", source: "t") }
        #expect(throws: SupervisorError.self) { try renderer.render("x ${PORT?}", source: "t") }
    }
}

@Suite struct BrokerConfigTests {
    static let valid = """
        persistence true
        persistence_location /var/lib/mosquitto/
        autosave_on_changes true
        autosave_interval 1
        listener 1883 127.0.0.1
        protocol mqtt
        listener 9001
        protocol websockets
        """

    @Test func validConfigurationPasses() {
        let config = BrokerConfig(text: Self.valid)
        #expect(config.validate(mountpoint: "/var/lib/mosquitto") == nil)
        #expect(config.persistenceFile == "mosquitto.db")
        #expect(config.probeTarget?.host == "127.0.0.1")
        #expect(config.probeTarget?.port == 1883)
        #expect(config.listeners.count == 2)
        #expect(config.listeners[1].proto == "websockets")
    }

    @Test func probeUsesLoopbackForWildcardListener() {
        let config = BrokerConfig(text: "listener 1885\n")
        #expect(config.probeTarget?.host == "127.0.0.1")
        #expect(config.probeTarget?.port == 1885)
    }

    @Test(arguments: [
        ("persistence true", "persistence false", "persistence must be true"),
        ("persistence_location /var/lib/mosquitto/", "persistence_location /tmp/", "persistence_location must be the mountpoint"),
        ("autosave_on_changes true", "autosave_on_changes false", "autosave_on_changes must be true"),
        ("autosave_interval 1", "autosave_interval abc", "autosave_interval must be a positive whole number"),
        ("autosave_interval 1", "autosave_interval 0", "autosave_interval must be a positive whole number"),
        ("listener 1883 127.0.0.1", "# listener", "there is no listener line"),
    ])
    func weakenedConfigurationIsRejected(original: String, replacement: String, problem: String) {
        var text = Self.valid.replacingOccurrences(of: original, with: replacement)
        if original.hasPrefix("listener") {
            text = text.replacingOccurrences(of: "listener 9001", with: "# 9001")
        }
        let result = BrokerConfig(text: text).validate(mountpoint: "/var/lib/mosquitto")
        #expect(result?.hasPrefix(problem) == true, "got: \(result ?? "nil")")
    }

    @Test(arguments: ["listener tcp://10.96.0.5:1883", "listener 70000", "listener 0 127.0.0.1", "listener 18 83",
                      "listener 1883 127.0.0.1 extra"])
    func invalidListenerIsRejected(line: String) {
        let text = Self.valid.replacingOccurrences(of: "listener 9001", with: line)
        let result = BrokerConfig(text: text).validate(mountpoint: "/var/lib/mosquitto")
        #expect(result?.contains("line 7:") == true, "got: \(result ?? "nil")")
    }

    @Test func lastValueWins() {
        let config = BrokerConfig(text: Self.valid + "\npersistence false\n")
        #expect(config.validate(mountpoint: "/var/lib/mosquitto")?.hasPrefix("persistence must be true") == true)
    }
}
