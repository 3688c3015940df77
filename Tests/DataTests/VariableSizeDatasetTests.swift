import Foundation
import XCTest
@testable import Data
import Model

/// Images of different sizes (`pixels`, `shapes`, `offsets`): reading rectangles of them, every
/// malformed file as one clear error, and the random training crops as a pure function of
/// `(seed, epoch, index)`.
final class VariableSizeDatasetTests: XCTestCase {
    func folder(_ name: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("vqvae-variable-\(getpid())-\(name)").path
        try? FileManager.default.removeItem(atPath: path)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    typealias Shape = (height: Int, width: Int, channels: Int)

    /// `count` images of sizes from `(seed, n)`, between `low` and `high` on each side, their
    /// bytes a function of position (so any misplaced read shows).
    func images(count: Int, channels: Int, low: Int = 9, high: Int = 40, seed: UInt64 = 1) -> ([[UInt8]], [Shape]) {
        var pixels: [[UInt8]] = [], shapes: [Shape] = []
        for n in 0..<count {
            var random = SplitMix64(seed: seed, stream: UInt64(n))
            let h = low + random.below(high - low + 1), w = low + random.below(high - low + 1)
            shapes.append((h, w, channels))
            pixels.append((0..<(h * w * channels)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ n &* 7 &+ Int(seed)) })
        }
        return (pixels, shapes)
    }

    /// The `h x w` rectangle at `(top, left)` of `image` (`H x W x C`), normalised: the reference.
    func naiveCrop(_ image: [UInt8], shape: Shape, top: Int, left: Int, height: Int, width: Int) -> [Float] {
        var result: [Float] = []
        for y in top..<(top + height) {
            for x in left..<(left + width) {
                for c in 0..<shape.channels { result.append(Float(image[(y * shape.width + x) * shape.channels + c]) / 255 - 0.5) }
            }
        }
        return result
    }

    /// Mirror left-right (when `mirrored`), then `rotations` clockwise quarter turns, written out
    /// with the formulas of a square `S x S` image: the reference for `Dihedral`.
    func naiveTurn(_ image: [Float], side s: Int, channels: Int, rotations: Int, mirrored: Bool) -> [Float] {
        func at(_ values: [Float], _ y: Int, _ x: Int, _ c: Int) -> Float { values[(y * s + x) * channels + c] }
        var current = image
        if mirrored {
            var next = current
            for y in 0..<s { for x in 0..<s { for c in 0..<channels { next[(y * s + x) * channels + c] = at(current, y, s - 1 - x, c) } } }
            current = next
        }
        for _ in 0..<rotations {
            // Clockwise: the output's row y, column x is the input's row s-1-x, column y.
            var next = current
            for y in 0..<s { for x in 0..<s { for c in 0..<channels { next[(y * s + x) * channels + c] = at(current, s - 1 - x, y, c) } } }
            current = next
        }
        return current
    }

    func read(_ files: any ImageFiles, index: Int, top: Int, left: Int, height: Int, width: Int) throws -> [Float] {
        let out = FloatBuffer(count: height * width * files.channels)
        try files.readRegion(index: index, top: top, left: left, height: height, width: width, into: out.pointer)
        return out.array
    }

