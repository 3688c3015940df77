import Foundation
import XCTest
@testable import Data
import Model

final class ImageDatasetTests: XCTestCase {
    func folder(_ name: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("vqvae-datasets-\(getpid())-\(name)").path
        try? FileManager.default.removeItem(atPath: path)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Two uint8 files form one dataset; reads of scattered indices across the boundary are
    /// normalised as v/255 - 0.5.
    func testMultiFileUInt8Reads() throws {
        let dir = try folder("multi")
        let shape = [5, 4, 6, 3]
        let count = shape.reduce(1, *)
        let a = (0..<count).map { UInt8($0 % 251) }
        let b = (0..<count).map { UInt8(($0 * 7 + 3) % 256) }
        try ImageDataset.writeUInt8(path: dir + "/a.h5", images: a, shape: shape, labels: [0, 1, 2, 3, 4])
        try ImageDataset.writeUInt8(path: dir + "/b.h5", images: b, shape: shape, labels: [5, 6, 7, 8, 9])
        let dataset = try ImageDataset(paths: [dir + "/a.h5", dir + "/b.h5"])
        XCTAssertEqual([dataset.count, dataset.height, dataset.width, dataset.channels], [10, 4, 6, 3])
        XCTAssertEqual(dataset.elementType, .uint8)
        XCTAssertTrue(dataset.hasLabels)
        let indices = [9, 3, 4, 5, 6, 0]
        let out = FloatBuffer(count: indices.count * dataset.imageElements)
        try dataset.read(indices: indices, into: out.pointer)
        let per = dataset.imageElements
        for (row, index) in indices.enumerated() {
            let source = index < 5 ? a : b
            let local = index % 5
            for e in stride(from: 0, to: per, by: 17) {
                XCTAssertEqual(out[row * per + e], Float(source[local * per + e]) / 255 - 0.5)
            }
        }
        XCTAssertEqual(try dataset.labels(indices: [9, 0, 5]), [9, 0, 5])
    }

    /// float32 images and gzip-compressed, chunked files written by h5py read correctly.
    func testFloatAndGzipFilesFromH5py() throws {
        let dir = try folder("h5py")
        let made = try TestScripts.run("make_hdf5_fixture.py", [dir + "/f.h5", "--shape", "7,4,4,1", "--dtype", "float32",
                                                                "--random-unit", "0", "--chunks", "2,4,4,1", "--gzip",
                                                                "--raw", dir + "/f.raw"])
        XCTAssertEqual(made.status, 0, "h5py must be installed (scripts/test.sh installs it): \(made.standardError)")
        let raw = try Data(contentsOf: URL(fileURLWithPath: dir + "/f.raw"))
        let expected = raw.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        let dataset = try ImageDataset(paths: [dir + "/f.h5"])
        XCTAssertEqual(dataset.elementType, .float32)
        XCTAssertEqual(dataset.filters, ["gzip"])
        XCTAssertEqual(dataset.chunks, [2, 4, 4, 1])
        let out = FloatBuffer(count: 7 * 16)
        try dataset.read(indices: Array(0..<7), into: out.pointer)
        for i in 0..<(7 * 16) { XCTAssertEqual(out[i], expected[i] - 0.5) }
    }

    func testMissingKeyNamesTheFile() throws {
        let dir = try folder("key")
        try ImageDataset.writeUInt8(path: dir + "/a.h5", images: [UInt8](repeating: 0, count: 16), shape: [1, 4, 4, 1])
        XCTAssertThrowsError(try ImageDataset(paths: [dir + "/a.h5"], imagesKey: "pixels")) { error in
            XCTAssertEqual("\(error)", "\(dir)/a.h5: no dataset 'pixels' (spec: images of shape (N, H, W, C); see --images-key)")
        }
    }
}
