import Foundation
import XCTest

extension XCTestCase {
    /// A command that refused: a non-zero exit and exactly one line on standard error, containing
    /// `expected`.
    func assertRefused(_ result: CommandRunner.Result, _ expected: String, _ label: String,
                       file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertNotEqual(result.status, 0, "\(label) was accepted: \(result.standardOutput)", file: file, line: line)
        XCTAssertEqual(result.standardError.split(separator: "\n").count, 1, "\(label): one line: \(result.standardError)", file: file, line: line)
        XCTAssertTrue(result.standardError.contains(expected), "\(label): '\(result.standardError)' lacks '\(expected)'", file: file, line: line)
    }

    /// The bytes of the file at `path`, or nil when there is none.
    func fileBytes(_ path: String) -> Data? { FileManager.default.contents(atPath: path) }
}
