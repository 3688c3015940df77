import Data
import Dist
import Foundation
import Model
import Training
import XCTest

/// Training on random crops (`--crop`, `--augment`) of images of different sizes and of one size,
/// in process: resume, the stored settings, validation on centre crops, the refusals.
final class CropTrainingTests: XCTestCase {
    /// `count` grey images of soft blobs, of sizes from 16 to 28 on each side, as images of
    /// different sizes.
    static func photos(_ name: String, count: Int = 48, seed: UInt64 = 5) throws -> String {
        let path = try TrainingFixtures.dataFolder.get() + "/\(name).h5"
        var images: [[UInt8]] = [], shapes: [(height: Int, width: Int, channels: Int)] = []
        for n in 0..<count {
            var random = SplitMix64(seed: seed, stream: UInt64(n))
            let h = 16 + random.below(13), w = 16 + random.below(13)
            let (cy, cx) = (Double(random.uniform(3, Float(h) - 3)), Double(random.uniform(3, Float(w) - 3)))
            let radius = Double(random.uniform(2, 7)), level = Double(random.uniform(0.3, 1))
            var pixels = [UInt8](repeating: 0, count: h * w)
            for y in 0..<h { for x in 0..<w {
                let d = ((Double(y) - cy) * (Double(y) - cy) + (Double(x) - cx) * (Double(x) - cx)).squareRoot()
                pixels[y * w + x] = UInt8(max(0, min(255, (level / (1 + exp((d - radius) * 1.5)) * 255).rounded())))
            } }
            images.append(pixels)
            shapes.append((h, w, 1))
        }
        try VariableSizeDataset.write(path: path, images: images, shapes: shapes, chunkBytes: 4096)
        return path
    }

    /// Six steps straight, or three and three more resumed without the crop flags, end bit for bit
    /// in the same state: crops, dihedral turns and corruptions come back from the checkpoint.
    func testCropRunsResumeBitIdenticallyWithTheirStoredSettings() throws {
        let data = try Self.photos("crop-resume")
        var options = TrainingFixtures.options(data: data, out: try TrainingFixtures.folder("crop-straight"), steps: 6)
        options.crop = 16
        options.augment = .dihedral
        options.corrupt = "noise:0.1,mask:0.25"
        options.seed = 4
        options.givenFlags = ["--crop", "--augment", "--corrupt", "--seed"]
        let (straight, whole) = try TrainingFixtures.train(options)
        XCTAssertEqual(whole.lastStep, 6)
        XCTAssertEqual(straight.configuration.data.crop, 16)
        XCTAssertEqual(straight.configuration.data.augment, "dihedral")
        XCTAssertEqual([straight.model.configuration.height, straight.model.configuration.width, straight.model.configuration.channels], [16, 16, 1])
        XCTAssertEqual(straight.configuration.data.identity?.shape, [0, 0, 1])
        XCTAssertTrue(straight.configuration.json().contains("\"augment\":\"dihedral\",\"corrupt\":\"noise:0.1,mask:0.25\",\"crop\":16"),
                      straight.configuration.json())

        options.out = try TrainingFixtures.folder("crop-interrupted")
        options.steps = 3
        try TrainingFixtures.train(options)
        var resumed = TrainingFixtures.options(data: data, out: options.out, steps: 6)
        resumed.resume = "auto"
        let (continued, second) = try TrainingFixtures.train(resumed)
        XCTAssertEqual(second.firstStep, 3)
        XCTAssertEqual(continued.configuration.data.crop, 16)
        XCTAssertEqual(continued.configuration.data.augment, "dihedral")
        TrainingFixtures.assertBitIdentical(TrainingFixtures.snapshot(continued.state), TrainingFixtures.snapshot(straight.state))
        XCTAssertEqual(second.finalLoss, whole.finalLoss)

        // Another augmentation would change the stream: refused, like another crop.
        resumed.steps = 7
        resumed.crop = 8
        resumed.augment = .flips
        resumed.givenFlags = ["--crop", "--augment"]
        XCTAssertThrowsError(try TrainingFixtures.train(resumed)) { error in
            let message = "\(error)"
            XCTAssertTrue(message.contains("--crop 8 contradicts \(options.out)/checkpoints/step-00000006.h5, which was trained with --crop 16"), message)
            XCTAssertTrue(message.contains("--augment flips contradicts"), message)
            XCTAssertTrue(message.contains("which was trained with --augment dihedral"), message)
        }
        // A run of whole images resumed with --crop is refused as well.
        let plain = TrainingFixtures.options(data: try TrainingFixtures.blobs("crop-whole"), out: try TrainingFixtures.folder("crop-whole"), steps: 1)
        try TrainingFixtures.train(plain)
        var cropped = plain
        cropped.resume = "auto"
        cropped.steps = 2
        cropped.crop = 8
        cropped.givenFlags = ["--crop"]
        XCTAssertThrowsError(try TrainingFixtures.train(cropped)) { error in
            XCTAssertTrue("\(error)".contains("--crop 8 contradicts"), "\(error)")
            XCTAssertTrue("\(error)".contains("which was trained without --crop"), "\(error)")
        }
    }

