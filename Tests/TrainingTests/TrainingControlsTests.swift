import Data
import Dist
import Foundation
import Model
import Training
import XCTest

/// `--accumulate`, `--weight-ema` and `--keep-best` in process (a world of one; the multi-rank
/// runs are in EndToEndTests/TrainingControlsCommandTests.swift).
final class TrainingControlsTests: XCTestCase {
    /// The largest difference between two states, buffer by buffer, relative to each buffer's
    /// largest value: `max |a - b| / max |b|`.
    static func largestRelativeDifference(_ a: [[Float]], _ b: [[Float]]) -> Double {
        var worst = 0.0
        for (x, y) in zip(a, b) {
            let scale = max(y.map { Double(abs($0)) }.max() ?? 0, 1e-12)
            let difference = zip(x, y).map { Double(abs($0 - $1)) }.max() ?? 0
            worst = max(worst, difference / scale)
        }
        return worst
    }

    /// Trains `options` once per accumulation in `accumulations` (each in its own folder) and
    /// returns the trainers and summaries.
    static func trainAccumulating(_ options: TrainingOptions, _ accumulations: [Int], name: String) throws -> [(Trainer, Trainer.Summary)] {
        try accumulations.map { n in
            var o = options
            o.out = try TrainingFixtures.folder("\(name)-accumulate-\(n)")
            o.accumulate = n
            return try TrainingFixtures.train(o)
        }
    }

    /// Gradient accumulation equals the whole batch: 4 steps of a global batch of 8 as 1, 2 and 4
    /// micro-batches (of 8, 4 and 2 images) end with the same parameters, EMA codebook (codebook,
    /// counts, sums) and Adam moments up to summation order, for the VQ-VAE with the EMA codebook
    /// (k-means start and dead-code restart from the whole batch's encoder outputs), the VAE
    /// (noise keyed by the image's place in the global batch), an autoencoder with U-Net skips of
    /// per-image weights (keyed the same way) and the VQ-VAE with a trained codebook, and with
    /// every code re-seeded after every step (restart draws from every micro-batch's encoder
    /// outputs), and with the mask channel (each micro-batch reads its images' masks); the losses
    /// reported are the whole batch's.
    ///
    /// Adam's epsilon is 1e-6 here: with the default 1e-8, an entry whose true gradient is zero
    /// (1e-11 of rounding) takes a step of its noise's sign, and 4 steps part the runs by 1e-5 of
    /// a tensor's largest weight (measured: step-1 gradients within 6e-7, parameters within
    /// 1.3e-5 after one step, all of it in such entries), which is Adam's doing, not accumulation's.
    func testAccumulationEqualsTheWholeBatch() throws {
        let data = try TrainingFixtures.blobs("accumulate")
        var base = TrainingFixtures.options(data: data, out: "", steps: 4)
        base.corrupt = "noise:0.1"
        base.seed = 21
        base.adamEpsilon = 1e-6
        var vae = base
        vae.architecture.model = .vae
        var skips = base
        skips.architecture.model = .ae
        skips.architecture.skips = true
        skips.architecture.skipWeightLow = 0
        skips.architecture.skipWeightHigh = 1
        var grad = base
        grad.architecture.codebook = .grad
        // Every code dead after every step: each is re-seeded from the gathered encoder outputs of
        // the whole global batch, drawn in the same order whatever the micro-batches.
        var restart = base
        restart.deadCodeThreshold = 1e6
        // The mask channel: each micro-batch reads its own images' masks.
        var masked = base
        masked.corrupt = "holes:3"
        masked.architecture.maskChannel = true
        for (name, options) in [("vqvae", base), ("vqvae-restart-all", restart), ("vae", vae), ("ae-skips", skips),
                                ("vqvae-grad", grad), ("vqvae-mask-channel", masked)] {
            let runs = try Self.trainAccumulating(options, [1, 2, 4], name: name)
            let whole = TrainingFixtures.snapshot(runs[0].0.state)
            for (n, run) in zip([2, 4], runs.dropFirst()) {
                XCTAssertEqual(run.0.model.maxBatch, 8 / n, "\(name): the model is sized for one micro-batch")
                XCTAssertEqual(run.0.configuration.data.accumulate, n)
                let difference = Self.largestRelativeDifference(TrainingFixtures.snapshot(run.0.state), whole)
                let loss = abs(run.1.finalLoss.total - runs[0].1.finalLoss.total) / runs[0].1.finalLoss.total
                print("\(name), --accumulate \(n) against 1 after 4 steps: state within \(difference) (relative to each buffer's largest value), last loss within \(loss); \(run.1.restartedCodes) codes re-seeded")
                XCTAssertLessThan(difference, 2e-6, "\(name), --accumulate \(n)")
                XCTAssertLessThan(loss, 1e-6, "\(name), --accumulate \(n)")
                XCTAssertEqual(run.1.restartedCodes, runs[0].1.restartedCodes, name)
                if name == "vqvae-restart-all" { XCTAssertEqual(run.1.restartedCodes, 4 * 16) }
            }
        }
    }

