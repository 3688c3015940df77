import Data
import Dist
import Foundation
import Model
import Training
import XCTest

/// The trainer in process, asserted on Swift values: resume, non-finite steps, the codebook's
/// start and restarts, validation.
final class TrainerTests: XCTestCase {
    /// Six steps in one run, or three and then three more after `--resume auto`, end in the same
    /// state bit for bit: with shuffling, corruptions, k-means start, dead-code restart and a
    /// prefetching reader.
    func testResumeIsBitIdentical() throws {
        let data = try TrainingFixtures.blobs("resume")
        var options = TrainingFixtures.options(data: data, out: try TrainingFixtures.folder("straight"), steps: 6)
        options.corrupt = "noise:0.1,mask:0.25"
        options.kmeansInit = true
        options.deadCodeThreshold = 0.5
        options.seed = 11
        let (straight, whole) = try TrainingFixtures.train(options)
        XCTAssertEqual(whole.lastStep, 6)

        options.out = try TrainingFixtures.folder("interrupted")
        options.steps = 3
        let (_, first) = try TrainingFixtures.train(options)
        XCTAssertEqual(first.lastStep, 3)
        options.steps = 6
        options.resume = "auto"
        let (resumed, second) = try TrainingFixtures.train(options)
        XCTAssertEqual(second.firstStep, 3)
        XCTAssertEqual(second.lastStep, 6)
        XCTAssertEqual(resumed.state.step, 6)
        XCTAssertEqual(resumed.state.optimizer.step, straight.state.optimizer.step)
        TrainingFixtures.assertBitIdentical(TrainingFixtures.snapshot(resumed.state), TrainingFixtures.snapshot(straight.state))
        XCTAssertEqual(second.finalLoss, whole.finalLoss)
    }

    /// A NaN in step 2's data: with `skipNonFinite` the step's update is skipped and training goes
    /// on (Adam's t lags the step by one); without it the run stops naming the step.
    func testNonFiniteStepIsSkippedOrStopsTheRun() throws {
        let data = try TrainingFixtures.blobs("nonfinite")
        setenv("VQVAE_FAULT", "nan-data:2", 1)
        defer { unsetenv("VQVAE_FAULT") }
        var options = TrainingFixtures.options(data: data, out: try TrainingFixtures.folder("skip"), steps: 4)
        options.skipNonFinite = true
        let (trainer, summary) = try TrainingFixtures.train(options)
        XCTAssertEqual(summary.skippedSteps, 1)
        XCTAssertEqual(summary.lastStep, 4)
        XCTAssertEqual(trainer.state.step, 4)
        XCTAssertEqual(trainer.state.optimizer.step, 3)
        XCTAssertTrue(summary.finalLoss.total.isFinite)
        for buffer in trainer.state.buffers {
            XCTAssertTrue(buffer.buffer.array.allSatisfy(\.isFinite), buffer.group)
        }

        options.skipNonFinite = false
        options.out = try TrainingFixtures.folder("stop")
        XCTAssertThrowsError(try TrainingFixtures.train(options)) { error in
            XCTAssertTrue(error is CollectiveError, "\(error)")
            XCTAssertTrue("\(error)".contains("at step 2"), "\(error)")
        }
    }

    /// k-means start: every code is a centre of the first global batch's encoder outputs, with
    /// `N_k` its cluster's size (summing to the batch's latent vectors) and `M_k = N_k e_k`; the
    /// spec's start has `N = 0` and `M = E`.
    func testKMeansStartAndSpecStart() throws {
        let data = try TrainingFixtures.blobs("kmeans")
        var options = TrainingFixtures.options(data: data, out: try TrainingFixtures.folder("kmeans"), steps: 0)
        options.kmeansInit = true
        let (trainer, _) = try TrainingFixtures.train(options)
        let quantizer = try XCTUnwrap(trainer.model.quantizer)
        let (k, d) = (quantizer.codes, quantizer.dimension)
        let vectors = options.globalBatchSize * trainer.model.latentCount
        let counts = (0..<k).map { Double(quantizer.emaCount[$0]) }
        XCTAssertEqual(counts.reduce(0, +), Double(vectors), accuracy: 1e-3)
        XCTAssertGreaterThan(counts.filter { $0 > 0 }.count, k / 2, "k-means left most codes empty: \(counts)")
        for code in 0..<k where counts[code] > 0 {
            for j in 0..<d {
                XCTAssertEqual(quantizer.emaSum[code * d + j], quantizer.emaCount[code] * quantizer.emaState[code * d + j],
                               accuracy: 1e-4 * max(1, abs(quantizer.emaSum[code * d + j])))
            }
        }

        options.kmeansInit = false
        options.out = try TrainingFixtures.folder("spec-start")
        let (spec, _) = try TrainingFixtures.train(options)
        let specQuantizer = try XCTUnwrap(spec.model.quantizer)
        XCTAssertTrue((0..<k).allSatisfy { specQuantizer.emaCount[$0] == 0 })
        XCTAssertTrue((0..<(k * d)).allSatisfy { specQuantizer.emaSum[$0] == specQuantizer.emaState[$0] })
    }

