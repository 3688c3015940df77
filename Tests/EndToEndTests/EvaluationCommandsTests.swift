import Foundation
import XCTest

/// `vqvae eval`, `encode`, `decode`, `restore` and `probe` on a small model trained on real MNIST
/// digits, and the VAE, the autoencoder and dead-code restart through `train`.
final class EvaluationCommandsTests: XCTestCase {
    static let architecture = ["--hidden", "32", "--res-hidden", "8", "--code-dim", "16", "--codes", "64"]

    /// A VQ-VAE trained once per test process for denoising MNIST (noise:0.2), 300 steps.
    static let trained: Result<String, Error> = Result {
        let out = try CommandRunner.temporaryFolder("eval-model")
        let result = try CommandRunner.vqvae(["train", "--data", try PreparedData.mnist("train"), "--out", out.path,
                                              "--steps", "300", "--global-batch-size", "32", "--kmeans-init", "--lr", "2e-3",
                                              "--dead-code-threshold", "1", "--corrupt", "noise:0.2", "--log-every", "100"] + architecture)
        guard result.status == 0 else {
            throw NSError(domain: "EvaluationCommandsTests", code: 1, userInfo: [NSLocalizedDescriptionKey: result.standardError])
        }
        return out.appendingPathComponent("checkpoints/step-00000300.h5").path
    }

    func checkpoint() throws -> String { try Self.trained.get() }

