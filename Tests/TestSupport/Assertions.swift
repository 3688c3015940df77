import XCTest

/// The worst element of a comparison: `|a - b| / max(|a|, |b|, floor)` is largest at `index`.
public struct Difference: CustomStringConvertible {
    public var scaled: Double = 0
    public var absolute: Double = 0
    /// The largest `|a - b|` over all elements (not necessarily at `index`).
    public var largestAbsolute: Double = 0
    public var index: Int = -1
    public var actual: Double = 0
    public var expected: Double = 0
    public var count: Int = 0
    public var allFinite = true

    public var description: String {
        String(format: "largest |a-b| %.3e, largest scaled %.3e at [%d] (%.9g vs %.9g), %d elements",
               largestAbsolute, scaled, index, actual, expected, count)
    }
}

/// Compares element by element with Caffe's / llm.c's scale: `|a - b| / max(|a|, |b|, floor)`.
public func difference(_ actual: [Double], _ expected: [Double], floor: Double = 1) -> Difference {
    precondition(actual.count == expected.count, "sizes differ")
    var result = Difference()
    result.count = actual.count
    for i in actual.indices {
        let a = actual[i], b = expected[i]
        if !a.isFinite || !b.isFinite {
            result.allFinite = false
            if result.index < 0 || result.scaled.isFinite { result.index = i; result.actual = a; result.expected = b }
            result.scaled = .infinity
            continue
        }
        let absolute = abs(a - b)
        let scaled = absolute / max(abs(a), abs(b), floor)
        result.largestAbsolute = max(result.largestAbsolute, absolute)
        if scaled > result.scaled || result.index < 0 {
            result.scaled = scaled
            result.absolute = absolute
            result.index = i
            result.actual = a
            result.expected = b
        }
    }
    return result
}

/// Asserts `|a - b| <= tolerance * max(|a|, |b|, floor)` for every element, prints the largest
/// difference (so a passing run still shows how close it was) and reports at the caller's line.
@discardableResult
public func assertClose(
    _ actual: [Double], _ expected: [Double], tolerance: Double, floor: Double = 1, _ label: String,
    file: StaticString = #filePath, line: UInt = #line
) -> Difference {
    guard actual.count == expected.count else {
        XCTFail("\(label): \(actual.count) values, expected \(expected.count)", file: file, line: line)
        return Difference()
    }
    XCTAssertGreaterThan(actual.count, 0, "\(label): nothing compared", file: file, line: line)
    let d = difference(actual, expected, floor: floor)
    print("[\(label)] \(d) (tolerance \(tolerance), floor \(floor))")
    XCTAssertTrue(d.allFinite, "\(label): non-finite value at [\(d.index)]: \(d.actual) vs \(d.expected)",
                  file: file, line: line)
    XCTAssertLessThanOrEqual(d.scaled, tolerance, "\(label): \(d)", file: file, line: line)
    return d
}

@discardableResult
public func assertClose(
    _ actual: [Float], _ expected: [Double], tolerance: Double, floor: Double = 1, _ label: String,
    file: StaticString = #filePath, line: UInt = #line
) -> Difference {
    assertClose(actual.map(Double.init), expected, tolerance: tolerance, floor: floor, label, file: file, line: line)
}

@discardableResult
public func assertClose(
    _ actual: Double, _ expected: Double, tolerance: Double, floor: Double = 1, _ label: String,
    file: StaticString = #filePath, line: UInt = #line
) -> Difference {
    assertClose([actual], [expected], tolerance: tolerance, floor: floor, label, file: file, line: line)
}

/// `max |x|`, for choosing a floor relative to the size of the values compared.
public func largestMagnitude(_ values: [Double]) -> Double { values.reduce(0) { max($0, abs($1)) } }