    /// The defaults: the k-means start and dead-code restart at threshold 1. A first global batch
    /// with fewer latent vectors (2 images of 4x4: 32) than codes (48) starts the codes past them
    /// unused (N_k = 0 at the origin, the counts still summing to the batch), and restart re-seeds
    /// them from distinct vectors of the next batch; the same options give the same codebook, and
    /// no two codes in use are equal.
    func testDefaultStartWithFewerVectorsThanCodes() throws {
        let data = try TrainingFixtures.blobs("few-vectors")
        var options = TrainingFixtures.options(data: data, out: try TrainingFixtures.folder("few-vectors"), steps: 0)
        options.globalBatchSize = 2
        options.architecture.codes = 48
        let (start, _) = try TrainingFixtures.train(options)
        XCTAssertEqual(start.configuration.codebook,
                       RunConfiguration.CodebookControls(kmeansInit: true, kmeansIterations: 10, deadCodeThreshold: 1))
        let quantizer = try XCTUnwrap(start.model.quantizer)
        let counts = (0..<48).map { quantizer.emaCount[$0] }
        XCTAssertEqual(counts.reduce(0, +), 32)
        XCTAssertGreaterThanOrEqual(counts.filter { $0 == 0 }.count, 16, "\(counts)")
        XCTAssertTrue(quantizer.emaState.array.allSatisfy(\.isFinite))
        let rows = (0..<48).map { k in (0..<8).map { quantizer.emaState[k * 8 + $0] } }
        XCTAssertEqual(Set(rows.indices.filter { counts[$0] > 0 }.map { rows[$0] }).count, counts.filter { $0 > 0 }.count,
                       "two codes in use start equal")
        for k in 0..<48 where counts[k] == 0 { XCTAssertEqual(rows[k], [Float](repeating: 0, count: 8) , "unused code \(k)") }

        options.out = try TrainingFixtures.folder("few-vectors-again")
        let (again, _) = try TrainingFixtures.train(options)
        TrainingFixtures.assertBitIdentical(TrainingFixtures.snapshot(again.state), TrainingFixtures.snapshot(start.state))

        // Step 1 trains on the batch k-means placed, whose vectors are codes already: the restart
        // re-seeds from step 2's.
        options.out = try TrainingFixtures.folder("few-vectors-trained")
        options.steps = 2
        let (trained, summary) = try TrainingFixtures.train(options)
        XCTAssertGreaterThan(summary.restartedCodes, 0)
        let after = try XCTUnwrap(trained.model.quantizer)
        let live = (0..<48).filter { after.emaCount[$0] >= 1 }
        XCTAssertGreaterThanOrEqual(live.count, summary.restartedCodes, "re-seeded codes start at N_k = 1")
        let liveRows = live.map { k in (0..<8).map { after.emaState[k * 8 + $0] } }
        XCTAssertEqual(Set(liveRows).count, live.count, "two codes in use are equal after the restart")
    }

    /// With a threshold above any count every code is dead after every step: each is re-seeded to a
    /// vector of the global batch with `N_k` = the threshold.
    func testDeadCodeRestart() throws {
        let data = try TrainingFixtures.blobs("restart")
        var options = TrainingFixtures.options(data: data, out: try TrainingFixtures.folder("restart"), steps: 3)
        options.deadCodeThreshold = 1e6
        let (trainer, summary) = try TrainingFixtures.train(options)
        let quantizer = try XCTUnwrap(trainer.model.quantizer)
        XCTAssertEqual(summary.restartedCodes, 3 * quantizer.codes)
        for code in 0..<quantizer.codes {
            XCTAssertEqual(quantizer.emaCount[code], 1e6)
            for j in 0..<quantizer.dimension {
                let e = quantizer.emaState[code * quantizer.dimension + j]
                XCTAssertEqual(quantizer.emaSum[code * quantizer.dimension + j], 1e6 * e, accuracy: abs(1e6 * e) * 1e-6 + 1e-6)
            }
        }

        options.out = try TrainingFixtures.folder("restart-off")
        options.deadCodeThreshold = 0
        XCTAssertEqual(try TrainingFixtures.train(options).1.restartedCodes, 0)
    }

