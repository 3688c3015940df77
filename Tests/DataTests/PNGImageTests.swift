import Foundation
import XCTest
@testable import Data

/// Runs the Python scripts of Tests/Scripts (h5py, numpy and Pillow as independent writers and
/// readers; scripts/install_dependencies.sh installs them).
enum TestScripts {
    static let folder = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Scripts")

    /// Runs `python3 Tests/Scripts/<name> arguments...`; returns its exit status and standard error.
    static func run(_ name: String, _ arguments: [String]) throws -> (status: Int32, standardError: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", folder.appendingPathComponent(name).path] + arguments
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, message)
    }
}

/// PNG reading and writing through libpng, checked against files written by Pillow (and, for the
/// modes Pillow cannot write, by a minimal PNG encoder in Python: Tests/Scripts/make_png_fixtures.py),
/// and the image grid.
final class PNGImageTests: XCTestCase {
    func folder(_ name: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("vqvae-png-\(getpid())-\(name)").path
        try? FileManager.default.removeItem(atPath: path)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    func script(_ name: String, _ arguments: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let result = try TestScripts.run(name, arguments)
        XCTAssertEqual(result.status, 0,
                       "\(name) failed (it needs python3 with numpy and Pillow: scripts/install_dependencies.sh): \(result.standardError)",
                       file: file, line: line)
    }

    func bytes(_ path: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))) }

    func testReadsEveryModeAsPillowDoes() throws {
        let dir = try folder("modes")
        // `<name>.png` in many modes, `<name>.expected` (the uint8 `[H, W, C]` pixels the documented
        // rules give) and `manifest.json` with each file's `[H, W, C]`.
        try script("make_png_fixtures.py", [dir])
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/manifest.json"))) as? [String: [Int]]
        let cases = try XCTUnwrap(manifest)
        XCTAssertEqual(cases.count, 14, "fixture files")
        for (name, shape) in cases.sorted(by: { $0.key < $1.key }) {
            let image = try PNGImage.read(path: "\(dir)/\(name).png")
            XCTAssertEqual([image.height, image.width, image.channels], shape, name)
            let expected = try bytes("\(dir)/\(name).expected")
            XCTAssertEqual(image.pixels, expected, "\(name): pixels differ from the reference")
            print("[\(name)] \(shape) read as expected")
        }

        // Channel conversion: gray repeated into RGB, colour to Pillow's luma.
        let grayAsRGB = try PNGImage.read(path: dir + "/gray8.png", channels: 3)
        XCTAssertEqual(grayAsRGB.channels, 3)
        XCTAssertEqual(grayAsRGB.pixels, try bytes(dir + "/gray8.rgb"))
        let rgbAsGray = try PNGImage.read(path: dir + "/rgb8.png", channels: 1)
        XCTAssertEqual(rgbAsGray.channels, 1)
        XCTAssertEqual(rgbAsGray.pixels, try bytes(dir + "/rgb8.luma"), "luma differs from Pillow's convert('L')")

        // Alpha composited onto a background instead of dropped.
        let overWhite = try PNGImage.read(path: dir + "/gray_alpha.png", alpha: .composite(background: 255))
        XCTAssertEqual(overWhite.pixels, try bytes(dir + "/gray_alpha.white"))
        let overBlack = try PNGImage.read(path: dir + "/rgba8.png", alpha: .composite(background: 0))
        XCTAssertEqual(overBlack.pixels, try bytes(dir + "/rgba8.black"))
        XCTAssertEqual(Array(overBlack.pixels[0..<15]), [UInt8](repeating: 0, count: 15), "alpha 0 over black")

        XCTAssertThrowsError(try PNGImage.read(path: dir + "/rgb8.png", channels: 4)) { error in
            XCTAssertTrue(error is DataError)
            XCTAssertTrue("\(error)".contains("rgb8.png"), "\(error)")
        }
    }

    /// Images written here read back identically, here and in Pillow.
    func testRoundTripAndPillowReadsWhatIsWritten() throws {
        let dir = try folder("roundtrip")
        var random = SystemRandomNumberGenerator()
        var written: [(String, PNGImage)] = []
        for (height, width, channels) in [(1, 1, 1), (1, 1, 3), (32, 32, 3), (37, 45, 1), (3, 200, 3), (64, 1, 1)] {
            let pixels = (0..<(height * width * channels)).map { _ in UInt8.random(in: 0...255, using: &random) }
            let image = try PNGImage(height: height, width: width, channels: channels, pixels: pixels)
            let path = "\(dir)/image-\(height)x\(width)x\(channels).png"
            try image.write(to: path)
            XCTAssertEqual(try PNGImage.read(path: path), image, path)
            try Data(pixels).write(to: URL(fileURLWithPath: path + ".raw"))
            written.append((path, image))
        }
        try script("check_pngs_with_pillow.py", written.map(\.0))

        // Overwriting replaces the file.
        let replacement = try PNGImage(height: 2, width: 2, channels: 1, pixels: [0, 64, 128, 255])
        try replacement.write(to: written[0].0)
        XCTAssertEqual(try PNGImage.read(path: written[0].0), replacement)

        // Floats in [0, 1] are clipped and rounded.
        let fromFloats = try PNGImage(unitFloats: [-0.5, 0, 0.5, 1.0 / 255 * 0.49, 1.0 / 255 * 0.51, 0.999, 1, 7, .nan],
                                      height: 3, width: 3, channels: 1)
        XCTAssertEqual(fromFloats.pixels, [0, 0, 128, 0, 1, 255, 255, 255, 0])
        XCTAssertEqual(try PNGImage(unitFloats: fromFloats.unitFloats, height: 3, width: 3, channels: 1), fromFloats)
    }

    func assertDataError(_ body: @autoclosure () throws -> PNGImage, mentions path: String, _ label: String,
                         file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), label, file: file, line: line) { error in
            XCTAssertTrue(error is DataError, "\(label): \(type(of: error))", file: file, line: line)
            XCTAssertTrue("\(error)".contains(path), "\(label): '\(error)' does not name \(path)", file: file, line: line)
            print("[\(label)] \(error)")
        }
    }

    func testDamagedTruncatedAndForeignFilesAreDataErrors() throws {
        let dir = try folder("damaged")
        let pixels = (0..<(40 * 30 * 3)).map { UInt8(($0 * 37) % 256) }
        let good = dir + "/good.png"
        try PNGImage(height: 40, width: 30, channels: 3, pixels: pixels).write(to: good)
        let data = try bytes(good)
        XCTAssertGreaterThan(data.count, 100)

        // Without its IEND chunk a file still holds every pixel, and reads.
        let noEnd = dir + "/no-end.png"
        try Data(data[0..<(data.count - 12)]).write(to: URL(fileURLWithPath: noEnd))
        XCTAssertEqual(try PNGImage.read(path: noEnd).pixels, pixels)

        for keep in [data.count - 14, data.count - 20, data.count / 2, 30, 8, 0] {
            let path = "\(dir)/truncated-\(keep).png"
            try Data(data[0..<keep]).write(to: URL(fileURLWithPath: path))
            assertDataError(try PNGImage.read(path: path), mentions: path, "truncated to \(keep) bytes")
        }

        var flipped = data
        flipped[data.count / 2] ^= 0x5A  // inside the IDAT data: the CRC no longer matches
        let corrupt = dir + "/corrupt.png"
        try Data(flipped).write(to: URL(fileURLWithPath: corrupt))
        assertDataError(try PNGImage.read(path: corrupt), mentions: corrupt, "flipped byte")

        let text = dir + "/notes.png"
        try Data("this is not an image\n".utf8).write(to: URL(fileURLWithPath: text))
        assertDataError(try PNGImage.read(path: text), mentions: text, "text file")

        let jpegLike = dir + "/photo.png"
        try Data([0xFF, 0xD8, 0xFF, 0xE0] + [UInt8](repeating: 0, count: 200)).write(to: URL(fileURLWithPath: jpegLike))
        assertDataError(try PNGImage.read(path: jpegLike), mentions: jpegLike, "JPEG header")

        let missing = dir + "/missing.png"
        assertDataError(try PNGImage.read(path: missing), mentions: missing, "missing file")

        assertDataError(try PNGImage.read(path: dir), mentions: dir, "a folder")

        let unwritable = dir + "/no/such/folder/out.png"
        XCTAssertThrowsError(try PNGImage(height: 1, width: 1, channels: 1, pixels: [0]).write(to: unwritable)) { error in
            XCTAssertTrue(error is DataError)
            XCTAssertTrue("\(error)".contains(unwritable), "\(error)")
        }

        XCTAssertThrowsError(try PNGImage(height: 2, width: 2, channels: 2, pixels: [0, 0, 0, 0, 0, 0, 0, 0]))
        XCTAssertThrowsError(try PNGImage(height: 2, width: 2, channels: 1, pixels: [0, 0, 0]))
        XCTAssertThrowsError(try PNGImage(height: 0, width: 2, channels: 1, pixels: []))
    }

    func testGrid() throws {
        func filled(_ value: UInt8, channels: Int = 1, height: Int = 4, width: Int = 5) throws -> PNGImage {
            try PNGImage(height: height, width: width, channels: channels,
                         pixels: [UInt8](repeating: value, count: height * width * channels))
        }
        let grid = try ImageGrid.compose(rows: [[filled(10), filled(20), filled(30)],
                                                [filled(40), filled(50), filled(60)]], separator: 2, separatorValue: 255)
        XCTAssertEqual([grid.height, grid.width, grid.channels], [4 * 2 + 2, 5 * 3 + 2 * 2, 1])
        func at(_ image: PNGImage, _ y: Int, _ x: Int, _ c: Int = 0) -> UInt8 { image.pixels[(y * image.width + x) * image.channels + c] }
        for y in 0..<grid.height {
            for x in 0..<grid.width {
                let cellY = y / 6, cellX = x / 7
                let inside = y % 6 < 4 && x % 7 < 5
                XCTAssertEqual(at(grid, y, x), inside ? UInt8(10 * (cellY * 3 + cellX + 1)) : 255, "(\(y), \(x))")
            }
        }

        // Gray and RGB together make an RGB grid; a short row leaves separator-coloured cells.
        let colour = try PNGImage(height: 4, width: 5, channels: 3, pixels: (0..<60).map { UInt8($0) })
        let mixed = try ImageGrid.compose(rows: [[filled(7), colour], [filled(9)]], separator: 1, separatorValue: 0)
        XCTAssertEqual([mixed.height, mixed.width, mixed.channels], [9, 11, 3])
        XCTAssertEqual([at(mixed, 0, 0, 0), at(mixed, 0, 0, 1), at(mixed, 0, 0, 2)], [7, 7, 7])
        XCTAssertEqual([at(mixed, 0, 6, 0), at(mixed, 0, 6, 1), at(mixed, 0, 6, 2)], [0, 1, 2])
        XCTAssertEqual([at(mixed, 3, 10, 0), at(mixed, 3, 10, 2)], [57, 59])
        XCTAssertEqual(at(mixed, 5, 0), 9)
        XCTAssertEqual(at(mixed, 5, 8), 0, "empty cell")
        XCTAssertEqual(at(mixed, 4, 0), 0, "separator")

        // A grid writes and reads back like any image.
        let path = try folder("grid") + "/grid.png"
        try mixed.write(to: path)
        XCTAssertEqual(try PNGImage.read(path: path), mixed)

        XCTAssertThrowsError(try ImageGrid.compose(rows: [[filled(1), filled(2, height: 3)]])) { error in
            XCTAssertTrue("\(error)".contains("row 0, column 1"), "\(error)")
        }
        XCTAssertThrowsError(try ImageGrid.compose(rows: [[], []]))
        XCTAssertThrowsError(try ImageGrid.compose(rows: [[filled(1)]], separator: -1))
    }
}