    func json(_ text: String, file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        let last = text.split(separator: "\n").last.map(String.init) ?? ""
        guard let object = try JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any] else {
            XCTFail("not a JSON object: \(text)", file: file, line: line)
            return [:]
        }
        return object
    }

    /// The JSON keys the documentation promises; 1 and 2 ranks give the same figures (to rounding); denoising
    /// gains over the damaged input; --recon-out holds float32 (N, H, W, C).
    func testEvalReportsDocumentedFiguresAndRanksAgree() throws {
        let folder = try CommandRunner.temporaryFolder("eval")
        let recon = folder.appendingPathComponent("recon.h5").path
        let arguments = ["eval", "--checkpoint", try checkpoint(), "--data", try PreparedData.mnist("test"), "--limit", "300",
                         "--corrupt", "noise:0.2", "--json"]
        let one = try CommandRunner.mpirun(ranks: 0, "vqvae", arguments + ["--recon-out", recon])
        XCTAssertEqual(one.status, 0, one.standardError)
        let two = try CommandRunner.mpirun(ranks: 2, "vqvae", arguments)
        XCTAssertEqual(two.status, 0, two.standardError)
        let a = try json(one.standardOutput), b = try json(two.standardOutput)
        for key in ["mse", "psnr", "ssim", "perplexity", "codes_used", "bpp", "input_psnr", "input_ssim"] {
            XCTAssertNotNil(a[key], "eval --json lacks \(key): \(a)")
            let x = (a[key] as? NSNumber)?.doubleValue ?? .nan, y = (b[key] as? NSNumber)?.doubleValue ?? .nan
            // Not bit for bit: OpenBLAS multiplies small products (a last batch of few images) with
            // another kernel, which rounds differently (measured 3e-7 relative).
            XCTAssertEqual(x, y, accuracy: 1e-6 * max(1, abs(x)), "\(key): 1 rank \(x), 2 ranks \(y)")
        }
        let psnr = (a["psnr"] as? Double) ?? 0, input = (a["input_psnr"] as? Double) ?? 0
        print("eval: psnr \(psnr) dB vs damaged input \(input) dB, ssim \(a["ssim"] ?? "-"), codes used \(a["codes_used"] ?? "-")")
        XCTAssertGreaterThan(psnr, input + 1, "a denoising model should beat its noisy input")
        XCTAssertEqual((a["bpp"] as? Double) ?? 0, 7.0 * 7 * 6 / (28 * 28), accuracy: 1e-12, "7x7 codes of 6 bits per 28x28 image")
        let shape = try CommandRunner.python("import h5py,sys; d=h5py.File(sys.argv[1])['images']; print(d.shape, d.dtype)", [recon])
        XCTAssertEqual(shape.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines), "(300, 28, 28, 1) float32")
    }

    /// encode then decode reproduces exactly the reconstructions eval writes; decoding with another
    /// codebook is refused; a damaged code file fails cleanly.
    func testEncodeThenDecodeEqualsEvalReconstruction() throws {
        let folder = try CommandRunner.temporaryFolder("codes")
        let codes = folder.appendingPathComponent("codes.h5").path, decoded = folder.appendingPathComponent("decoded.h5").path
        let recon = folder.appendingPathComponent("recon.h5").path
        let data = try PreparedData.mnist("test")
        let encode = try CommandRunner.vqvae(["encode", "--checkpoint", try checkpoint(), "--data", data, "--limit", "200", "--out", codes])
        XCTAssertEqual(encode.status, 0, encode.standardError)
        XCTAssertTrue(encode.standardOutput.contains("0.3750 bits per pixel"), encode.standardOutput)
        let decode = try CommandRunner.vqvae(["decode", "--codes", codes, "--out", decoded])
        XCTAssertEqual(decode.status, 0, decode.standardError)
        let eval = try CommandRunner.vqvae(["eval", "--checkpoint", try checkpoint(), "--data", data, "--limit", "200",
                                            "--recon-out", recon, "--json"])
        XCTAssertEqual(eval.status, 0, eval.standardError)
        let compare = try CommandRunner.python("""
            import h5py, numpy as np, sys
            a = h5py.File(sys.argv[1])['images'][:]; b = h5py.File(sys.argv[2])['images'][:]
            c = h5py.File(sys.argv[3])['codes']
            print(a.shape == b.shape, np.array_equal(a, b), c.dtype, c.shape[0])
            """, [decoded, recon, codes])
        XCTAssertEqual(compare.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines), "True True uint8 7350",
                       "200 images x 49 codes x 6 bits = 7350 bytes; decode must equal eval's reconstruction bit for bit")

        // Another model's codebook is refused by name.
        let other = try CommandRunner.temporaryFolder("codes-other")
        let train = try CommandRunner.vqvae(["train", "--data", data, "--out", other.path, "--steps", "0"] + Self.architecture)
        XCTAssertEqual(train.status, 0, train.standardError)
        let wrong = try CommandRunner.vqvae(["decode", "--codes", codes, "--out", decoded, "--checkpoint",
                                             other.appendingPathComponent("checkpoints/step-00000000.h5").path])
        XCTAssertNotEqual(wrong.status, 0)
        XCTAssertTrue(wrong.standardError.contains("another codebook"), wrong.standardError)
        XCTAssertEqual(wrong.standardError.split(separator: "\n").count, 1, wrong.standardError)
        // A header claiming 2^30 images, with a chunked /codes of the matching size never written
        // (the file stays small): refused before the 4 TB it would take are allocated.
        let huge = folder.appendingPathComponent("huge.h5").path
        let made = try CommandRunner.python("""
            import h5py, shutil, sys
            shutil.copy(sys.argv[1], sys.argv[2])
            with h5py.File(sys.argv[2], 'r+') as f:
                n = (1 << 30) * 49 * 6 // 8
                f.attrs['count'] = 1 << 30
                del f['codes']
                f.create_dataset('codes', shape=(n,), dtype='uint8', chunks=(1 << 20,))
            """, [codes, huge])
        XCTAssertEqual(made.status, 0, made.standardError)
        let claimed = try CommandRunner.vqvae(["decode", "--codes", huge, "--out", decoded])
        XCTAssertNotEqual(claimed.status, 0)
        XCTAssertTrue(claimed.standardError.contains("need about 4 TB to decode"), claimed.standardError)
        XCTAssertEqual(claimed.standardError.split(separator: "\n").count, 1, claimed.standardError)
        // A truncated code file.
        let bytes = try Data(contentsOf: URL(fileURLWithPath: codes))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: codes))
        let damaged = try CommandRunner.vqvae(["decode", "--codes", codes, "--out", decoded])
        XCTAssertNotEqual(damaged.status, 0)
        XCTAssertEqual(damaged.standardError.split(separator: "\n").count, 1, damaged.standardError)
        XCTAssertFalse(damaged.standardError.contains("Fatal error"))
    }

    /// A model trained on non-square images (16x28 crops of MNIST digits) restores in 16x28
    /// tiles: a 44x61 image keeps its size, and the tiled result agrees with the fully
    /// convolutional whole-image run (a tile read or placed with the wrong side would not).
    func testRestoreWithNonSquareModel() throws {
        let folder = try CommandRunner.temporaryFolder("restore-nonsquare")
        let data = folder.appendingPathComponent("wide.h5").path, input = folder.appendingPathComponent("in.png").path
        let make = try CommandRunner.python("""
            import h5py, numpy as np, sys
            from PIL import Image
            d = h5py.File(sys.argv[1])['images'][:600]
            h5py.File(sys.argv[2], 'w').create_dataset('images', data=d[:, 6:22, :, :])
            grid = np.block([[d[r * 3 + c, :, :, 0] for c in range(3)] for r in range(2)])
            Image.fromarray(grid[:44, :61]).save(sys.argv[3])
            """, [try PreparedData.mnist("train"), data, input])
        XCTAssertEqual(make.status, 0, make.standardError)
        let out = folder.appendingPathComponent("model")
        let train = try CommandRunner.vqvae(["train", "--data", data, "--out", out.path, "--steps", "60",
                                             "--global-batch-size", "16", "--lr", "2e-3", "--log-every", "60"] + Self.architecture)
        XCTAssertEqual(train.status, 0, train.standardError)
        let checkpoint = out.appendingPathComponent("checkpoints/step-00000060.h5").path
        let tiled = folder.appendingPathComponent("tiled.png").path, whole = folder.appendingPathComponent("whole.png").path
        let tiledRun = try CommandRunner.vqvae(["restore", "--checkpoint", checkpoint, "--input", input, "--out", tiled])
        XCTAssertEqual(tiledRun.status, 0, tiledRun.standardError)
        XCTAssertTrue(tiledRun.standardOutput.contains("tiles of 16x28"), tiledRun.standardOutput)
        // --whole needs sides that are multiples of 4: the 44x60 left part.
        let cropped = folder.appendingPathComponent("cropped.png").path
        _ = try CommandRunner.python("from PIL import Image; import sys; Image.open(sys.argv[1]).crop((0, 0, 60, 44)).save(sys.argv[2])",
                                     [input, cropped])
        let croppedTiled = folder.appendingPathComponent("cropped-tiled.png").path
        for (path, extra) in [(croppedTiled, [String]()), (whole, ["--whole"])] {
            let result = try CommandRunner.vqvae(["restore", "--checkpoint", checkpoint, "--input", cropped, "--out", path] + extra)
            XCTAssertEqual(result.status, 0, result.standardError)
        }
        let check = try CommandRunner.python("""
            import numpy as np, sys
            from PIL import Image
            a = np.asarray(Image.open(sys.argv[1])); t = np.asarray(Image.open(sys.argv[2])).astype(float)
            w = np.asarray(Image.open(sys.argv[3])).astype(float)
            print(a.shape, round(10 * np.log10(255 ** 2 / max(((t - w) ** 2).mean(), 1e-12)), 2))
            """, [tiled, croppedTiled, whole])
        XCTAssertEqual(check.status, 0, check.standardError)
        let text = check.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertTrue(text.hasPrefix("(44, 61)"), "the restored image keeps the input's size: \(text)")
        let psnr = Double(text.split(separator: " ").last ?? "") ?? 0
        print("restore (16x28 model): tiled vs whole-image \(psnr) dB")
        XCTAssertGreaterThan(psnr, 20, "tiled restoration should agree with the whole-image run: \(text)")
    }

    /// A PNG larger than the 28x28 tiles: the output keeps its size, the tiled result agrees with the
    /// fully convolutional whole-image run, and the tile borders show no seam (pixel steps across
    /// them are no larger than elsewhere). Folders and HDF5 files keep their names and shapes.
    func testRestoreLargerImagesInTilesWithoutSeams() throws {
        let folder = try CommandRunner.temporaryFolder("restore")
        let input = folder.appendingPathComponent("in.png").path
        // 76x92 gray: MNIST digits laid side by side, then cropped to sides that are multiples of 4.
        let make = try CommandRunner.python("""
            import h5py, numpy as np, sys
            from PIL import Image
            d = h5py.File(sys.argv[1])['images'][:20, :, :, 0]
            grid = np.block([[d[r * 4 + c] for c in range(4)] for r in range(3)])
            Image.fromarray(grid[:76, :92]).save(sys.argv[2])
            """, [try PreparedData.mnist("test"), input])
        XCTAssertEqual(make.status, 0, make.standardError)
        let tiled = folder.appendingPathComponent("tiled.png").path, whole = folder.appendingPathComponent("whole.png").path
        for (out, extra) in [(tiled, [String]()), (whole, ["--whole"])] {
            let result = try CommandRunner.vqvae(["restore", "--checkpoint", try checkpoint(), "--input", input, "--out", out] + extra)
            XCTAssertEqual(result.status, 0, result.standardError)
        }
        let check = try CommandRunner.python("""
            import numpy as np, sys
            from PIL import Image
            t = np.asarray(Image.open(sys.argv[1])).astype(float); w = np.asarray(Image.open(sys.argv[2])).astype(float)
            mse = ((t - w) ** 2).mean(); psnr = 10 * np.log10(255 ** 2 / max(mse, 1e-12))
            # Tile origins of 28-pixel tiles with overlap 7 over 76 rows and 92 columns (TiledImage's plan).
            def origins(n, t=28, o=7):
                k = -(-(n - t) // (t - o)) + 1
                return [i * (n - t) // (k - 1) for i in range(k)]
            # The blend weights change fastest where one tile's window starts inside another: compare the
            # steps between neighbouring columns there with the tiled-minus-whole difference's steps elsewhere.
            diff = t - w
            steps = np.abs(np.diff(diff, axis=1)).mean(axis=0)
            edges = sorted({x + e for x in origins(92)[1:] for e in (-1, 0)} & set(range(len(steps))))
            ratio = steps[edges].mean() / max(steps.mean(), 1e-9)
            print(t.shape, round(psnr, 2), round(ratio, 3))
            """, [tiled, whole])
        XCTAssertEqual(check.status, 0, check.standardError)
        let fields = check.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines).components(separatedBy: ") ")
        XCTAssertEqual(fields.first, "(76, 92", "the restored image keeps the input's size: \(check.standardOutput)")
        let numbers = fields.last?.split(separator: " ").compactMap { Double($0) } ?? []
        print("restore: tiled vs whole-image \(numbers.first ?? .nan) dB, step ratio at tile edges \(numbers.last ?? .nan)")
        XCTAssertGreaterThan(numbers.first ?? 0, 20, "tiled restoration should agree with the whole-image run")
        XCTAssertLessThan(numbers.last ?? .infinity, 2, "no seam: the difference may not jump at tile edges")
        // The self-ensemble (76x92 turns into 92x76 for the quarter turns) keeps the size and stays
        // close to the plain run.
        let ensemble = folder.appendingPathComponent("ensemble.png").path
        let ensembled = try CommandRunner.vqvae(["restore", "--checkpoint", try checkpoint(), "--input", input, "--out", ensemble, "--ensemble"])
        XCTAssertEqual(ensembled.status, 0, ensembled.standardError)
        let close = try CommandRunner.python("""
            import numpy as np, sys
            from PIL import Image
            e = np.asarray(Image.open(sys.argv[1])).astype(float); t = np.asarray(Image.open(sys.argv[2])).astype(float)
            print(e.shape == t.shape, round(10 * np.log10(255 ** 2 / max(((e - t) ** 2).mean(), 1e-12)), 2), np.array_equal(e, t))
            """, [ensemble, tiled])
        let parts = close.standardOutput.split(separator: " ").map(String.init)
        XCTAssertEqual(parts.first, "True", close.standardOutput + close.standardError)
        XCTAssertGreaterThan(Double(parts.count > 1 ? parts[1] : "") ?? 0, 20, "the ensemble should stay close to one pass: \(close.standardOutput)")
        XCTAssertEqual(parts.last?.trimmingCharacters(in: .whitespacesAndNewlines), "False", "the ensemble averages eight different passes")

        // A folder of PNGs and an HDF5 file of other-size images.
        let inFolder = folder.appendingPathComponent("pngs"), outFolder = folder.appendingPathComponent("restored")
        try FileManager.default.createDirectory(at: inFolder, withIntermediateDirectories: true)
        for name in ["a.png", "b.png"] { try FileManager.default.copyItem(atPath: input, toPath: inFolder.appendingPathComponent(name).path) }
        let folderRun = try CommandRunner.vqvae(["restore", "--checkpoint", try checkpoint(), "--input", inFolder.path,
                                                 "--out", outFolder.path, "--corrupt", "noise:0.2",
                                                 "--damaged-out", folder.appendingPathComponent("damaged").path])
        XCTAssertEqual(folderRun.status, 0, folderRun.standardError)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: outFolder.path).sorted(), ["a.png", "b.png"])
        let h5In = folder.appendingPathComponent("big.h5").path, h5Out = folder.appendingPathComponent("big-restored.h5").path
        _ = try CommandRunner.python("""
            import h5py, numpy as np, sys
            h5py.File(sys.argv[1], 'w').create_dataset('images', data=np.random.default_rng(1).integers(0, 255, (3, 40, 36, 1), dtype=np.uint8))
            """, [h5In])
        let h5Run = try CommandRunner.vqvae(["restore", "--checkpoint", try checkpoint(), "--input", h5In, "--out", h5Out])
        XCTAssertEqual(h5Run.status, 0, h5Run.standardError)
        let shape = try CommandRunner.python("import h5py,sys; d=h5py.File(sys.argv[1])['images']; print(d.shape, d.dtype)", [h5Out])
        XCTAssertEqual(shape.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines), "(3, 40, 36, 1) uint8")
        // Mismatched kinds fail with one line.
        let mismatch = try CommandRunner.vqvae(["restore", "--checkpoint", try checkpoint(), "--input", input, "--out", h5Out])
        XCTAssertNotEqual(mismatch.status, 0)
        XCTAssertTrue(mismatch.standardError.contains("same kind"), mismatch.standardError)
    }

    /// The linear probe finds most of MNIST's class information in the codes.
    func testProbeAccuracyOnMNIST() throws {
        let result = try CommandRunner.vqvae(["probe", "--checkpoint", try checkpoint(), "--train", try PreparedData.mnist("train"),
                                              "--test", try PreparedData.mnist("test"), "--epochs", "10", "--json"])
        XCTAssertEqual(result.status, 0, result.standardError)
        let object = try json(result.standardOutput)
        let accuracy = (object["test_accuracy"] as? Double) ?? 0
        print("probe: test accuracy \(accuracy), train accuracy \(object["train_accuracy"] ?? "-")")
        XCTAssertEqual(object["classes"] as? Int, 10)
        XCTAssertGreaterThan(accuracy, 0.8, "a linear probe on MNIST codes should reach well above chance (0.1)")
    }

    /// --model vae and --model ae train (the loss falls), checkpoint, resume and evaluate.
    func testVAEAndAutoencoderTrainResumeAndEvaluate() throws {
        for model in ["vae", "ae"] {
            let out = try CommandRunner.temporaryFolder("model-\(model)")
            let data = try PreparedData.mnist("train")
            let base = ["train", "--model", model, "--data", data, "--out", out.path, "--global-batch-size", "32",
                        "--log-every", "1"] + Self.architecture
            let first = try CommandRunner.mpirun(ranks: 2, "vqvae", base + ["--steps", "60"])
            XCTAssertEqual(first.status, 0, first.standardError)
            let resumed = try CommandRunner.mpirun(ranks: 2, "vqvae", base + ["--steps", "80", "--resume", "auto"])
            XCTAssertEqual(resumed.status, 0, resumed.standardError)
            XCTAssertTrue(resumed.standardOutput.contains("resuming from"), resumed.standardOutput)
            let lines = try String(contentsOfFile: out.appendingPathComponent("metrics.jsonl").path, encoding: .utf8)
                .split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            let losses = lines.compactMap { $0["loss"] as? Double }
            XCTAssertEqual(losses.count, 80, "one record per step over both runs")
            let early = losses.prefix(5).reduce(0, +) / 5, late = losses.suffix(5).reduce(0, +) / 5
            print("\(model): loss \(early) over the first 5 steps, \(late) over the last 5")
            XCTAssertLessThan(late, early * 0.6, "\(model): the loss should fall")
            if model == "vae" { XCTAssertNotNil(lines.last?["kl"], "the VAE logs its KL term") }
            XCTAssertNil(lines.last?["perplexity"], "\(model) has no codebook")
            let eval = try CommandRunner.vqvae(["eval", "--checkpoint", out.appendingPathComponent("checkpoints/step-00000080.h5").path,
                                                "--data", try PreparedData.mnist("test"), "--limit", "100", "--json"])
            XCTAssertEqual(eval.status, 0, eval.standardError)
            let figures = try json(eval.standardOutput)
            XCTAssertEqual(figures["model"] as? String, model)
            XCTAssertTrue(figures["perplexity"] is NSNull, "\(model): perplexity is null")
            XCTAssertGreaterThan((figures["psnr"] as? Double) ?? 0, 10)
            // Options that need a codebook are refused.
            let refused = try CommandRunner.vqvae(["train", "--model", model, "--data", data, "--out", out.path + "-x",
                                                   "--steps", "1", "--dead-code-threshold", "1"])
            XCTAssertNotEqual(refused.status, 0)
            XCTAssertTrue(refused.standardError.contains("--dead-code-threshold"), refused.standardError)
        }
    }

    /// A checkpoint whose configuration asks for an absurd model (edited in place, tensors left
    /// as they were) is refused with one line naming the memory it would need, before anything is
    /// allocated, by every command that builds a model from it, also under 2 ranks.
    func testHostileCheckpointConfigurationIsRefusedBeforeAllocating() throws {
        let folder = try CommandRunner.temporaryFolder("hostile-config")
        for (name, edit, expected) in [
            ("codes", "m['codes'] = 1 << 20; m['code_dimension'] = 4096", "needs about"),
            ("hidden", "m['hidden'] = 1 << 20", "needs about"),
            ("code-dim", "m['code_dimension'] = 600000; m['residual_hidden'] = 600000", "needs about"),
            ("blocks", "m['residual_blocks'] = 900; m['hidden'] = 4096", "needs about"),
            ("overflow", "m['codes'] = 1 << 62", "--codes must be at most"),
            ("side", "m['height'] = 1 << 40", "1099511627776"),
        ] {
            let path = folder.appendingPathComponent("\(name).h5").path
            try FileManager.default.copyItem(atPath: try checkpoint(), toPath: path)
            let edited = try CommandRunner.python("""
                import h5py, json, sys
                with h5py.File(sys.argv[1], 'r+') as f:
                    c = json.loads(f.attrs['config']); m = c['model']; \(edit); f.attrs['config'] = json.dumps(c)
                """, [path])
            XCTAssertEqual(edited.status, 0, edited.standardError)
            let out = folder.appendingPathComponent("\(name)-run").path
            for (ranks, arguments) in [
                (0, ["eval", "--checkpoint", path, "--data", try PreparedData.mnist("test"), "--limit", "10"]),
                (2, ["eval", "--checkpoint", path, "--data", try PreparedData.mnist("test"), "--limit", "10"]),
                (0, ["encode", "--checkpoint", path, "--data", try PreparedData.mnist("test"), "--out", out + "-codes.h5"]),
                (2, ["train", "--data", try PreparedData.mnist("train"), "--out", out, "--steps", "1", "--resume", path]),
            ] {
                let result = try CommandRunner.mpirun(ranks: ranks, "vqvae", arguments, timeout: 60)
                XCTAssertNotEqual(result.status, 0, "\(name): \(arguments[0]) accepted it")
                // One message (each rank may print it, prefixed with its rank).
                let lines = Set(result.standardError.split(separator: "\n").filter { $0.contains("error:") }
                    .map { $0.replacingOccurrences(of: #"^\[rank \d+\] "#, with: "", options: .regularExpression) })
                XCTAssertTrue(result.standardError.contains(expected), "\(name) \(arguments[0]): \(result.standardError)")
                XCTAssertEqual(lines.count, 1, "\(name) \(arguments[0]): one line: \(result.standardError)")
                XCTAssertFalse(result.standardError.contains("Fatal error"), result.standardError)
            }
        }
    }

    /// Dead-code restart and k-means initialisation chosen on rank 0 and broadcast: under 2 ranks
    /// the parameters and codebooks stay identical (checked after every step) and codes are re-seeded.
    func testDeadCodeRestartAndKMeansKeepRanksIdentical() throws {
        var used: [String: Int] = [:]
        for threshold in ["0", "1"] {
            let out = try CommandRunner.temporaryFolder("dead-\(threshold)")
            let result = try CommandRunner.mpirun(ranks: 2, "vqvae", [
                "train", "--data", try PreparedData.mnist("train"), "--out", out.path, "--steps", "60", "--global-batch-size", "32",
                "--kmeans-init", "--dead-code-threshold", threshold, "--sync-check-every", "1", "--log-every", "1",
            ] + Self.architecture)
            XCTAssertEqual(result.status, 0, result.standardError)
            XCTAssertTrue(result.standardOutput.contains("identical on all 2 ranks"), result.standardOutput)
            let lines = try String(contentsOfFile: out.appendingPathComponent("metrics.jsonl").path, encoding: .utf8)
                .split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            let restarted = lines.compactMap { $0["codes_restarted"] as? Int }.reduce(0, +)
            used[threshold] = lines.suffix(10).compactMap { $0["codes_used"] as? Int }.max() ?? 0
            if threshold == "1" {
                XCTAssertGreaterThan(restarted, 0, "some codes should have been re-seeded")
            } else {
                XCTAssertEqual(restarted, 0)
            }
        }
        print("codes used over the last 10 steps: without restart \(used["0"] ?? 0), with \(used["1"] ?? 0)")
    }
}
