import Foundation
import XCTest
@testable import Data
@testable import Model

/// Damaged and hostile files: the inputs the fuzzer found (Tests/Fuzz/regressions/) and the ones
/// Tests/Fuzz/make_regressions.py builds. Each once made a reader crash, trap, loop, allocate
/// what a header claimed or leave HDF5 objects open; each must now end in a clean `DataError`
/// naming the problem, with nothing left open.
final class HostileInputTests: XCTestCase {
    static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func temporaryFolder(_ name: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("vqvae-hostile-\(getpid())-\(name)").path
        try? FileManager.default.removeItem(atPath: path)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    func smallModel() throws -> VQVAE {
        var c = ModelConfiguration(height: 8, width: 8, channels: 1)
        c.hidden = 8; c.residualHidden = 4; c.residualBlocks = 1; c.codeDimension = 4; c.codes = 8
        return try VQVAE(configuration: c, maxBatch: 1)
    }

    /// Writes the built regression files next to a real checkpoint and returns their folder.
    func buildRegressions() throws -> String {
        let folder = try temporaryFolder("built")
        let model = try smallModel()
        model.initialize(seed: 1)
        let checkpoint = try Checkpoint.write(
            directory: folder, model: model, optimizer: Adam(count: model.parameters.count),
            state: CheckpointState(step: 0, epoch: 0, samplesSeen: 0, worldSize: 1, configuration: "{}", data: [:]))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", Self.packageRoot.appendingPathComponent("Tests/Fuzz/make_regressions.py").path,
                             checkpoint, folder]
        try process.run()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "Tests/Fuzz/make_regressions.py failed (it needs h5py and numpy)")
        return folder
    }

    /// What `vqvae train` does with a dataset file (as Tests/Fuzz/DatasetFuzzer.swift does): for
    /// images of different sizes, crops of up to 8x8, random and turned, then centre crops.
    func readLikeTraining(_ path: String) throws {
        let files = try openImageFiles(paths: [path])
        guard let dataset = files as? ImageDataset else {
            let smallest = files.smallestImage
            let cropped = try CroppedImages(files: files, size: min(8, smallest.height, smallest.width), seed: 1, augmentation: .dihedral)
            var indices = Array(0..<min(files.count, 3))
            if files.count > 3 { indices += [files.count - 1, files.count / 2] }
            var values = [Float](repeating: 0, count: indices.count * cropped.imageElements)
            try values.withUnsafeMutableBufferPointer { try cropped.read(samples: indices.map { (epoch: 0, index: $0) }, into: $0.baseAddress!) }
            try values.withUnsafeMutableBufferPointer { try cropped.read(indices: indices, into: $0.baseAddress!) }
            if let variable = files as? VariableSizeDataset, variable.hasLabels { _ = try variable.labels(indices: indices) }
            _ = try files.identity()
            return
        }
        try dataset.checkFitsInMemory(batch: 32, bytesPerImageElement: 1120)
        var indices = Array(0..<min(dataset.count, 3))
        if dataset.count > 3 { indices += [dataset.count - 1, dataset.count / 2] }
        var values = [Float](repeating: 0, count: indices.count * dataset.imageElements)
        try values.withUnsafeMutableBufferPointer { try dataset.read(indices: indices, into: $0.baseAddress!) }
        if dataset.hasLabels { _ = try dataset.labels(indices: indices) }
    }

    func assertDataError(_ path: String, contains expected: String, _ body: () throws -> Void,
                         file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), path, file: file, line: line) { error in
            XCTAssertTrue(error is DataError, "\(path): \(type(of: error)) \(error)", file: file, line: line)
            XCTAssertTrue("\(error)".contains(expected), "\(path): '\(error)' does not say '\(expected)'", file: file, line: line)
        }
        XCTAssertEqual(HDF5File.openObjectCount, 0, "\(path): HDF5 objects left open", file: file, line: line)
    }

    func testDatasetFilesEndInADataError() throws {
        let built = try buildRegressions() + "/dataset"
        let found = Self.packageRoot.appendingPathComponent("Tests/Fuzz/regressions/dataset").path
        let expected: [(String, String)] = [
            (built + "/empty-images.h5", "holds no images"),
            (built + "/dimension-beyond-int.h5", "'images'"),
            (built + "/shape-overflows.h5", "too large to address"),
            (built + "/compact-shorter-than-shape.h5", "8 bytes of compact data for 80 values"),
            (built + "/contiguous-shorter-than-shape.h5", "8 bytes of contiguous data for 80 values"),
            (built + "/chunk-beyond-shape.h5", "exceed the maximum shape"),
            (built + "/chunk-record-too-small.h5", "holds 8 bytes instead of 80"),
            (built + "/local-heap-too-large.h5", "local heap"),
            (found + "/found-local-heap-segv.h5", "local heap"),
            (found + "/found-local-heap-huge.h5", "local heap"),
            (found + "/found-chunk-index-misaligned.h5", "damaged"),
            (found + "/found-chunk-index-misaligned-2.h5", "damaged"),
            // Took 10 s: a width of 55300 beyond its maximum of 4 made every read check 27,650 chunks.
            (found + "/found-dimension-beyond-maximum.h5", "beyond its maximum of 4"),
            (found + "/found-gzip-chunk-inflates-short.h5", "instead of 516128"),
            (found + "/found-symbol-table-heap-undefined.h5", "symbol table"),
            // A filter pipeline claiming 9 filters in a message holding one: libhdf5 decoded past
            // the message (heap-buffer-overflow in strlen under H5O_msg_read).
            (found + "/found-filter-pipeline-count.h5", "filter pipeline"),
            // The superblock's signature alone trapped (index out of range) in HDF5Structure.
            (found + "/found-signature-only.h5", "HDF5"),
        ]
        // Every committed input is listed here.
        let committed = try FileManager.default.contentsOfDirectory(atPath: found).filter { $0.hasSuffix(".h5") }
        XCTAssertEqual(Set(committed.map { found + "/" + $0 }), Set(expected.map(\.0).filter { $0.hasPrefix(found) }))
        for (path, message) in expected {
            assertDataError(path, contains: message) { try readLikeTraining(path) }
            // `inspect` reads the header and the labels, not the images: damage in image data
            // alone is not its to find, but nothing may crash or stay open.
            do { _ = try Inspector.describe(path: path) } catch { XCTAssertTrue(error is DataError, "\(path): \(error)") }
            XCTAssertEqual(HDF5File.openObjectCount, 0, path)
        }
    }

    func testCheckpointFilesEndInADataError() throws {
        let built = try buildRegressions() + "/checkpoint"
        for (name, message) in [("attribute-array.h5", "holds 4096 values, expected one"),
                                ("string-attribute-array.h5", "holds 2 values, expected one"),
                                ("tensor-larger-than-file.h5", "/model/extra/weight"),
                                ("tensor-not-written.h5", "/model/quantizer/codebook"),
                                ("global-heap-free-space-empty.h5", "global heap collection"),
                                ("global-heap-object-too-large.h5", "global heap collection"),
                                ("global-heap-value-size-differs.h5", "does not match object"),
                                ("group-symbol-table-outside.h5", "symbol table"),
                                ("root-object-header-too-large.h5", "object header")] {
            let path = built + "/" + name
            assertDataError(path, contains: message) { try Checkpoint.verify(path: path) }
            assertDataError(path, contains: message) { _ = try Inspector.describe(path: path) }
        }
        // Found by the checkpoint fuzzer: an attribute ("lr" of /optimizer) whose dataspace size
        // was raised to 17,416 bytes in a 56-byte message; libhdf5 decoded it past the message
        // (heap-buffer-overflow under H5Aexists_by_name).
        let found = Self.packageRoot.appendingPathComponent("Tests/Fuzz/regressions/checkpoint").path
        let committed = try FileManager.default.contentsOfDirectory(atPath: found).filter { $0.hasSuffix(".h5") }
        XCTAssertEqual(committed, ["found-attribute-dataspace-beyond-message.h5"])
        for name in committed {
            let path = found + "/" + name
            assertDataError(path, contains: "beyond the end of its message") { try Checkpoint.verify(path: path) }
            assertDataError(path, contains: "beyond the end of its message") { _ = try Inspector.describe(path: path) }
        }
        // Loading reads the model's tensors only: the extra tensor is not its concern.
        let model = try smallModel()
        for (name, message) in [("attribute-array.h5", "holds 4096 values"),
                                ("global-heap-free-space-empty.h5", "global heap collection"),
                                ("tensor-not-written.h5", "'/model/quantizer/codebook' is incomplete")] {
            let path = built + "/" + name
            assertDataError(path, contains: message) {
                _ = try Checkpoint.load(path: path, into: model, optimizer: Adam(count: model.parameters.count))
            }
        }
    }

    /// A group linked into itself is listed once; the checkpoint around it is fine.
    func testGroupCycleIsWalkedOnce() throws {
        let path = try buildRegressions() + "/checkpoint/group-cycle-verifies.h5"
        XCTAssertNoThrow(try Checkpoint.verify(path: path))
        let description = try Inspector.describe(path: path)
        XCTAssertEqual(description.components(separatedBy: "/model/encoder/conv/weight").count, 2, description)
        let model = try smallModel()
        XCTAssertNoThrow(try Checkpoint.load(path: path, into: model, optimizer: nil))
        XCTAssertEqual(HDF5File.openObjectCount, 0)
    }

    /// Valid files pass every check: h5py's layouts (chunked, gzip, shuffle, contiguous, the newest
    /// file format) read back exactly, for images of one size and of different sizes.
    func testValidFilesStillRead() throws {
        let folder = try temporaryFolder("valid")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", Self.packageRoot.appendingPathComponent("Tests/Fuzz/make_corpus.py").path, folder]
        try process.run()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
        let files = try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
        XCTAssertEqual(files.count, 12)
        for name in files {
            let path = folder + "/" + name
            XCTAssertNoThrow(try readLikeTraining(path), name)
            if name.hasPrefix("variable") {
                let dataset = try VariableSizeDataset(paths: [path])
                XCTAssertEqual(dataset.hasLabels, name.contains("labels"), name)
                XCTAssertEqual((0..<dataset.count).map { dataset.imageSize($0).height }, [5, 4, 9], name)
                for index in 0..<dataset.count {
                    let (h, w) = dataset.imageSize(index)
                    var values = [Float](repeating: 0, count: h * w * dataset.channels)
                    try values.withUnsafeMutableBufferPointer {
                        try dataset.readRegion(index: index, top: 0, left: 0, height: h, width: w, into: $0.baseAddress!)
                    }
                    XCTAssertTrue(values.allSatisfy { $0 >= -0.5 && $0 <= 0.5 }, name)
                }
                XCTAssertNoThrow(try Inspector.describe(path: path), name)
                continue
            }
            let dataset = try ImageDataset(paths: [path])
            XCTAssertEqual(dataset.hasLabels, name.contains("labels"), name)
            var values = [Float](repeating: 0, count: dataset.count * dataset.imageElements)
            try values.withUnsafeMutableBufferPointer { try dataset.read(indices: Array(0..<dataset.count), into: $0.baseAddress!) }
            XCTAssertTrue(values.allSatisfy { $0 >= -0.5 && $0 <= 0.5 }, name)
            XCTAssertNoThrow(try Inspector.describe(path: path), name)
        }
        XCTAssertEqual(HDF5File.openObjectCount, 0)
    }
}
