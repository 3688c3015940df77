import Foundation

/// JSON text laid out for reading (`vqvae inspect`): one member per line, indented two spaces a
/// level, keys sorted, numbers as they were written; an array of plain values on one line.
enum JSONLayout {
    /// `json` laid out with every line after the first prefixed by `indent`; nil if it is not JSON.
    static func pretty(_ json: String, indent: String = "") -> String? {
        guard let value = try? JSONDecoder().decode(Value.self, from: Data(json.utf8)) else { return nil }
        return value.lines(indent: indent)
    }

    indirect enum Value: Decodable {
        case null
        case bool(Bool)
        case integer(Int64)
        case unsigned(UInt64)
        case number(Double)
        case string(String)
        case array([Value])
        case object([String: Value])

        init(from decoder: Decoder) throws {
            let container = try decoder.singleValueContainer()
            if container.decodeNil() {
                self = .null
            } else if let value = try? container.decode(Bool.self) {
                self = .bool(value)
            } else if let value = try? container.decode(Int64.self) {
                self = .integer(value)
            } else if let value = try? container.decode(UInt64.self) {
                self = .unsigned(value)
            } else if let value = try? container.decode(Double.self) {
                self = .number(value)
            } else if let value = try? container.decode(String.self) {
                self = .string(value)
            } else if let value = try? container.decode([Value].self) {
                self = .array(value)
            } else {
                self = .object(try container.decode([String: Value].self))
            }
        }

        /// The value as text whose lines after the first start with `indent`.
        func lines(indent: String) -> String {
            let inner = indent + "  "
            switch self {
            case .null: return "null"
            case .bool(let value): return "\(value)"
            case .integer(let value): return "\(value)"
            case .unsigned(let value): return "\(value)"
            case .number(let value): return "\(value)"
            case .string(let value): return Self.quoted(value)
            case .array(let values):
                if values.allSatisfy(\.isPlain) { return "[" + values.map { $0.lines(indent: "") }.joined(separator: ", ") + "]" }
                return "[\n" + values.map { inner + $0.lines(indent: inner) }.joined(separator: ",\n") + "\n\(indent)]"
            case .object(let members):
                guard !members.isEmpty else { return "{}" }
                return "{\n" + members.sorted { $0.key < $1.key }
                    .map { inner + Self.quoted($0.key) + ": " + $0.value.lines(indent: inner) }
                    .joined(separator: ",\n") + "\n\(indent)}"
            }
        }

        /// Not an array or an object.
        var isPlain: Bool {
            switch self {
            case .array, .object: return false
            default: return true
            }
        }

        static func quoted(_ text: String) -> String {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.withoutEscapingSlashes]
            return (try? encoder.encode(text)).map { String(decoding: $0, as: UTF8.self) } ?? "\"\""
        }
    }
}
