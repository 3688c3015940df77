import Data
import Foundation
import XCTest

/// `train --accumulate`, `--weight-ema` and `--keep-best` as a user runs them: under `mpirun`
/// on 1, 2 and 3 ranks, through `eval` and `inspect`, and their refusals.
final class TrainingControlsCommandTests: XCTestCase {
    /// The flags of the small MNIST runs below.
    static let small = ["--global-batch-size", "12", "--seed", "11", "--log-every", "1", "--hidden", "32", "--res-hidden", "16",
                        "--code-dim", "16", "--codes", "64", "--bucket-mb", "0.01", "--sync-check-every", "1"]

    /// Gradient accumulation on 1, 2 and 3 ranks equals the whole batch on one: G = 12 as 2
    /// micro-batches per rank (of 6, 3 and 2 images) and as 4 on 3 ranks (of 1 image) ends, after
    /// 5 steps, within 5e-6 of one rank without accumulation in every tensor (parameters, EMA
    /// codebook and statistics, Adam's moments; relative to the tensor's largest value; measured
    /// 1.3e-6 to 3.0e-6), for the VQ-VAE with the EMA codebook (k-means start, dead-code restart)
    /// and for the VAE. Adam's epsilon is 1e-6 so that rounding noise in zero gradients is not
    /// turned into steps (see TrainingControlsTests.testAccumulationEqualsTheWholeBatch); the
    /// ranks end identical.
    func testAccumulationOnOneTwoAndThreeRanksEqualsTheWholeBatch() throws {
        let data = try PreparedData.mnist("test")
        for model in ["vqvae", "vae"] {
            var finals: [(label: String, path: String)] = []
            for (ranks, accumulate) in [(1, 1), (1, 2), (2, 2), (3, 2), (3, 4)] {
                let out = try CommandRunner.temporaryFolder("accumulate-\(model)-\(ranks)-\(accumulate)")
                let result = try CommandRunner.mpirun(ranks: ranks, "vqvae", [
                    "train", "--data", data, "--out", out.path, "--steps", "5", "--model", model, "--adam-eps", "1e-6",
                    "--accumulate", "\(accumulate)"] + Self.small)
                XCTAssertEqual(result.status, 0, result.standardError)
                let share = 12 / ranks
                let batch = accumulate > 1 ? "batch \(share) (\(accumulate) micro-batches of \(share / accumulate))" : "batch \(share);"
                XCTAssertTrue(result.standardOutput.contains("\(ranks) rank(s) x \(batch)"), result.standardOutput)
                if ranks > 1 { XCTAssertTrue(result.standardOutput.contains("identical on all \(ranks) ranks"), result.standardOutput) }
                let stored = try LoadedCheckpoint.configuration(out.appendingPathComponent("checkpoints/step-00000005.h5").path)
                XCTAssertEqual((stored["data"] as? [String: Any])?["accumulate"] as? Int, accumulate)
                finals.append(("W = \(ranks), --accumulate \(accumulate)", out.appendingPathComponent("checkpoints/step-00000005.h5").path))
            }
            for other in finals.dropFirst() {
                let result = try CommandRunner.script("compare_hdf5_datasets.py", [other.path, finals[0].path, "--tolerance", "5e-6",
                                                                                  "--min-datasets", "90", "--same-position"])
                XCTAssertEqual(result.status, 0, "\(model), \(other.label): \(result.standardError)")
                print("\(model), \(other.label) against W = 1 without accumulation after 5 steps: largest relative difference \(result.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines))")
            }
        }
    }

