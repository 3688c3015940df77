import Foundation
import XCTest
@testable import Data

/// JPEG reading and writing through libjpeg, checked against Pillow: files Pillow writes read as
/// Pillow decodes them, files written here read in Pillow, and damaged files are errors (never an
/// exit or a crash).
final class JPEGImageTests: XCTestCase {
    static let scripts = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Scripts")

    func folder(_ name: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("vqvae-jpeg-\(getpid())-\(name)").path
        try? FileManager.default.removeItem(atPath: path)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Runs a script of Tests/Scripts with python3 (Pillow and numpy); returns its standard output.
    func script(_ name: String, _ arguments: [String], file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", Self.scripts.appendingPathComponent(name).path] + arguments
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "python3 with numpy and Pillow must be installed: \(message)", file: file, line: line)
        return text
    }

    func bytes(_ path: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))) }

    /// Gray, 4:2:0 and 4:4:4 colour, progressive and CMYK files from Pillow decode to Pillow's pixels
    /// (libjpeg-turbo on both sides; CMYK through the same conversion, to rounding).
    func testReadsWhatPillowWrites() throws {
        let dir = try folder("pillow")
        _ = try script("jpeg_pillow_fixtures.py", [dir])
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/manifest.json"))) as! [String: [Int]]
        XCTAssertEqual(manifest.count, 6)
        for (name, shape) in manifest.sorted(by: { $0.key < $1.key }) {
            let image = try JPEGImage.read(path: "\(dir)/\(name).jpg")
            XCTAssertEqual([image.height, image.width, image.channels], shape, name)
            XCTAssertNil(image.alpha)
            let expected = try bytes("\(dir)/\(name).raw")
            let largest = zip(image.pixels, expected).map { abs(Int($0) - Int($1)) }.max() ?? 0
            XCTAssertLessThanOrEqual(largest, name == "cmyk" ? 2 : 1, "\(name): largest difference to Pillow's decode")
            // ImageFormat.read tells JPEG from PNG by content, whatever the name.
            let misnamed = "\(dir)/\(name)-really-a-jpeg.png"
            try FileManager.default.copyItem(atPath: "\(dir)/\(name).jpg", toPath: misnamed)
            XCTAssertEqual(try ImageFormat.read(path: misnamed), image, name)
        }
    }

    /// Images written here read back in Pillow with the same size and mode, close to the source at
    /// quality 95 and smaller at quality 20; the file replaces an existing one and leaves no
    /// temporary file; alpha and bad qualities are refused.
    func testWritesWhatPillowReads() throws {
        let dir = try folder("write")
        var paths: [String] = []
        var sources: [String: PNGImage] = [:]
        for (height, width, channels) in [(1, 1, 1), (17, 33, 3), (64, 48, 1), (40, 70, 3)] {
            let pixels = (0..<(height * width * channels)).map { i -> UInt8 in
                let p = i / channels, y = p / width, x = p % width
                return UInt8((x * 5 + y * 3 + (i % channels) * 60) % 256)
            }
            let image = try PNGImage(height: height, width: width, channels: channels, pixels: pixels)
            let path = "\(dir)/image-\(height)x\(width)x\(channels).jpg"
            try JPEGImage.write(image, to: path, quality: 95)
            paths.append(path)
            sources[path] = image
            let back = try JPEGImage.read(path: path)
            let error = zip(back.pixels, pixels).map { abs(Double($0) - Double($1)) }.reduce(0, +) / Double(pixels.count)
            XCTAssertLessThan(error, 3, "\(path): mean absolute error at quality 95")
            let low = "\(dir)/low-\(height)x\(width)x\(channels).jpg"
            try JPEGImage.write(image, to: low, quality: 20)
            if height * width > 100 { XCTAssertLessThan(try bytes(low).count, try bytes(path).count, "quality 20 is smaller") }
        }
        let report = try script("jpeg_pillow_read.py", paths).split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        XCTAssertEqual(report.count, paths.count)
        for row in report {
            let image = try JPEGImage.read(path: row[0])
            XCTAssertEqual(row[1], image.channels == 1 ? "L" : "RGB", row[0])
            XCTAssertEqual([Int(row[2]), Int(row[3])], [image.height, image.width], row[0])
            let pillow = try bytes(row[0] + ".pillow")
            XCTAssertLessThanOrEqual(zip(image.pixels, pillow).map { abs(Int($0) - Int($1)) }.max() ?? 99, 1, row[0])
        }

        // Replacing a file: complete new contents, no temporary file left.
        try JPEGImage.write(sources[paths[1]]!, to: paths[0], quality: 90)
        XCTAssertEqual(try JPEGImage.read(path: paths[0]).width, 33)
        XCTAssertFalse(try FileManager.default.contentsOfDirectory(atPath: dir).contains { $0.contains(".tmp-") })

        let transparent = try PNGImage(height: 2, width: 2, channels: 1, pixels: [1, 2, 3, 4], alpha: [255, 0, 255, 0])
        XCTAssertThrowsError(try JPEGImage.write(transparent, to: "\(dir)/alpha.jpg", quality: 90)) { error in
            XCTAssertTrue("\(error)".contains("transparency"), "\(error)")
        }
        XCTAssertThrowsError(try JPEGImage.write(sources[paths[1]]!, to: "\(dir)/q.jpg", quality: 0))
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(dir)/alpha.jpg"))
        XCTAssertThrowsError(try JPEGImage.write(sources[paths[1]]!, to: "\(dir)/no/such/folder/x.jpg", quality: 90)) { error in
            XCTAssertTrue(error is DataError)
        }
    }

    /// Truncated, corrupted, foreign and missing files are DataErrors naming the file.
    func testDamagedFilesAreErrors() throws {
        let dir = try folder("damaged")
        let pixels = (0..<(48 * 64 * 3)).map { UInt8(($0 * 37) % 256) }
        let good = dir + "/good.jpg"
        try JPEGImage.write(try PNGImage(height: 48, width: 64, channels: 3, pixels: pixels), to: good, quality: 90)
        let data = try bytes(good)
        var cases: [(String, [UInt8])] = []
        for keep in [data.count - 2, data.count * 2 / 3, data.count / 2, 200, 20, 3, 0] {
            cases.append(("truncated-\(keep)", Array(data[0..<keep])))
        }
        var flipped = data
        for i in (data.count / 2)..<(data.count / 2 + 40) { flipped[i] = 0xFF }
        cases.append(("marker-run", flipped))
        cases.append(("text", Array("this is not an image\n".utf8)))
        cases.append(("png-header", [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + [UInt8](repeating: 0, count: 100)))
        for (name, contents) in cases {
            let path = "\(dir)/\(name).jpg"
            try Data(contents).write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try JPEGImage.read(path: path), name) { error in
                XCTAssertTrue(error is DataError, "\(name): \(type(of: error))")
                XCTAssertTrue("\(error)".contains(path), "\(name): '\(error)' does not name the file")
            }
            XCTAssertThrowsError(try ImageFormat.read(path: path), name)
        }
        XCTAssertThrowsError(try JPEGImage.read(path: dir + "/missing.jpg")) { error in
            XCTAssertTrue("\(error)".contains("missing.jpg"), "\(error)")
        }
        XCTAssertThrowsError(try JPEGImage.read(path: dir))
    }
}