    /// Two files (small chunks, one contiguous-sized) form one dataset: sizes, labels and every
    /// rectangle read match the bytes written; `openImageFiles` picks the layout; a rectangle
    /// outside an image is refused.
    func testReadsRectanglesOfImagesOfDifferentSizes() throws {
        let dir = try folder("read")
        let (a, aShapes) = images(count: 7, channels: 3, seed: 1)
        let (b, bShapes) = images(count: 5, channels: 3, seed: 2)
        try VariableSizeDataset.write(path: dir + "/a.h5", images: a, shapes: aShapes, labels: (0..<7).map { Int64($0) }, chunkBytes: 1000)
        try VariableSizeDataset.write(path: dir + "/b.h5", images: b, shapes: bShapes, labels: (7..<12).map { Int64($0) }, chunkBytes: 1 << 20)
        let opened = try openImageFiles(paths: [dir + "/a.h5", dir + "/b.h5"])
        let dataset = try XCTUnwrap(opened as? VariableSizeDataset)
        XCTAssertEqual(dataset.count, 12)
        XCTAssertEqual(dataset.channels, 3)
        XCTAssertEqual(dataset.fileImageCounts, [7, 5])
        XCTAssertTrue(dataset.hasLabels)
        XCTAssertNil(dataset.fixedSize)
        XCTAssertEqual(try dataset.labels(indices: [11, 0, 1, 2, 7, 8]), [11, 0, 1, 2, 7, 8])
        let all = a + b, shapes = aShapes + bShapes
        let smallest = shapes.indices.min { min(shapes[$0].height, shapes[$0].width) < min(shapes[$1].height, shapes[$1].width) }!
        XCTAssertEqual(dataset.smallestImage.index, smallest)
        XCTAssertEqual(dataset.describeImage(8), "image 1 of \(dir)/b.h5")
        for index in 0..<12 {
            let shape = shapes[index]
            XCTAssertEqual(dataset.imageSize(index).height, shape.height)
            XCTAssertEqual(dataset.imageSize(index).width, shape.width)
            // The whole image, a corner, and an inner rectangle.
            for (top, left, h, w) in [(0, 0, shape.height, shape.width), (shape.height - 3, shape.width - 5, 3, 5),
                                      (2, 1, shape.height / 2, shape.width / 3)] {
                XCTAssertEqual(try read(dataset, index: index, top: top, left: left, height: h, width: w),
                               naiveCrop(all[index], shape: shape, top: top, left: left, height: h, width: w), "image \(index)")
            }
        }
        XCTAssertThrowsError(try read(dataset, index: 3, top: 1, left: 0, height: shapes[3].height, width: 2)) { error in
            XCTAssertTrue("\(error)".contains("is outside its \(shapes[3].height)x\(shapes[3].width) pixels"), "\(error)")
        }
        let identity = try dataset.identity()
        XCTAssertEqual(identity.shape, [0, 0, 3])
        XCTAssertEqual(identity.files.map(\.images), [7, 5])
        XCTAssertEqual(try VariableSizeDataset(paths: [dir + "/a.h5", dir + "/b.h5"]).identity(), identity)
        XCTAssertNotEqual(try VariableSizeDataset(paths: [dir + "/b.h5", dir + "/a.h5"]).identity().sampleFingerprint,
                          identity.sampleFingerprint)
    }

    /// Rectangles of a fixed-size dataset (uint8 and float32) are read as selections of `images`.
    func testRectanglesOfImagesOfOneSize() throws {
        let dir = try folder("fixed")
        let shape = [4, 12, 10, 3]
        let bytes = (0..<shape.reduce(1, *)).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        try ImageDataset.writeUInt8(path: dir + "/u.h5", images: bytes, shape: shape)
        let opened = try openImageFiles(paths: [dir + "/u.h5"])
        XCTAssertTrue(opened is ImageDataset)
        let per = 12 * 10 * 3
        for index in 0..<4 {
            let image = Array(bytes[(index * per)..<((index + 1) * per)])
            XCTAssertEqual(try read(opened, index: index, top: 3, left: 2, height: 8, width: 8),
                           naiveCrop(image, shape: (12, 10, 3), top: 3, left: 2, height: 8, width: 8))
        }
        XCTAssertThrowsError(try read(opened, index: 0, top: 5, left: 0, height: 8, width: 8))
    }

    /// Writes a file of this layout from raw parts; nil leaves a dataset out. Wrong types and
    /// ranks are written as given.
    enum Part {
        case bytes([UInt8], shape: [Int])
        case integers([Int64], shape: [Int])
        case floats([Float], shape: [Int])
    }