    /// With accumulation (and a weight EMA), stopping half-way and resuming is bit-identical; a
    /// resume may change the number of micro-batches, which changes only the summation order.
    func testAccumulationResumesBitIdenticallyAndMayChange() throws {
        let data = try TrainingFixtures.blobs("accumulate-resume")
        var options = TrainingFixtures.options(data: data, out: try TrainingFixtures.folder("accumulate-straight"), steps: 6)
        options.corrupt = "noise:0.1,mask:0.25"
        options.accumulate = 2
        options.weightEMA = 0.9
        options.seed = 17
        options.adamEpsilon = 1e-6  // see testAccumulationEqualsTheWholeBatch
        let (straight, _, resumed) = try TrainingFixtures.assertResumeIsBitIdentical(options, interrupted: "accumulate-interrupted")
        XCTAssertEqual(resumed.configuration.data.accumulate, 2, "a resume keeps the stored value")
        XCTAssertEqual(resumed.state.weightAverage?.updates, 6)

        // 3 steps with 2 micro-batches, then 3 more with 4.
        options.out = try TrainingFixtures.folder("accumulate-changed")
        options.steps = 3
        try TrainingFixtures.train(options)
        options.steps = 6
        options.resume = "auto"
        options.accumulate = 4
        options.givenFlags = ["--accumulate"]
        let (changed, _) = try TrainingFixtures.train(options)
        XCTAssertEqual(changed.configuration.data.accumulate, 4)
        XCTAssertEqual(changed.model.maxBatch, 2)
        let difference = Self.largestRelativeDifference(TrainingFixtures.snapshot(changed.state), TrainingFixtures.snapshot(straight.state))
        print("--accumulate 2 for 3 steps, then 4 for 3, against 2 throughout: state within \(difference)")
        XCTAssertLessThan(difference, 2e-6)
    }

    /// The weight EMA after every step equals the bias-corrected average computed in double
    /// precision from the parameters after each update (read from the checkpoints of steps 1 to
    /// 5): the trained weights themselves after step 1. The EMA codebook is not averaged.
    func testWeightAverageFollowsTheParameterHistory() throws {
        let data = try TrainingFixtures.blobs("weight-ema")
        var options = TrainingFixtures.options(data: data, out: try TrainingFixtures.folder("weight-ema"), steps: 5)
        options.weightEMA = 0.8
        options.checkpointEvery = 1
        options.seed = 3
        let (trainer, _) = try TrainingFixtures.train(options)
        let path = { (step: Int) in options.out + "/checkpoints/" + Checkpoint.fileName(step: Int64(step)) }
        var history: [[Float]] = []
        let d = 0.8
        var worst = 0.0
        for step in 1...5 {
            let trained = try TrainedModel(checkpoint: path(step), batch: 1, weights: .trained)
            let averaged = try TrainedModel(checkpoint: path(step), batch: 1)
            XCTAssertEqual(trained.weights, .trained)
            XCTAssertEqual(averaged.weights, .averaged, "the weight EMA is used when present")
            history.append(trained.model.parameters.values.array)
            let count = history[0].count
            var reference = [Double](repeating: 0, count: count)
            for (t, p) in history.enumerated() {
                let w = (1 - d) * pow(d, Double(step - 1 - t)) / (1 - pow(d, Double(step)))
                for i in 0..<count { reference[i] += w * Double(p[i]) }
            }
            let values = averaged.model.parameters.values.array
            let scale = reference.map(abs).max() ?? 1
            let difference = zip(values, reference).map { abs(Double($0) - $1) }.max() ?? 0
            worst = max(worst, difference / scale)
            if step == 1 { XCTAssertEqual(values, history[0], "after one update the average is the trained weights") }
            XCTAssertEqual(averaged.model.quantizer?.emaState.array, trained.model.quantizer?.emaState.array,
                           "the EMA codebook is the checkpoint's, not averaged")
        }
        print("weight EMA against the average of the parameter history in double precision: within \(worst) of the largest weight")
        XCTAssertLessThan(worst, 1e-6)
        XCTAssertNotEqual(trainer.state.weightAverage?.values.array, trainer.model.parameters.values.array)
        XCTAssertEqual(trainer.state.weightAverage?.values.array, try TrainedModel(checkpoint: path(5), batch: 1).model.parameters.values.array)
    }