    /// Images of different sizes need --crop; the crop must fit the smallest image and the
    /// model's divisibility; --augment needs --crop. Images of one size take crops as well.
    func testRefusalsAndCropsOfImagesOfOneSize() throws {
        let data = try Self.photos("crop-refusals")
        var options = TrainingFixtures.options(data: data, out: try TrainingFixtures.folder("crop-refusals"), steps: 1)
        XCTAssertThrowsError(try TrainingFixtures.train(options)) { error in
            XCTAssertEqual("\(error)", "\(data) holds images of different sizes; train on random crops of them with --crop S (e.g. --crop 64)")
        }
        options.crop = 18
        XCTAssertThrowsError(try TrainingFixtures.train(options)) { error in
            XCTAssertEqual("\(error)", "--crop 18 is not divisible by 2^down = 4; choose a multiple of 4")
        }
        options.crop = 20
        XCTAssertThrowsError(try TrainingFixtures.train(options)) { error in
            XCTAssertTrue("\(error)".hasPrefix("--crop 20: image "), "\(error)")
            XCTAssertTrue("\(error)".contains("(the smallest image of --data)"), "\(error)")
        }
        options.crop = nil
        options.augment = .flips
        XCTAssertThrowsError(try TrainingFixtures.train(options)) { error in
            XCTAssertEqual("\(error)", "--augment flips turns training crops; it needs --crop S")
        }

        let blobs = try TrainingFixtures.blobs("crop-one-size")
        var fixed = TrainingFixtures.options(data: blobs, out: try TrainingFixtures.folder("crop-one-size"), steps: 2)
        fixed.crop = 12
        fixed.augment = .flips
        fixed.validationData = blobs  // 16x16 images: validated on their centre 12x12
        let (trainer, summary) = try TrainingFixtures.train(fixed)
        XCTAssertEqual(summary.lastStep, 2)
        XCTAssertEqual([trainer.model.configuration.height, trainer.model.configuration.width], [12, 12])
        XCTAssertEqual(summary.validation?.images, 96)
        fixed.crop = 20
        fixed.out = try TrainingFixtures.folder("crop-one-size-large")
        XCTAssertThrowsError(try TrainingFixtures.train(fixed)) { error in
            XCTAssertTrue("\(error)".hasPrefix("--crop 20: image 0 of \(blobs) is 16x16, smaller than 20x20"), "\(error)")
        }
    }

    /// A few photos fill many batches with --crops-per-image, stored and restored like the crop;
    /// without it the run says so.
    func testSeveralCropsPerImageFillTheBatches() throws {
        let data = try Self.photos("crop-few", count: 5)
        var options = TrainingFixtures.options(data: data, out: try TrainingFixtures.folder("crop-few"), steps: 3)
        options.crop = 16
        XCTAssertThrowsError(try TrainingFixtures.train(options)) { error in
            XCTAssertEqual("\(error)", "--data holds 5 images and 5 crops per epoch, fewer than one global batch of 8; take several crops of every image with --crops-per-image K (e.g. 8) or lower --global-batch-size")
        }
        options.cropsPerImage = 4
        options.givenFlags = ["--crops-per-image"]
        let (trainer, summary) = try TrainingFixtures.train(options)
        XCTAssertEqual(summary.lastStep, 3)
        XCTAssertEqual(trainer.configuration.data.cropsPerImage, 4)
        XCTAssertEqual(trainer.configuration.data.datasetSize, 20)
        var resumed = TrainingFixtures.options(data: data, out: options.out, steps: 4)
        resumed.resume = "auto"
        XCTAssertEqual(try TrainingFixtures.train(resumed).0.configuration.data.cropsPerImage, 4)
        resumed.steps = 5
        resumed.cropsPerImage = 2
        resumed.givenFlags = ["--crops-per-image"]
        XCTAssertThrowsError(try TrainingFixtures.train(resumed)) { error in
            XCTAssertTrue("\(error)".contains("--crops-per-image 2 contradicts"), "\(error)")
            XCTAssertTrue("\(error)".contains("which was trained with --crops-per-image 4"), "\(error)")
        }
        var plain = TrainingFixtures.options(data: try TrainingFixtures.blobs("crop-few-plain"), out: try TrainingFixtures.folder("crop-few-plain"), steps: 1)
        plain.cropsPerImage = 2
        XCTAssertThrowsError(try TrainingFixtures.train(plain)) { error in
            XCTAssertEqual("\(error)", "--crops-per-image takes several crops of every image; it needs --crop S")
        }
    }

    /// --val of images of different sizes is validated on their centre crops: the figures equal
    /// `vqvae eval`'s on a file of exactly those crops.
    func testValidationOnCentreCrops() throws {
        let data = try Self.photos("crop-val-train")
        let val = try Self.photos("crop-val", count: 12, seed: 9)
        var options = TrainingFixtures.options(data: data, out: try TrainingFixtures.folder("crop-val"), steps: 2)
        options.crop = 16
        options.validationData = val
        options.validationEvery = 2
        let (trainer, summary) = try TrainingFixtures.train(options)
        let figures = try XCTUnwrap(summary.validation)

        // The centre crops written as a file of one size, evaluated by `eval` on the checkpoint.
        let files = try VariableSizeDataset(paths: [val])
        var crops: [UInt8] = []
        let region = FloatBuffer(count: 16 * 16)
        for index in 0..<files.count {
            let (h, w) = files.imageSize(index)
            try files.readRegion(index: index, top: (h - 16) / 2, left: (w - 16) / 2, height: 16, width: 16, into: region.pointer)
            crops += region.array.map { UInt8((($0 + 0.5) * 255).rounded()) }
        }
        let centre = try TrainingFixtures.dataFolder.get() + "/crop-val-centres.h5"
        try ImageDataset.writeUInt8(path: centre, images: crops, shape: [files.count, 16, 16, 1])
        var evaluation = EvaluationOptions()
        evaluation.checkpoint = summary.checkpoint
        evaluation.data = [centre]
        evaluation.batch = 8  // validation's chunks (the run's batch per rank): the same sums in the same order
        let report = try Evaluation.run(evaluation, communicator: try Communicator())
        XCTAssertEqual(report.figures, figures)
        XCTAssertEqual(figures.images, 12)
        XCTAssertEqual(trainer.model.configuration.height, 16)
    }
}