    /// Validation during training reports what `Evaluation` reports for the final checkpoint with
    /// the same damage, seed and images.
    func testValidationMatchesEvaluationOfTheCheckpoint() throws {
        let data = try TrainingFixtures.blobs("validation-train")
        let validation = try TrainingFixtures.blobs("validation-held-out", count: 20, seed: 99)
        var options = TrainingFixtures.options(data: data, out: try TrainingFixtures.folder("validation"), steps: 4)
        options.validationData = validation
        options.validationEvery = 2
        options.validationLimit = 12
        options.corrupt = "noise:0.1"
        options.seed = 5
        let (_, summary) = try TrainingFixtures.train(options)
        let figures = try XCTUnwrap(summary.validation)
        XCTAssertEqual(figures.images, 12)

        var evaluation = EvaluationOptions()
        evaluation.checkpoint = summary.checkpoint
        evaluation.data = [validation]
        evaluation.corrupt = options.corrupt
        evaluation.seed = options.seed
        evaluation.limit = 12
        evaluation.batch = 8  // validation's chunks (the run's batch per rank): the same sums in the same order
        let report = try Evaluation.run(evaluation, communicator: try Communicator())
        XCTAssertEqual(report.figures, figures)
        XCTAssertTrue(figures.psnr.isFinite && figures.inputPSNR > 0 && figures.inputPSNR < 100, "\(figures)")
    }

    /// A residual model with detail layers: resuming is bit-identical (the detail layers' weights
    /// and Adam moments included), the checkpoint records the architecture, `restore` runs it in
    /// tiles and whole on an image of another size, and `encode` refuses it.
    func testResidualModelResumesBitIdenticallyAndRestores() throws {
        let data = try TrainingFixtures.blobs("residual")
        var options = TrainingFixtures.options(data: data, out: try TrainingFixtures.folder("residual-straight"), steps: 4)
        options.corrupt = "noise:0.05..0.15,holes:3"
        options.architecture.residual = true
        options.architecture.detailLayers = 2
        options.architecture.detailChannels = 8
        options.seed = 12
        let (_, whole, resumed) = try TrainingFixtures.assertResumeIsBitIdentical(options, interrupted: "residual-interrupted")
        XCTAssertTrue(resumed.state.buffers[0].tensors.contains { $0.name == "detail/conv1/weight" })

        let trained = try TrainedModel(checkpoint: whole.checkpoint, batch: 4)
        XCTAssertTrue(trained.configuration.residual)
        XCTAssertEqual(trained.configuration.detailLayers, 2)
        XCTAssertEqual(trained.configuration.detailChannels, 8)

        let folder = try TrainingFixtures.folder("residual-restore")
        let (height, width) = (40, 24)
        let pixels = (0..<(height * width)).map { UInt8(40 + ($0 / width) * 3 + ($0 % width) * 2) }
        try PNGImage(height: height, width: width, channels: 1, pixels: pixels).write(to: folder + "/in.png")
        var outputs: [[UInt8]] = []  // in tiles of 16x16, then whole
        for runWhole in [false, true] {
            var restore = RestoreOptions()
            restore.checkpoint = whole.checkpoint
            restore.input = folder + "/in.png"
            restore.out = folder + (runWhole ? "/whole.png" : "/tiles.png")
            restore.whole = runWhole
            restore.corrupt = "noise:0.1"
            XCTAssertEqual(try Restoration(options: restore, console: Console()).run().restored, 1)
            let image = try PNGImage.read(path: restore.out)
            XCTAssertEqual([image.height, image.width, image.channels], [height, width, 1])
            outputs.append(image.pixels)
        }
        XCTAssertEqual(outputs.count, 2)

        // --mask: a white box and a white line are missing; every other pixel is the input's own.
        var mask = [UInt8](repeating: 0, count: height * width)
        for y in 10..<22 { for x in 4..<14 { mask[y * width + x] = 255 } }
        for x in 0..<width { mask[30 * width + x] = 200 }
        try PNGImage(height: height, width: width, channels: 1, pixels: mask).write(to: folder + "/mask.png")
        var masked = RestoreOptions()
        masked.checkpoint = whole.checkpoint
        masked.input = folder + "/in.png"
        masked.out = folder + "/inpainted.png"
        masked.damagedOut = folder + "/holes.png"
        masked.mask = folder + "/mask.png"
        XCTAssertEqual(try Restoration(options: masked, console: Console()).run().restored, 1)
        let inpainted = try PNGImage.read(path: masked.out).pixels, holes = try PNGImage.read(path: masked.damagedOut!).pixels
        XCTAssertEqual(inpainted.count, pixels.count)
        for i in pixels.indices {
            if mask[i] >= 128 {
                XCTAssertEqual(holes[i], 0, "the hole is filled as in training (black)")
            } else {
                XCTAssertEqual(inpainted[i], pixels[i], "known pixel \(i) is kept")
                XCTAssertEqual(holes[i], pixels[i])
            }
        }
        XCTAssertTrue(pixels.indices.contains { mask[$0] >= 128 && inpainted[$0] != 0 }, "the holes are restored")

        try PNGImage(height: 8, width: 8, channels: 1, pixels: [UInt8](repeating: 255, count: 64)).write(to: folder + "/small-mask.png")
        masked.out = folder + "/other.png"
        masked.damagedOut = nil
        masked.mask = folder + "/small-mask.png"
        XCTAssertThrowsError(try Restoration(options: masked, console: Console()).run()) {
            XCTAssertTrue("\($0)".contains("is 8x8 but --input \(folder)/in.png is 24x40; the mask must have the image's size"), "\($0)")
        }
        masked.input = folder
        masked.out = folder + "/restored-folder"
        XCTAssertThrowsError(try Restoration(options: masked, console: Console())) {
            XCTAssertEqual("\($0)", "--mask needs --input to be one image file (PNG or JPEG), not a folder")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder + "/other.png"))