    /// Validation, `eval`, `restore`, `encode` and `decode` use the weight EMA when the checkpoint
    /// holds one, `--raw-weights` the trained weights; a checkpoint without one has only those.
    func testCommandsUseTheWeightAverage() throws {
        let data = try TrainingFixtures.blobs("ema-commands")
        let validation = try TrainingFixtures.blobs("ema-commands-held-out", count: 16, seed: 98)
        var options = TrainingFixtures.options(data: data, out: try TrainingFixtures.folder("ema-commands"), steps: 4)
        options.weightEMA = 0.7
        options.validationData = validation
        options.validationEvery = 4
        options.validationLimit = 12
        options.accumulate = 2
        let (_, summary) = try TrainingFixtures.train(options)
        let figures = try XCTUnwrap(summary.validation)

        let folder = try TrainingFixtures.folder("ema-commands-outputs")
        var evaluation = EvaluationOptions()
        evaluation.checkpoint = summary.checkpoint
        evaluation.data = [validation]
        evaluation.seed = options.seed
        evaluation.limit = 12
        evaluation.batch = 4  // validation's chunks: one micro-batch
        evaluation.reconstructionsOut = folder + "/recon.h5"
        let averaged = try Evaluation.run(evaluation, communicator: try Communicator())
        XCTAssertEqual(averaged.weights, .averaged)
        XCTAssertEqual(averaged.json["weights"] as? String, "ema")
        XCTAssertEqual(averaged.figures, figures, "validation during training evaluates the weight EMA, as eval does")
        evaluation.rawWeights = true
        evaluation.reconstructionsOut = nil
        let raw = try Evaluation.run(evaluation, communicator: try Communicator())
        XCTAssertEqual(raw.weights, .trained)
        XCTAssertNotEqual(raw.figures, averaged.figures)

        // encode and decode: the code file records the weights, decode uses them, and its output
        // is eval's reconstruction bit for bit.
        var encode = EncodeOptions()
        encode.checkpoint = summary.checkpoint
        encode.data = [validation]
        encode.limit = 12
        encode.batch = 4  // eval's chunks, so that the decoder runs the same batches
        encode.out = folder + "/codes.h5"
        try CodeFiles.encode(encode, console: Console())
        XCTAssertEqual(try CodeFile.read(path: encode.out).weights, .averaged)
        var decode = DecodeOptions()
        decode.codes = encode.out
        decode.out = folder + "/decoded.h5"
        decode.batch = 4
        try CodeFiles.decode(decode, console: Console())
        let decoded = try ImageDataset(paths: [decode.out]), reconstructed = try ImageDataset(paths: [folder + "/recon.h5"])
        let (a, b) = (FloatBuffer(count: 12 * 256), FloatBuffer(count: 12 * 256))
        try decoded.read(indices: Array(0..<12), into: a.pointer)
        try reconstructed.read(indices: Array(0..<12), into: b.pointer)
        XCTAssertEqual(a.array, b.array, "decode uses the weights the codes were encoded with")
        encode.rawWeights = true
        encode.out = folder + "/raw-codes.h5"
        try CodeFiles.encode(encode, console: Console())
        XCTAssertEqual(try CodeFile.read(path: encode.out).weights, .trained)

        // restore: the weight EMA by default, the trained weights with --raw-weights.
        let pixels = (0..<(16 * 16)).map { UInt8(40 + $0 % 150) }
        try PNGImage(height: 16, width: 16, channels: 1, pixels: pixels).write(to: folder + "/in.png")
        var restored: [[UInt8]] = []
        for rawWeights in [false, true] {
            var restore = RestoreOptions()
            restore.checkpoint = summary.checkpoint
            restore.input = folder + "/in.png"
            restore.out = folder + "/out-\(rawWeights).png"
            restore.rawWeights = rawWeights
            XCTAssertEqual(try Restoration(options: restore, console: Console()).run().restored, 1)
            restored.append(try PNGImage.read(path: restore.out).pixels)
        }
        XCTAssertNotEqual(restored[0], restored[1])

        // A checkpoint without a weight EMA: the trained weights; asking for the EMA is refused.
        var plain = TrainingFixtures.options(data: data, out: try TrainingFixtures.folder("ema-commands-plain"), steps: 1)
        plain.seed = 2
        let (_, plainSummary) = try TrainingFixtures.train(plain)
        XCTAssertEqual(try TrainedModel(checkpoint: plainSummary.checkpoint, batch: 1).weights, .trained)
        XCTAssertThrowsError(try TrainedModel(checkpoint: plainSummary.checkpoint, batch: 1, weights: .required(.averaged))) {
            XCTAssertTrue("\($0)".contains("no weight EMA"), "\($0)")
        }
    }