    func writeRaw(_ path: String, _ datasets: [String: Part]) throws {
        let file = try HDF5File.create(path)
        for (name, part) in datasets.sorted(by: { $0.key < $1.key }) {
            switch part {
            case .bytes(let values, let shape):
                try values.withUnsafeBufferPointer { try file.writeBytes(name, shape: shape, rowsPerChunk: 64, from: $0.baseAddress!) }
            case .integers(let values, let shape):
                try file.writeInt64(name, shape: shape, values: values)
            case .floats(let values, let shape):
                try values.withUnsafeBufferPointer { try file.writeFloats(name, shape: shape, from: $0.baseAddress!) }
            }
        }
        try file.close()
    }

    /// Every malformed file is refused on open with one line naming the file and the problem, and
    /// leaves nothing open.
    func testEveryMalformedFileIsOneClearError() throws {
        let dir = try folder("malformed")
        // A valid base: images 2x3x1, 4x2x1 and 1x1x1 (6 + 8 + 1 = 15 bytes).
        let pixels = Part.bytes((0..<15).map { UInt8($0) }, shape: [15])
        let shapes: [Int64] = [2, 3, 1, 4, 2, 1, 1, 1, 1]
        let offsets: [Int64] = [0, 6, 14, 15]
        let good: [String: Part] = ["pixels": pixels, "shapes": .integers(shapes, shape: [3, 3]),
                                    "offsets": .integers(offsets, shape: [4])]
        func variant(_ changes: [String: Part?]) -> [String: Part] {
            var result = good
            for (name, part) in changes { result[name] = part }
            return result
        }
        var replacedShapes = shapes
        let cases: [(String, [String: Part], String)] = [
            ("no-pixels", variant(["pixels": nil]), "no dataset 'pixels'"),
            ("no-shapes", variant(["shapes": nil]), "no dataset 'shapes'"),
            ("no-offsets", variant(["offsets": nil]), "no dataset 'offsets'"),
            ("pixels-rank", variant(["pixels": .bytes((0..<15).map { UInt8($0) }, shape: [3, 5])]), "'pixels' has shape [3, 5]; expected one dimension"),
            ("pixels-dtype", variant(["pixels": .floats([Float](repeating: 0, count: 15), shape: [15])]), "'pixels' has dtype float32; expected uint8"),
            ("shapes-rank", variant(["shapes": .integers(shapes, shape: [9])]), "'shapes' has shape [9]; expected (N, 3)"),
            ("shapes-columns", variant(["shapes": .integers(Array(shapes.prefix(6)), shape: [3, 2])]), "'shapes' has shape [3, 2]; expected (N, 3)"),
            ("shapes-dtype", variant(["shapes": .floats(shapes.map(Float.init), shape: [3, 3])]), "'shapes' has dtype float32; expected integers"),
            ("offsets-rank", variant(["offsets": .integers(offsets, shape: [2, 2])]), "'offsets' has shape [2, 2]"),
            ("offsets-dtype", variant(["offsets": .floats(offsets.map(Float.init), shape: [4])]), "'offsets' has shape [4] and dtype float32; expected (N + 1,) integers"),
            ("offsets-count", variant(["offsets": .integers([0, 6, 14], shape: [3])]), "'offsets' holds 3 values for 3 images in 'shapes'; expected N + 1 = 4"),
            ("offsets-start", variant(["offsets": .integers([1, 7, 15, 16], shape: [4])]), "'offsets' starts at 1, not 0"),
            ("offsets-step", variant(["offsets": .integers([0, 6, 13, 15], shape: [4])]), "'offsets' goes from 6 to 13 for image 1, but its 4x2x1 pixels take 8 bytes"),
            ("offsets-end", variant(["pixels": .bytes([UInt8](repeating: 0, count: 16), shape: [16])]), "'offsets' ends at 15 but 'pixels' holds 16 bytes"),
            ("zero-height", variant(["shapes": .integers({ replacedShapes[3] = 0; return replacedShapes }(), shape: [3, 3])]), "image 1 has size 0x2x1 in 'shapes'; H, W and C must be positive"),
            ("negative-width", variant(["shapes": .integers({ replacedShapes = shapes; replacedShapes[1] = -3; return replacedShapes }(), shape: [3, 3])]), "image 0 has size 2x-3x1 in 'shapes'"),
            ("two-channels", variant(["shapes": .integers([2, 3, 2, 4, 2, 2, 1, 1, 2], shape: [3, 3]),
                                      "offsets": .integers([0, 12, 28, 30], shape: [4]), "pixels": .bytes([UInt8](repeating: 0, count: 30), shape: [30])]),
             "image 0 has 2 channels in 'shapes'; expected C = 1 or 3"),
            ("mixed-channels", variant(["shapes": .integers([2, 3, 1, 4, 2, 3, 1, 1, 1], shape: [3, 3]),
                                        "offsets": .integers([0, 6, 30, 31], shape: [4]), "pixels": .bytes([UInt8](repeating: 0, count: 31), shape: [31])]),
             "image 1 has C = 3 but image 0 has C = 1; all images of a dataset share C"),
            ("labels-count", variant(["labels": .integers([0, 1], shape: [2])]), "'labels' has shape [2] and dtype int64; expected (3,) integers, one per image"),
            ("labels-dtype", variant(["labels": .floats([0, 1, 2], shape: [3])]), "'labels' has shape [3] and dtype float32; expected (3,) integers"),
            ("empty", ["pixels": .bytes([0], shape: [1]), "shapes": .integers([0, 0, 0], shape: [1, 3]),
                       "offsets": .integers([0, 0], shape: [2])], "image 0 has size 0x0x0"),
        ]
        for (name, datasets, expected) in cases {
            let path = "\(dir)/\(name).h5"
            try writeRaw(path, datasets)
            XCTAssertThrowsError(try openImageFiles(paths: [path]), name) { error in
                XCTAssertTrue(error is DataError, "\(name): \(type(of: error))")
                let message = "\(error)"
                XCTAssertTrue(message.hasPrefix("\(path): "), "\(name): \(message)")
                XCTAssertTrue(message.contains(expected), "\(name): '\(message)' does not say '\(expected)'")
                XCTAssertFalse(message.contains("\n"), message)
            }
            XCTAssertEqual(HDF5File.openObjectCount, 0, "\(name): HDF5 objects left open")
        }
        // Several files: the layout and C must agree.
        try writeRaw(dir + "/good.h5", good)
        let (rgb, rgbShapes) = images(count: 2, channels: 3)
        try VariableSizeDataset.write(path: dir + "/rgb.h5", images: rgb, shapes: rgbShapes)
        try ImageDataset.writeUInt8(path: dir + "/fixed.h5", images: [UInt8](repeating: 0, count: 16), shape: [1, 4, 4, 1])
        for (paths, expected) in [([dir + "/good.h5", dir + "/rgb.h5"], "\(dir)/rgb.h5: images have C = 3 but \(dir)/good.h5 has C = 1; all files must agree"),
                                  ([dir + "/good.h5", dir + "/fixed.h5"], "\(dir)/fixed.h5: holds 'images' of one size but \(dir)/good.h5 holds images of different sizes; all files must use one layout"),
                                  ([dir + "/fixed.h5", dir + "/good.h5"], "\(dir)/good.h5: holds images of different sizes ('pixels', 'shapes', 'offsets') but \(dir)/fixed.h5 holds 'images' of one size; all files must use one layout")] {
            XCTAssertThrowsError(try openImageFiles(paths: paths)) { error in XCTAssertEqual("\(error)", expected) }
            XCTAssertEqual(HDF5File.openObjectCount, 0)
        }
        // A file of no images alone is "no images"; commands that read one size say what the file holds.
        try writeRaw(dir + "/none.h5", ["pixels": .bytes([], shape: [0]), "shapes": .integers([], shape: [0, 3]),
                                        "offsets": .integers([0], shape: [1])])
        XCTAssertThrowsError(try openImageFiles(paths: [dir + "/none.h5"])) { error in
            XCTAssertEqual("\(error)", "\(dir)/none.h5: the dataset holds no images")
        }
        XCTAssertThrowsError(try ImageDataset(paths: [dir + "/good.h5"])) { error in
            XCTAssertTrue("\(error)".contains("holds images of different sizes ('pixels', 'shapes', 'offsets'); this command reads images of one size"), "\(error)")
        }
        XCTAssertNotNil(try? openImageFiles(paths: [dir + "/good.h5"]))
    }

