import Foundation
import XCTest

/// `vqvae train` run as a user runs it: the built binary, real files, exit codes and messages.
final class TrainCommandTests: XCTestCase {
    /// Writes a small HDF5 file with h5py; `body` is Python that fills the open file `f`.
    func makeFile(_ name: String, _ body: String) throws -> String {
        let folder = try CommandRunner.temporaryFolder("input-\(name)")
        let path = folder.appendingPathComponent(name).path
        let script = "import sys, h5py, numpy as np\nwith h5py.File(sys.argv[1], 'w') as f:\n"
            + body.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n")
        let result = try CommandRunner.python(script, [path])
        XCTAssertEqual(result.status, 0, "h5py could not write the test file: \(result.standardError)")
        return path
    }

    /// Asserts a non-zero exit and exactly one line on standard error that contains `fragment`.
    func assertCleanFailure(_ arguments: [String], mentions fragment: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let out = try CommandRunner.temporaryFolder("failure-out")
        let result = try CommandRunner.vqvae(["train", "--out", out.path, "--steps", "2"] + arguments, file: file, line: line)
        XCTAssertNotEqual(result.status, 0, "expected a failure for \(arguments)", file: file, line: line)
        let lines = result.standardError.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, "expected one line on stderr, got:\n\(result.standardError)", file: file, line: line)
        XCTAssertTrue(result.standardError.contains(fragment),
                      "stderr should mention '\(fragment)': \(result.standardError)", file: file, line: line)
        XCTAssertFalse(result.standardError.contains("Fatal error"), file: file, line: line)
        let checkpoints = out.appendingPathComponent("checkpoints")
        let written = (try? FileManager.default.contentsOfDirectory(atPath: checkpoints.path)) ?? []
        XCTAssertTrue(written.isEmpty, "no checkpoint may be written on bad input: \(written)", file: file, line: line)
    }

    func testMissingFile() throws {
        try assertCleanFailure(["--data", "/nonexistent/train.h5"], mentions: "/nonexistent/train.h5: no such file")
    }

    func testNotAnHDF5File() throws {
        let folder = try CommandRunner.temporaryFolder("text")
        let path = folder.appendingPathComponent("notes.h5").path
        try "just text".write(toFile: path, atomically: true, encoding: .utf8)
        try assertCleanFailure(["--data", path], mentions: "not an HDF5 file")
    }

    func testMissingImagesDataset() throws {
        let path = try makeFile("noimages.h5", "f.create_dataset('pixels', data=np.zeros((8, 8, 8, 1), np.uint8))")
        try assertCleanFailure(["--data", path], mentions: "no dataset 'images'")
    }

    func testWrongRank() throws {
        let path = try makeFile("rank3.h5", "f.create_dataset('images', data=np.zeros((64, 8, 8), np.uint8))")
        try assertCleanFailure(["--data", path], mentions: "expected 4 dimensions")
    }

    func testWrongChannels() throws {
        let path = try makeFile("c4.h5", "f.create_dataset('images', data=np.zeros((64, 8, 8, 4), np.uint8))")
        try assertCleanFailure(["--data", path], mentions: "expected C = 1 or 3")
    }

    func testWrongDtype() throws {
        let path = try makeFile("int16.h5", "f.create_dataset('images', data=np.zeros((64, 8, 8, 3), np.int16))")
        try assertCleanFailure(["--data", path], mentions: "dtype int16; expected uint8 or float32")
    }

    func testSizeNotDivisibleByDownsampling() throws {
        let path = try makeFile("odd.h5", "f.create_dataset('images', data=np.zeros((64, 10, 8, 3), np.uint8))")
        try assertCleanFailure(["--data", path], mentions: "not divisible by 2^down = 4")
    }

    func testFewerImagesThanOneBatch() throws {
        let path = try makeFile("few.h5", "f.create_dataset('images', data=np.zeros((20, 8, 8, 3), np.uint8))")
        try assertCleanFailure(["--data", path, "--global-batch-size", "32"], mentions: "fewer than one global batch of 32")
    }

    func testFilesThatDisagree() throws {
        let a = try makeFile("a.h5", "f.create_dataset('images', data=np.zeros((40, 8, 8, 3), np.uint8))")
        let b = try makeFile("b.h5", "f.create_dataset('images', data=np.zeros((40, 8, 8, 1), np.uint8))")
        try assertCleanFailure(["--data", a, b], mentions: "all files must agree")
    }

    func testRefusesToOverwriteAnEarlierRun() throws {
        let data = try makeFile("ok.h5", "f.create_dataset('images', data=np.random.default_rng(0).integers(0, 255, (40, 8, 8, 3), dtype=np.uint8))")
        let out = try CommandRunner.temporaryFolder("twice")
        let tiny = ["--hidden", "8", "--res-hidden", "4", "--code-dim", "4", "--codes", "8", "--global-batch-size", "4"]
        let first = try CommandRunner.vqvae(["train", "--data", data, "--out", out.path, "--steps", "0"] + tiny)
        XCTAssertEqual(first.status, 0, first.standardError)
        let path = out.appendingPathComponent("checkpoints/step-00000000.h5").path
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        let second = try CommandRunner.vqvae(["train", "--data", data, "--out", out.path, "--steps", "0"] + tiny)
        XCTAssertNotEqual(second.status, 0)
        XCTAssertTrue(second.standardError.contains("already holds checkpoints"), second.standardError)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), before, "the earlier checkpoint must be untouched")
    }

    func testHelpDocumentsEveryFlag() throws {
        let result = try CommandRunner.vqvae(["train", "--help"])
        XCTAssertEqual(result.status, 0)
        for flag in ["--data", "--out", "--steps", "--global-batch-size", "--lr", "--seed", "--no-shuffle", "--hidden",
                     "--res-hidden", "--res-blocks", "--down", "--code-dim", "--codes", "--commitment", "--decay",
                     "--ema-eps", "--codebook", "--log-every", "--checkpoint-every", "--kmeans-init", "--images-key",
                     "--threads", "--weight-decay"] {
            XCTAssertTrue(result.standardOutput.contains(flag), "train --help does not mention \(flag)")
        }
    }

    /// `--steps 0` writes the initial checkpoint; the same seed gives the same weights, another seed
    /// different ones; h5py reads the spec's layout.
    func testInitialCheckpointIsDeterministicAndReadableByH5py() throws {
        let data = try PreparedData.mnist("test")
        var paths: [String] = []
        for (name, seed) in [("a", "7"), ("b", "7"), ("c", "8")] {
            let out = try CommandRunner.temporaryFolder("init-\(name)")
            let result = try CommandRunner.vqvae(["train", "--data", data, "--out", out.path, "--steps", "0", "--seed", seed])
            XCTAssertEqual(result.status, 0, result.standardError)
            let path = out.appendingPathComponent("checkpoints/step-00000000.h5").path
            XCTAssertTrue(result.standardOutput.contains(path), result.standardOutput)
            paths.append(path)
        }
        let check = """
        import sys, json, h5py, numpy as np
        a, b, c = (h5py.File(p, 'r') for p in sys.argv[1:4])
        names = []
        a.visit(lambda n: names.append(n) if isinstance(a[n], h5py.Dataset) else None)
        def same(x, y): return all(np.array_equal(x[n][()], y[n][()]) for n in names)
        assert same(a, b), 'same seed must give identical tensors'
        assert not np.array_equal(a['model/encoder/down0/weight'][()], c['model/encoder/down0/weight'][()]), 'seeds must differ'
        assert a.attrs['format'] == 'vqvae-checkpoint' and a.attrs['format_version'] == 1
        assert a.attrs['step'] == 0 and a.attrs['samples_seen'] == 0 and a.attrs['model'] == 'vqvae'
        cfg = json.loads(a.attrs['config']); assert cfg['model']['hidden'] == 128 and cfg['seed'] == 7
        shapes = {'encoder/down0': (64, 1, 4, 4), 'encoder/down1': (128, 64, 4, 4), 'encoder/conv': (128, 128, 3, 3),
                  'encoder/res0/conv3x3': (32, 128, 3, 3), 'encoder/res0/conv1x1': (128, 32, 1, 1),
                  'encoder/res1/conv3x3': (32, 128, 3, 3), 'encoder/res1/conv1x1': (128, 32, 1, 1),
                  'pre_quant': (64, 128, 1, 1), 'decoder/conv': (128, 64, 3, 3),
                  'decoder/res0/conv3x3': (32, 128, 3, 3), 'decoder/res0/conv1x1': (128, 32, 1, 1),
                  'decoder/res1/conv3x3': (32, 128, 3, 3), 'decoder/res1/conv1x1': (128, 32, 1, 1),
                  'decoder/up0': (128, 64, 4, 4), 'decoder/up1': (64, 1, 4, 4)}
        total = 0
        for name, shape in shapes.items():
            for group in ('model', 'optimizer/adam_m', 'optimizer/adam_v'):
                w, bias = a[f'{group}/{name}/weight'], a[f'{group}/{name}/bias']
                assert w.shape == shape, (name, w.shape, shape)
                out = shape[1] if name.startswith('decoder/up') else shape[0]
                assert bias.shape == (out,), (name, bias.shape)
                for d in (w, bias):
                    assert d.dtype == np.dtype('<f4') and d.chunks is not None and d.fletcher32, (name, d.dtype, d.chunks)
            total += a[f'model/{name}/weight'].size + a[f'model/{name}/bias'].size
            fan_in = shape[1] * shape[2] * shape[3]
            assert np.abs(a[f'model/{name}/weight'][()]).max() <= 1 / np.sqrt(fan_in) + 1e-7, name
        assert a['model/quantizer/codebook'].shape == (512, 64) and a['model/quantizer/ema_count'].shape == (512,)
        assert a['model/quantizer/ema_sum'].shape == (512, 64)
        assert np.all(a['model/quantizer/ema_count'][()] == 0)
        assert np.array_equal(a['model/quantizer/ema_sum'][()], a['model/quantizer/codebook'][()])
        cb = a['model/quantizer/codebook'][()]; assert abs(cb.mean()) < 0.02 and abs(cb.std() - 1) < 0.02, (cb.mean(), cb.std())
        assert len(names) == len(shapes) * 6 + 3, len(names)
        assert a['optimizer'].attrs['t'] == 0 and abs(a['optimizer'].attrs['lr'] - 3e-4) < 1e-9
        assert a['data'].attrs['seed'] == 7 and a['data'].attrs['shuffle'] == 1
        print('ok', total)
        """
        let result = try CommandRunner.python(check, paths)
        XCTAssertEqual(result.status, 0, result.standardError)
        // 662,723 parameters for C = 3 (spec/model.md: about 663k); C = 1 has 2*1024 fewer weights
        // in the first and last layers and 2 fewer biases.
        XCTAssertEqual(result.standardOutput, "ok 658625\n")
    }

    /// The same seed and flags give the same run, bit for bit, shuffling included.
    func testSameSeedGivesTheSameRun() throws {
        let data = try PreparedData.mnist("test")
        let small = ["--hidden", "16", "--res-hidden", "8", "--code-dim", "8", "--codes", "32", "--global-batch-size", "8"]
        var paths: [String] = []
        for name in ["a", "b"] {
            let out = try CommandRunner.temporaryFolder("same-run-\(name)")
            let result = try CommandRunner.vqvae(["train", "--data", data, "--out", out.path, "--steps", "6", "--seed", "3"] + small)
            XCTAssertEqual(result.status, 0, result.standardError)
            paths.append(out.appendingPathComponent("checkpoints/step-00000006.h5").path)
        }
        let check = """
        import sys, h5py, numpy as np
        a, b = (h5py.File(p, 'r') for p in sys.argv[1:3])
        names = []
        a.visit(lambda n: names.append(n) if isinstance(a[n], h5py.Dataset) else None)
        assert len(names) > 10
        bad = [n for n in names if not np.array_equal(a[n][()], b[n][()])]
        assert not bad, bad
        assert a.attrs['samples_seen'] == 48 and a['optimizer'].attrs['t'] == 6
        print('identical')
        """
        let result = try CommandRunner.python(check, paths)
        XCTAssertEqual(result.status, 0, result.standardError)
        XCTAssertEqual(result.standardOutput, "identical\n")
    }

    /// A short run on real MNIST digits: the loss falls by more than half, and the progress line,
    /// metrics and final checkpoint are there.
    func testTrainingOnMNISTReducesTheLoss() throws {
        let data = try PreparedData.mnist("train")
        let out = try CommandRunner.temporaryFolder("mnist-run")
        let result = try CommandRunner.vqvae(["train", "--data", data, "--out", out.path, "--steps", "150",
                                              "--log-every", "10", "--checkpoint-every", "100", "--kmeans-init",
                                              "--hidden", "64", "--res-hidden", "16", "--code-dim", "32", "--codes", "128"])
        XCTAssertEqual(result.status, 0, result.standardError)
        let metrics = try String(contentsOf: out.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
            .split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        XCTAssertEqual(metrics.count, 16)  // step 1, then every 10 steps
        let first = metrics.first!["mse"] as! Double, last = metrics.last!["mse"] as! Double
        print("MNIST reconstruction MSE: \(first) at step 1 -> \(last) at step 150")
        XCTAssertLessThan(last, first / 2, "the reconstruction loss should at least halve")
        XCTAssertLessThan(last, 0.03)
        for name in ["step-00000100.h5", "step-00000150.h5"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("checkpoints/\(name)").path), name)
        }
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: out.appendingPathComponent("checkpoints").path)
            .filter { $0.hasPrefix(".") }
        XCTAssertEqual(leftovers, [], "no temporary files may remain")
        XCTAssertTrue(result.standardOutput.contains("step 150/150"))
        XCTAssertTrue(result.standardOutput.contains("img/s"))
    }
}