    /// `--keep-best val_mse`: `best.h5` holds the step of the lowest validation MSE (recorded in
    /// it and in `metrics.jsonl`), `--keep 1` never removes it, and a resume keeps the best score:
    /// continued with a learning rate that ruins the model at its first validation, it leaves
    /// `best.h5` alone there (a resume that forgot the score would take that step as its first
    /// best), and replaces it only with a better one.
    func testKeepBestKeepsTheBestCheckpoint() throws {
        let data = try TrainingFixtures.blobs("keep-best")
        let validation = try TrainingFixtures.blobs("keep-best-held-out", count: 16, seed: 97)
        var options = TrainingFixtures.options(data: data, out: try TrainingFixtures.folder("keep-best"), steps: 6)
        options.validationData = validation
        options.validationEvery = 2
        options.validationLimit = 16
        options.checkpointEvery = 2
        options.keep = 1
        options.keepBest = "val_mse"
        options.lr = 3e-3
        let (_, summary) = try TrainingFixtures.train(options)
        let checkpoints = options.out + "/checkpoints"
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: checkpoints).sorted(), ["best.h5", "step-00000006.h5"])
        let records = try Self.validationRecords(options.out)
        XCTAssertEqual(records.map { $0["step"] as? Int }, [2, 4, 6])
        let lowest = try XCTUnwrap(records.min { ($0["val_mse"] as! Double) < ($1["val_mse"] as! Double) })
        let best = try XCTUnwrap(summary.best)
        XCTAssertEqual(Int(best.step), lowest["step"] as? Int)
        XCTAssertEqual(best.score, lowest["val_mse"] as? Double)
        XCTAssertEqual(records.last?["best_step"] as? Int, Int(best.step))
        XCTAssertEqual(records.last?["best_score"] as? Double, best.score)
        XCTAssertEqual(records.last?["best_metric"] as? String, "val_mse")
        let stored = try Self.checkpointState(checkpoints + "/best.h5")
        XCTAssertEqual(stored.step, best.step, "best.h5 is the checkpoint of the best step")
        XCTAssertEqual(stored.best, best)
        XCTAssertEqual(try Self.checkpointState(checkpoints + "/step-00000006.h5").best, best, "every checkpoint records the best so far")

        // A resume that trains nothing has read the best score back.
        options.resume = "auto"
        XCTAssertEqual(try TrainingFixtures.train(options).0.best, best)

        options.steps = 10
        options.lr = 1
        options.givenFlags = ["--lr"]
        let (_, second) = try TrainingFixtures.train(options)
        let all = try Self.validationRecords(options.out)
        XCTAssertEqual(all.map { $0["step"] as? Int }, [2, 4, 6, 8, 10])
        let ruined = all[3]
        XCTAssertGreaterThan(ruined["val_mse"] as! Double, best.score, "lr 1 ruins the model at step 8: \(ruined)")
        XCTAssertEqual(ruined["best_step"] as? Int, Int(best.step), "the resumed run kept the best score: \(ruined)")
        let overall = try XCTUnwrap(all.min { ($0["val_mse"] as! Double) < ($1["val_mse"] as! Double) })
        let final = try XCTUnwrap(second.best)
        XCTAssertEqual(Int(final.step), overall["step"] as? Int)
        XCTAssertEqual(try Self.checkpointState(checkpoints + "/best.h5").step, final.step)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: checkpoints).sorted(), ["best.h5", "step-00000010.h5"])
    }

    /// Values the controls refuse, each in one line naming the flag.
    func testRefusals() throws {
        let data = try TrainingFixtures.blobs("controls-refused")
        let out = try TrainingFixtures.folder("controls-refused")
        var options = TrainingFixtures.options(data: data, out: out + "/run", steps: 1)
        options.accumulate = 3
        XCTAssertThrowsError(try TrainingFixtures.train(options)) {
            XCTAssertEqual("\($0)", "--global-batch-size 8 is not divisible by 1 rank(s) x --accumulate 3 = 3 micro-batches; choose a multiple of 3")
        }
        let cases: [((inout TrainingOptions) -> Void, String)] = [
            ({ $0.accumulate = 0 }, "--accumulate must be at least 1 (got 0)"),
            ({ $0.weightEMA = 1 }, "--weight-ema must be a decay in (0, 1), e.g. 0.999 (got 1.0)"),
            ({ $0.keepBest = "val_psnr" }, "--keep-best val_psnr needs --val FILE: it keeps the checkpoint of the best validation score"),
            ({ $0.keepBest = "psnr"; $0.validationData = data }, "--keep-best takes val_psnr, val_ssim, val_mse (got 'psnr')"),
        ]
        for (change, message) in cases {
            var o = TrainingFixtures.options(data: data, out: out + "/run", steps: 1)
            change(&o)
            XCTAssertThrowsError(try o.validate()) { XCTAssertEqual("\($0)", message) }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/run"))

        // A resume keeps the weight EMA's decay: another one is refused, as is turning it on.
        options = TrainingFixtures.options(data: data, out: out + "/ema", steps: 1)
        options.weightEMA = 0.9
        try TrainingFixtures.train(options)
        options.steps = 2
        options.resume = "auto"
        options.weightEMA = 0.99
        options.givenFlags = ["--weight-ema"]
        XCTAssertThrowsError(try TrainingFixtures.train(options)) {
            XCTAssertTrue("\($0)".contains("--weight-ema 0.99 contradicts"), "\($0)")
            XCTAssertTrue("\($0)".contains("which was trained with --weight-ema 0.9"), "\($0)")
        }
        options = TrainingFixtures.options(data: data, out: out + "/plain", steps: 1)
        try TrainingFixtures.train(options)
        options.steps = 2
        options.resume = "auto"
        options.weightEMA = 0.9
        options.givenFlags = ["--weight-ema"]
        XCTAssertThrowsError(try TrainingFixtures.train(options)) {
            XCTAssertTrue("\($0)".contains("which was trained without --weight-ema"), "\($0)")
        }
    }

    /// The validation records of a run's `metrics.jsonl`.
    static func validationRecords(_ out: String) throws -> [[String: Any]] {
        try String(contentsOfFile: out + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
            .compactMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .filter { $0["val_mse"] != nil }
    }

    /// The run state stored in the checkpoint at `path`.
    static func checkpointState(_ path: String) throws -> CheckpointState {
        let run = try RunConfiguration.decode(try Checkpoint.configuration(path: path), path: path)
        let model = try VQVAE(configuration: run.model, maxBatch: 1)
        return try Checkpoint.load(path: path, into: model, optimizer: nil)
    }
}