    /// A dataset of random images, its training crops through the sampler and prefetcher of
    /// `worldSize` ranks (their shares concatenated) from `firstStep` to `endStep`.
    func trainingBytes(_ files: any ImageFiles, crop: Int, augmentation: Augmentation, corrupt: String, worldSize: Int,
                       depth: Int, firstStep: Int, endStep: Int) throws -> [[Float]] {
        var steps = [[Float]](repeating: [], count: endStep - firstStep)
        for rank in 0..<worldSize {
            let source = try CroppedImages(files: files, size: crop, seed: 42, augmentation: augmentation)
            let sampler = try ShardedSampler(datasetSize: files.count, globalBatchSize: 6, seed: 42, shuffle: true, tail: .wrap,
                                             rank: rank, worldSize: worldSize)
            let prefetcher = BatchPrefetcher(dataset: source, sampler: sampler, corruptions: try CorruptionPipeline(spec: corrupt),
                                             seed: 42, firstStep: firstStep, endStep: endStep, depth: depth)
            defer { prefetcher.stop() }
            for step in firstStep..<endStep {
                let batch = try prefetcher.batch(step: step)
                steps[step - firstStep] += Array(UnsafeBufferPointer(start: batch.input, count: batch.clean.count))
                    + batch.clean.array
            }
        }
        return steps
    }