    /// A global batch that the ranks times the micro-batches do not divide is refused in one line
    /// before anything is written, on one rank and, said once, on two.
    func testIndivisibleAccumulationIsRefused() throws {
        let data = try PreparedData.mnist("test")
        let out = try CommandRunner.temporaryFolder("accumulate-refused")
        let alone = try CommandRunner.vqvae(["train", "--data", data, "--out", out.path, "--global-batch-size", "10", "--accumulate", "4"])
        assertRefused(alone, "error: --global-batch-size 10 is not divisible by 1 rank(s) x --accumulate 4 = 4 micro-batches; choose a multiple of 4",
                      "G 10, N 4")
        let two = try CommandRunner.mpirun(ranks: 2, "vqvae", ["train", "--data", data, "--out", out.path, "--global-batch-size", "12",
                                                               "--accumulate", "4"])
        XCTAssertNotEqual(two.status, 0)
        XCTAssertEqual(two.standardError.components(separatedBy: "is not divisible by 2 rank(s) x --accumulate 4 = 8 micro-batches").count, 2,
                       "said once: \(two.standardError)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent("checkpoints").path))
    }

    /// Values refused before anything is read: one `error:` line, the help hint, status 2.
    func testControlValuesAreUsageErrors() throws {
        let out = try CommandRunner.temporaryFolder("controls-usage").appendingPathComponent("run").path
        let train = ["train", "--data", "/nonexistent/train.h5", "--out", out]
        for (flags, message) in [
            (["--accumulate", "0"], "--accumulate must be at least 1 (got 0)"),
            (["--weight-ema", "1.5"], "--weight-ema must be a decay in (0, 1), e.g. 0.999 (got 1.5)"),
            (["--keep-best", "val_psnr"], "--keep-best val_psnr needs --val FILE: it keeps the checkpoint of the best validation score"),
            (["--keep-best", "psnr", "--val", "/nonexistent/val.h5"], "--keep-best takes val_psnr, val_ssim, val_mse (got 'psnr')"),
        ] {
            let result = try CommandRunner.vqvae(train + flags)
            XCTAssertEqual(result.status, 2, "\(flags): \(result.standardError)")
            XCTAssertEqual(result.standardError.split(separator: "\n").map(String.init), ["error: \(message)", "see 'vqvae train --help'"], "\(flags)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        }
    }

    /// On 2 ranks with 2 micro-batches each, a weight EMA and `--keep-best val_psnr --keep 1`:
    /// `best.h5` survives the pruning and holds the step of the best PSNR in `metrics.jsonl`,
    /// its attributes say so (h5py), `/weight_ema` holds one tensor per parameter, `inspect`
    /// describes both, and `eval` uses the weight EMA unless `--raw-weights` (in validation's chunks
    /// of one micro-batch, so the figures are validation's).
    func testWeightEMAAndKeepBestOnTwoRanks() throws {
        let train = try PreparedData.mnist("train"), test = try PreparedData.mnist("test")
        let out = try CommandRunner.temporaryFolder("ema-best")
        let result = try CommandRunner.mpirun(ranks: 2, "vqvae", [
            "train", "--data", train, "--out", out.path, "--steps", "6", "--accumulate", "2", "--weight-ema", "0.9",
            "--val", test, "--val-every", "2", "--val-limit", "24", "--keep-best", "val_psnr", "--keep", "1",
            "--checkpoint-every", "2", "--lr", "1e-3"] + Self.small)
        XCTAssertEqual(result.status, 0, result.standardError)
        XCTAssertTrue(result.standardOutput.contains("weight EMA 0.9"), result.standardOutput)
        let checkpoints = out.appendingPathComponent("checkpoints").path
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: checkpoints).sorted(), ["best.h5", "step-00000006.h5"])
        let records = try String(contentsOf: out.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
            .compactMap { try JSONSerialization.jsonObject(with: Foundation.Data($0.utf8)) as? [String: Any] }
            .filter { $0["val_psnr"] != nil }
        XCTAssertEqual(records.count, 3)
        let best = try XCTUnwrap(records.max { ($0["val_psnr"] as! Double) < ($1["val_psnr"] as! Double) })
        let path = checkpoints + "/best.h5"
        func attribute(_ object: String, _ name: String) throws -> String {
            let read = try CommandRunner.script("read_hdf5_attribute.py", [path, object, name])
            XCTAssertEqual(read.status, 0, read.standardError)
            return read.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        XCTAssertEqual(try attribute("/", "step"), "\(best["step"] as! Int)")
        XCTAssertEqual(try attribute("/", "best_step"), "\(best["step"] as! Int)")
        XCTAssertEqual(try attribute("/", "best_metric"), "\"val_psnr\"")
        XCTAssertEqual(Double(try attribute("/", "best_score")), best["val_psnr"] as? Double)
        XCTAssertEqual(try attribute("/weight_ema", "decay"), "0.9")
        XCTAssertEqual(try attribute("/weight_ema", "updates"), "\(best["step"] as! Int)")
        XCTAssertEqual(records.last?["best_step"] as? Int, best["step"] as? Int)
        let runFile = try String(contentsOf: out.appendingPathComponent("run.toml"), encoding: .utf8).split(separator: "\n")
        for line in ["accumulate = 2", "weight-ema = 0.9", "keep-best = \"val_psnr\""] {
            XCTAssertTrue(runFile.contains(Substring(line)), "run.toml lacks '\(line)': \(runFile)")
        }

        let inspected = try CommandRunner.vqvae(["inspect", path])
        XCTAssertEqual(inspected.status, 0, inspected.standardError)
        XCTAssertTrue(inspected.standardOutput.contains("weight EMA: decay 0.9, \(best["step"] as! Int) updates"), inspected.standardOutput)
        XCTAssertTrue(inspected.standardOutput.contains("best val_psnr "), inspected.standardOutput)
        XCTAssertTrue(inspected.standardOutput.contains("checksums: all 123 tensors verify"), inspected.standardOutput)

        var figures: [String: [String: Any]] = [:]
        for flags in [[], ["--raw-weights"]] {
            let evaluated = try CommandRunner.vqvae(["eval", "--checkpoint", path, "--data", test, "--limit", "24", "--batch", "3", "--json"] + flags)
            XCTAssertEqual(evaluated.status, 0, evaluated.standardError)
            let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Foundation.Data(evaluated.standardOutput.utf8)) as? [String: Any])
            figures[flags.first ?? "ema"] = object
        }
        XCTAssertEqual(figures["ema"]?["weights"] as? String, "ema")
        XCTAssertEqual(figures["--raw-weights"]?["weights"] as? String, "trained")
        XCTAssertEqual(figures["ema"]?["psnr"] as? Double ?? 0, best["val_psnr"] as? Double ?? 1, accuracy: 1e-9,
                       "validation evaluated the weight EMA, as eval does")
        XCTAssertNotEqual(figures["ema"]?["psnr"] as? Double, figures["--raw-weights"]?["psnr"] as? Double)
    }
}