        var encode = EncodeOptions()
        encode.checkpoint = whole.checkpoint
        encode.data = [data]
        encode.out = folder + "/codes.h5"
        XCTAssertThrowsError(try CodeFiles.encode(encode, console: Console())) {
            XCTAssertTrue("\($0)".contains("is a --residual model"), "\($0)")
        }
    }

    /// A VQ-VAE with U-Net skips and a range of skip weights: resuming is bit-identical (each
    /// image's weight is keyed by the step, not drawn from a running generator), `restore` runs at
    /// two fidelities with different results and refuses one outside [0, 1], and `encode` accepts
    /// it because its range starts at 0 (its codes decode at `w = 0`); a plain model refuses
    /// `--fidelity`.
    func testSkipModelResumesBitIdenticallyAndRestoresAtAnyFidelity() throws {
        let data = try TrainingFixtures.blobs("skips")
        var options = TrainingFixtures.options(data: data, out: try TrainingFixtures.folder("skips-straight"), steps: 4)
        options.corrupt = "noise:0.1"
        options.architecture.skips = true
        options.architecture.skipWeightLow = 0
        options.architecture.skipWeightHigh = 1
        options.seed = 14
        let (_, whole, _) = try TrainingFixtures.assertResumeIsBitIdentical(options, interrupted: "skips-interrupted")
        let trained = try TrainedModel(checkpoint: whole.checkpoint, batch: 4)
        XCTAssertTrue(trained.configuration.skips)
        XCTAssertEqual([trained.configuration.skipWeightLow, trained.configuration.skipWeightHigh], [0, 1])

        let folder = try TrainingFixtures.folder("skips-restore")
        let (height, width) = (24, 40)
        let pixels = (0..<(height * width)).map { UInt8(30 + ($0 / width) * 4 + ($0 % width) * 3) }
        try PNGImage(height: height, width: width, channels: 1, pixels: pixels).write(to: folder + "/in.png")
        var restored: [[UInt8]] = []
        for fidelity in [0.0, 1.0] {
            var restore = RestoreOptions()
            restore.checkpoint = whole.checkpoint
            restore.input = folder + "/in.png"
            restore.out = folder + "/fidelity-\(fidelity).png"
            restore.fidelity = fidelity
            XCTAssertEqual(try Restoration(options: restore, console: Console()).run().restored, 1)
            restored.append(try PNGImage.read(path: restore.out).pixels)
        }
        XCTAssertNotEqual(restored[0], restored[1], "the fidelity changes the restoration")
        var bad = RestoreOptions()
        bad.checkpoint = whole.checkpoint
        bad.input = folder + "/in.png"
        bad.out = folder + "/bad.png"
        bad.fidelity = 1.5
        XCTAssertThrowsError(try Restoration(options: bad, console: Console())) { XCTAssertEqual("\($0)", "--fidelity must be in [0, 1] (got 1.5)") }
        XCTAssertFalse(FileManager.default.fileExists(atPath: bad.out))

        var encode = EncodeOptions()
        encode.checkpoint = whole.checkpoint
        encode.data = [data]
        encode.out = folder + "/codes.h5"
        XCTAssertNoThrow(try CodeFiles.encode(encode, console: Console()))

        var plainOptions = TrainingFixtures.options(data: data, out: try TrainingFixtures.folder("skips-plain"), steps: 1)
        plainOptions.seed = 14
        let (_, plain) = try TrainingFixtures.train(plainOptions)
        bad.checkpoint = plain.checkpoint
        bad.fidelity = 0.5
        XCTAssertThrowsError(try Restoration(options: bad, console: Console())) { XCTAssertTrue("\($0)".contains("--fidelity needs a model trained with --skips"), "\($0)") }
    }

    /// A mask-aware inpainting model trains, resumes bit-identically and validates; `restore --mask`
    /// keeps every known pixel of the photo exactly and fills the marked ones; `--corrupt` other
    /// than mask and holes is refused in one line.
    func testMaskChannelModelResumesBitIdenticallyAndRestoresWithAUsersMask() throws {
        let data = try TrainingFixtures.blobs("mask-channel")
        var options = TrainingFixtures.options(data: data, out: try TrainingFixtures.folder("mask-straight"), steps: 4)
        options.corrupt = "holes:4,mask:0.05..0.2:noise"
        options.architecture.maskChannel = true
        options.architecture.residual = true
        options.validationData = data
        options.validationLimit = 16
        options.validationEvery = 2
        options.seed = 15
        let (_, whole, _) = try TrainingFixtures.assertResumeIsBitIdentical(options, interrupted: "mask-interrupted")
        XCTAssertTrue(try TrainedModel(checkpoint: whole.checkpoint, batch: 4).configuration.maskChannel)
        let validation = try XCTUnwrap(whole.validation)
        XCTAssertGreaterThan(validation.psnr, validation.inputPSNR, "known pixels pasted back and holes filled beat the damaged input")

        let folder = try TrainingFixtures.folder("mask-restore")
        let (height, width) = (24, 40)
        let pixels = (0..<(height * width)).map { UInt8(30 + ($0 / width) * 4 + ($0 % width) * 3) }
        try PNGImage(height: height, width: width, channels: 1, pixels: pixels).write(to: folder + "/in.png")
        let missing = (0..<(height * width)).map { p -> Bool in (8..<14).contains(p / width) && (10..<25).contains(p % width) }
        try PNGImage(height: height, width: width, channels: 1, pixels: missing.map { $0 ? 255 : 0 }).write(to: folder + "/mask.png")
        var restore = RestoreOptions()
        restore.checkpoint = whole.checkpoint
        restore.input = folder + "/in.png"
        restore.mask = folder + "/mask.png"
        restore.out = folder + "/out.png"
        XCTAssertEqual(try Restoration(options: restore, console: Console()).run().restored, 1)
        let restored = try PNGImage.read(path: restore.out).pixels
        XCTAssertEqual(zip(restored, pixels).enumerated().filter { !missing[$0.offset] && $0.element.0 != $0.element.1 }.count, 0,
                       "every known pixel is the input's")
        XCTAssertGreaterThan(zip(restored, pixels).enumerated().filter { missing[$0.offset] && $0.element.0 != $0.element.1 }.count, 0,
                             "the missing pixels are filled")
        restore.ensemble = true
        restore.out = folder + "/ensemble.png"
        XCTAssertEqual(try Restoration(options: restore, console: Console()).run().restored, 1)
        let ensemble = try PNGImage.read(path: restore.out).pixels
        XCTAssertEqual(zip(ensemble, pixels).enumerated().filter { !missing[$0.offset] && $0.element.0 != $0.element.1 }.count, 0,
                       "mirrors carry the mask along")
        // Whole-image passes: the ensemble is the mean of the eight passes over mirrored and turned
        // copies of the photo and its mask (each rounded to 8 bits here, so within 1); the quarter
        // turns reuse the models built for the first two sizes.
        restore.whole = true
        restore.out = folder + "/whole-ensemble.png"
        XCTAssertEqual(try Restoration(options: restore, console: Console()).run().restored, 1)
        let wholeEnsemble = try PNGImage.read(path: restore.out).pixels
        var mean = [Double](repeating: 0, count: pixels.count)
        for (k, symmetry) in Dihedral.all.enumerated() {
            let size = symmetry.size(height: height, width: width)
            let turned = symmetry.apply(pixels.map(Float.init), height: height, width: width, channels: 1).map { UInt8($0) }
            let turnedMask = symmetry.apply(missing.map { $0 ? 255 : 0 }, height: height, width: width, channels: 1).map { UInt8($0) }
            try PNGImage(height: size.height, width: size.width, channels: 1, pixels: turned).write(to: folder + "/in-\(k).png")
            try PNGImage(height: size.height, width: size.width, channels: 1, pixels: turnedMask).write(to: folder + "/mask-\(k).png")
            var single = restore
            single.ensemble = false
            (single.input, single.mask, single.out) = (folder + "/in-\(k).png", folder + "/mask-\(k).png", folder + "/whole-\(k).png")
            XCTAssertEqual(try Restoration(options: single, console: Console()).run().restored, 1)
            let back = symmetry.invert(try PNGImage.read(path: single.out).pixels.map(Float.init), height: height, width: width, channels: 1)
            for i in mean.indices { mean[i] += Double(back[i]) / 8 }
        }
        let worst = zip(wholeEnsemble, mean).map { abs(Double($0.0) - $0.1) }.max() ?? 0
        XCTAssertLessThanOrEqual(worst, 1, "the whole-image ensemble is the mean of the eight whole passes")
        XCTAssertGreaterThan(zip(wholeEnsemble, pixels).enumerated().filter { missing[$0.offset] && $0.element.0 != $0.element.1 }.count, 0,
                             "the whole-image ensemble fills the missing pixels")

        var refused = TrainingFixtures.options(data: data, out: folder + "/refused", steps: 1)
        refused.architecture.maskChannel = true
        refused.corrupt = "holes:4,noise:0.1"
        XCTAssertThrowsError(try TrainingFixtures.train(refused)) {
            XCTAssertEqual("\($0)", "--mask-channel keeps every pixel not marked missing, so --corrupt must hold only mask and holes items (got 'holes:4,noise:0.1'), e.g. --corrupt holes:8")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder + "/refused"))
    }

    /// A VQ-VAE with finite scalar quantization resumes bit-identically and its evaluation counts
    /// its codes; the codebook controls are refused for it.
    func testFiniteScalarQuantizerResumesBitIdentically() throws {
        let data = try TrainingFixtures.blobs("fsq")
        var options = TrainingFixtures.options(data: data, out: try TrainingFixtures.folder("fsq-straight"), steps: 4)
        options.architecture.useFiniteScalarQuantizer(levels: [5, 4, 3])
        options.codebookInit = .sonnet
        options.seed = 16
        let (straight, _, _) = try TrainingFixtures.assertResumeIsBitIdentical(options, interrupted: "fsq-interrupted")
        XCTAssertNil(straight.state.model.quantizer)
        XCTAssertEqual(straight.state.model.scalarQuantizer?.codes, 60)
        var refused = options
        refused.out = try TrainingFixtures.folder("fsq-refused") + "/run"
        refused.codebookInit = .kmeans
        refused.givenFlags = ["--codebook-init"]
        XCTAssertThrowsError(try TrainingFixtures.train(refused)) {
            XCTAssertEqual("\($0)", "--kmeans-init initialises a codebook; --quantizer fsq has none")
        }
    }

    /// Options the library refuses name the flag, before anything is written.
    func testImpossibleOptionsAreRefused() throws {
        let data = try TrainingFixtures.blobs("refused")
        let out = try TrainingFixtures.folder("refused")
        var options = TrainingFixtures.options(data: data, out: out + "/run", steps: 1)
        options.lr = -1
        XCTAssertThrowsError(try TrainingFixtures.train(options)) { XCTAssertEqual("\($0)", "--lr must be a positive number") }
        options.lr = 1e-3
        options.globalBatchSize = 1000
        XCTAssertThrowsError(try TrainingFixtures.train(options))
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/run"))
    }
}