    /// What a step sees is the same bytes on 1 and 2 ranks, with and without prefetching, and from
    /// a run that starts (resumes) at a later step; augmentation and corruption included.
    func testCropsDoNotDependOnRanksPrefetchingOrResuming() throws {
        let dir = try folder("pure")
        let (pixels, shapes) = images(count: 10, channels: 3, low: 8, high: 30)
        try VariableSizeDataset.write(path: dir + "/v.h5", images: pixels, shapes: shapes, chunkBytes: 700)
        let files = try openImageFiles(paths: [dir + "/v.h5"])
        for augmentation in Augmentation.allCases {
            let one = try trainingBytes(files, crop: 8, augmentation: augmentation, corrupt: "noise:0.1,mask:0.2", worldSize: 1,
                                        depth: 0, firstStep: 0, endStep: 6)
            let two = try trainingBytes(files, crop: 8, augmentation: augmentation, corrupt: "noise:0.1,mask:0.2", worldSize: 2,
                                        depth: 3, firstStep: 0, endStep: 6)
            let resumed = try trainingBytes(files, crop: 8, augmentation: augmentation, corrupt: "noise:0.1,mask:0.2", worldSize: 2,
                                            depth: 1, firstStep: 4, endStep: 6)
            // The rank shares concatenate as [input | clean] per rank; compare per sample instead.
            func perSample(_ steps: [[Float]], ranks: Int) -> [[Float]] {
                let image = 8 * 8 * 3, local = 6 / ranks
                return steps.map { step in
                    var inputs: [Float] = [], cleans: [Float] = []
                    for r in 0..<ranks {
                        let base = r * 2 * local * image
                        inputs += step[base..<(base + local * image)]
                        cleans += step[(base + local * image)..<(base + 2 * local * image)]
                    }
                    return inputs + cleans
                }
            }
            let a = perSample(one, ranks: 1), b = perSample(two, ranks: 2), c = perSample(resumed, ranks: 2)
            XCTAssertEqual(a.map { $0.map(\.bitPattern) }, b.map { $0.map(\.bitPattern) }, "\(augmentation): 1 vs 2 ranks")
            XCTAssertEqual(Array(a[4...]).map { $0.map(\.bitPattern) }, c.map { $0.map(\.bitPattern) }, "\(augmentation): resumed at step 4")
        }
    }

