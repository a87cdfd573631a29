/// Renders `mosquitto.conf.template` by replacing `${NAME}`, `${NAME:-default}` (the default when
/// NAME is unset or empty) and `${NAME:+alternate}` (the alternate when NAME is set and not empty).
/// Defaults and alternates may contain references themselves. `$$` is a literal dollar sign.
public struct TemplateRenderer {
    public let variables: [String: String]

    public init(variables: [String: String]) {
        self.variables = variables
    }

    public func render(_ template: String, source: String) throws -> String {
        var output = ""
        var lineNumber = 0
        for line in template.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            if line.trimmingLeadingSpaces.hasPrefix("#") {
                output += line + "\n"
                continue
            }
            var scanner = Scanner(text: Array(line), source: source, line: lineNumber, variables: variables)
            output += try scanner.expand(until: nil) + "\n"
        }
        // Every line got a newline above, the last one included. A trailing newline of the
        // template is already there as an empty last line, so one newline is too many.
        output.removeLast()
        return output
    }
}

private extension Substring {
    var trimmingLeadingSpaces: Substring { drop { $0 == " " || $0 == "\t" } }
}

private struct Scanner {
    let text: [Character]
    let source: String
    let line: Int
    let variables: [String: String]
    var index = 0

    init(text: [Character], source: String, line: Int, variables: [String: String]) {
        self.text = text
        self.source = source
        self.line = line
        self.variables = variables
    }

    /// Expands text up to `terminator` (a closing brace of a nested default) or the line end.
    /// When `evaluate` is false the text is only parsed, because it belongs to a default or
    /// alternate that is not used, so its undefined variables are no error.
    mutating func expand(until terminator: Character?, evaluate: Bool = true) throws -> String {
        var result = ""
        while index < text.count {
            let character = text[index]
            if character == terminator {
                return result
            }
            if character == "$" && index + 1 < text.count && text[index + 1] == "$" {
                result.append("$")
                index += 2
            } else if character == "$" && index + 1 < text.count && text[index + 1] == "{" {
                index += 2
                result += try reference(evaluate: evaluate)
            } else {
                result.append(character)
                index += 1
            }
        }
        if terminator != nil {
            throw SupervisorError(.template, "\(source) line \(line): a ${ has no closing }; close the reference")
        }
        return result
    }

    /// Expands one reference; `index` is just past its `${` and ends just past its `}`.
    private mutating func reference(evaluate: Bool) throws -> String {
        var name = ""
        while index < text.count, text[index].isLetter || text[index].isNumber || text[index] == "_" {
            name.append(text[index])
            index += 1
        }
        guard !name.isEmpty, !name.first!.isNumber else {
            throw SupervisorError(.template, "\(source) line \(line): expected a variable name after ${; write ${NAME}")
        }

        let value = variables[name]
        guard index < text.count else {
            throw SupervisorError(.template, "\(source) line \(line): ${\(name) has no closing }; close the reference")
        }
        if text[index] == "}" {
            index += 1
            guard evaluate else {
                return ""
            }
            guard let value else {
                throw SupervisorError(.template,
                    "\(source) line \(line): variable \(name) is not defined; set it in the environment or write ${\(name):-default}")
            }
            return try checked(value, name: name)
        }

        guard index + 1 < text.count, text[index] == ":", text[index + 1] == "-" || text[index + 1] == "+" else {
            throw SupervisorError(.template, "\(source) line \(line): unsupported form after ${\(name); use ${\(name)}, ${\(name):-default} or ${\(name):+alternate}")
        }

        let isDefault = text[index + 1] == "-"
        index += 2
        let isSet = !(value ?? "").isEmpty
        let usesAlternative = evaluate && (isDefault ? !isSet : isSet)
        let alternative = try expand(until: "}", evaluate: usesAlternative)
        index += 1
        guard evaluate else {
            return ""
        }

        if isDefault {
            return isSet ? try checked(value!, name: name) : alternative
        }
        return isSet ? alternative : ""
    }

    /// Rejects control characters, because a newline in a value would add directives.
    private func checked(_ value: String, name: String) throws -> String {
        if let bad = value.unicodeScalars.first(where: { $0.value < 0x20 || $0.value == 0x7f }) {
            throw SupervisorError(.template,
                "\(source) line \(line): the value of \(name) contains control character 0x\(String(bad.value, radix: 16)); remove newlines and other control characters from it")
        }
        return value
    }
}