    /// The placement is a function of `(seed, epoch, index)`: every position and every turn
    /// occurs, and a dihedral crop equals the reference turn of the naive crop at that position.
    func testDihedralCropEqualsTheReferenceTurnOfTheNaiveCrop() throws {
        let dir = try folder("dihedral")
        let (pixels, shapes) = images(count: 6, channels: 3, low: 10, high: 16)
        try VariableSizeDataset.write(path: dir + "/v.h5", images: pixels, shapes: shapes)
        let files = try openImageFiles(paths: [dir + "/v.h5"])
        let size = 8
        let cropped = try CroppedImages(files: files, size: size, seed: 9, augmentation: .dihedral)
        var turns = Set<Int>(), tops = Set<Int>()
        for epoch in 0..<100 {
            let samples = (0..<6).map { (epoch: epoch, index: $0) }
            let out = FloatBuffer(count: 6 * size * size * 3)
            try cropped.read(samples: samples, into: out.pointer)
            for index in 0..<6 {
                let placement = cropped.placement(epoch: epoch, index: index)
                XCTAssertEqual(placement, CroppedImages.randomPlacement(seed: 9, epoch: epoch, index: index, imageHeight: shapes[index].height,
                                                                        imageWidth: shapes[index].width, size: size, augmentation: .dihedral))
                XCTAssertLessThanOrEqual(placement.top + size, shapes[index].height)
                XCTAssertLessThanOrEqual(placement.left + size, shapes[index].width)
                let naive = naiveCrop(pixels[index], shape: shapes[index], top: placement.top, left: placement.left, height: size, width: size)
                let turn = placement.transform
                let expected = naiveTurn(naive, side: size, channels: 3, rotations: turn.rotations, mirrored: turn.mirrored)
                XCTAssertEqual(Array(UnsafeBufferPointer(start: out.pointer + index * size * size * 3, count: size * size * 3)), expected,
                               "epoch \(epoch) image \(index) \(turn)")
                XCTAssertEqual(turn.apply(naive, height: size, width: size, channels: 3), expected)
                turns.insert(turn.rotations + (turn.mirrored ? 4 : 0))
                if index == 0 { tops.insert(placement.top) }
            }
        }
        XCTAssertEqual(turns, Set(0..<8), "every symmetry occurs")
        XCTAssertEqual(tops, Set(0...(shapes[0].height - size)), "every row of image 0 starts a crop")
        // flips only mirror; none never turns; another seed places crops elsewhere.
        let flips = (0..<50).map { CroppedImages.randomPlacement(seed: 9, epoch: $0, index: 0, imageHeight: 20, imageWidth: 20, size: 8, augmentation: .flips) }
        XCTAssertEqual(Set(flips.map(\.transform.rotations)), [0])
        XCTAssertEqual(Set(flips.map(\.transform.mirrored)), [false, true])
        XCTAssertTrue((0..<50).allSatisfy { CroppedImages.randomPlacement(seed: 9, epoch: $0, index: 0, imageHeight: 20, imageWidth: 20, size: 8, augmentation: .none).transform == Dihedral.all[0] })
        // The augmentation draws after the position: the same key places the crop alike.
        XCTAssertEqual(flips.map(\.top), (0..<50).map { CroppedImages.randomPlacement(seed: 9, epoch: $0, index: 0, imageHeight: 20, imageWidth: 20, size: 8, augmentation: .dihedral).top })
        XCTAssertNotEqual(flips.map(\.top), (0..<50).map { CroppedImages.randomPlacement(seed: 10, epoch: $0, index: 0, imageHeight: 20, imageWidth: 20, size: 8, augmentation: .flips).top })
        // Plain reads by index are the centre crops.
        let centre = FloatBuffer(count: size * size * 3)
        try cropped.read(indices: [2], into: centre.pointer)
        XCTAssertEqual(centre.array, naiveCrop(pixels[2], shape: shapes[2], top: (shapes[2].height - size) / 2,
                                               left: (shapes[2].width - size) / 2, height: size, width: size))
    }

    /// With K crops per image, sample `v` is a crop of image `v mod N` keyed by `v`: the K crops
    /// of an image in one epoch are independent draws.
    func testSeveralCropsPerImage() throws {
        let dir = try folder("per-image")
        let (pixels, shapes) = images(count: 3, channels: 1, low: 20, high: 30)
        try VariableSizeDataset.write(path: dir + "/v.h5", images: pixels, shapes: shapes)
        let files = try openImageFiles(paths: [dir + "/v.h5"])
        let cropped = try CroppedImages(files: files, size: 4, seed: 3, augmentation: .flips, cropsPerImage: 5)
        XCTAssertEqual(cropped.count, 15)
        let out = FloatBuffer(count: 15 * 16)
        try cropped.read(samples: (0..<15).map { (epoch: 2, index: $0) }, into: out.pointer)
        var placements: [CropPlacement] = []
        for v in 0..<15 {
            let image = v % 3
            let placement = CroppedImages.randomPlacement(seed: 3, epoch: 2, index: v, imageHeight: shapes[image].height,
                                                          imageWidth: shapes[image].width, size: 4, augmentation: .flips)
            XCTAssertEqual(cropped.placement(epoch: 2, index: v), placement)
            let naive = naiveCrop(pixels[image], shape: shapes[image], top: placement.top, left: placement.left, height: 4, width: 4)
            XCTAssertEqual(Array(UnsafeBufferPointer(start: out.pointer + v * 16, count: 16)),
                           naiveTurn(naive, side: 4, channels: 1, rotations: 0, mirrored: placement.transform.mirrored), "sample \(v)")
            placements.append(placement)
        }
        let imageZero = stride(from: 0, to: 15, by: 3).map { "\(placements[$0].top),\(placements[$0].left)" }
        XCTAssertGreaterThan(Set(imageZero).count, 1, "the 5 crops of image 0 are all in one place: \(imageZero)")
        XCTAssertThrowsError(try CroppedImages(files: files, size: 4, cropsPerImage: 0))
        XCTAssertThrowsError(try CroppedImages(files: files, size: 4, cropsPerImage: Int.max / 2)) { error in
            XCTAssertTrue("\(error)".contains("more samples per epoch than this machine can index"), "\(error)")
        }
    }

    /// A crop larger than the smallest image names that image.
    func testCropLargerThanTheSmallestImageNamesIt() throws {
        let dir = try folder("smallest")
        let (pixels, shapes) = images(count: 8, channels: 1, low: 12, high: 30)
        try VariableSizeDataset.write(path: dir + "/v.h5", images: pixels, shapes: shapes)
        let files = try openImageFiles(paths: [dir + "/v.h5"])
        let smallest = files.smallestImage
        let side = min(smallest.height, smallest.width)
        XCTAssertNoThrow(try CroppedImages(files: files, size: side))
        XCTAssertThrowsError(try CroppedImages(files: files, size: side + 1)) { error in
            XCTAssertEqual("\(error)", "--crop \(side + 1): image \(smallest.index) of \(dir)/v.h5 is \(smallest.height)x\(smallest.width), smaller than \(side + 1)x\(side + 1) (the smallest image of --data); every image must be at least \(side + 1) pixels on both sides")
        }
    }

    /// `inspect` describes the count, the range of sizes, the channels and the labels.
    func testInspectDescribesImagesOfDifferentSizes() throws {
        let dir = try folder("inspect")
        try VariableSizeDataset.write(path: dir + "/v.h5", images: [[UInt8](repeating: 1, count: 12 * 30 * 3), [UInt8](repeating: 2, count: 40 * 9 * 3)],
                                      shapes: [(12, 30, 3), (40, 9, 3)], labels: [4, 7], chunkBytes: 512)
        let text = try Inspector.describe(path: dir + "/v.h5")
        XCTAssertEqual(text, """
            \(dir)/v.h5: image dataset of images of different sizes
              N=2 C=3 uint8, H 12..40, W 9..30; smallest 40x9 (image 1), 2160 pixel bytes
              pixels chunks: (512)  filters: none
              labels: 2 int64, values 4..7, 2 distinct
            """)
    }
}
