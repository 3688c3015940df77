import Foundation
import XCTest

/// Multi-rank behaviour under a real `mpirun` (2 and 3 ranks, oversubscribed on CI's 2 cores).
final class DistributedTests: XCTestCase {
    func testCollectivesOnTwoAndThreeRanks() throws {
        for ranks in [2, 3] {
            let result = try CommandRunner.mpirun(ranks: ranks, "mpi-checks", ["--ranks", "\(ranks)"])
            XCTAssertEqual(result.status, 0, result.standardError)
            XCTAssertTrue(result.standardOutput.contains("mpi-checks: ok on \(ranks) ranks"), result.standardOutput)
        }
        // The checks refuse to pass in a world of the wrong size.
        let wrong = try CommandRunner.mpirun(ranks: 2, "mpi-checks", ["--ranks", "3"])
        XCTAssertNotEqual(wrong.status, 0)
        XCTAssertTrue(wrong.standardError.contains("started with 2 rank(s), expected 3"), wrong.standardError)
        let alone = try CommandRunner.mpirun(ranks: 0, "mpi-checks", ["--ranks", "2"])
        XCTAssertNotEqual(alone.status, 0)
    }

    func testAbortOnOneRankEndsTheWholeJob() throws {
        let start = Date()
        let result = try CommandRunner.mpirun(ranks: 3, "mpi-checks", ["--ranks", "3", "--abort", "1"], timeout: 60)
        let seconds = Date().timeIntervalSince(start)
        print("abort on rank 1 of 3 ended the job in \(String(format: "%.2f", seconds)) s")
        XCTAssertNotEqual(result.status, 0)
        XCTAssertLessThan(seconds, 10)
        XCTAssertTrue(result.standardError.contains("[rank 1] mpi-checks: aborting on purpose"), result.standardError)
        XCTAssertFalse(result.standardError.contains("is still running"), result.standardError)
    }

    /// W = 1, 2 and 3 ranks with the same global batch (G = 12) and seed compute the same
    /// gradients and, after 5 steps, the same parameters and codebook within floating-point
    /// tolerance; every rank of a run ends with identical parameters.
    func testOneTwoAndThreeRanksTrainTheSameModel() throws {
        let data = try PreparedData.mnist("test")
        var folders: [String] = []
        for ranks in [1, 2, 3] {
            let out = try CommandRunner.temporaryFolder("equivalence-\(ranks)")
            let result = try CommandRunner.mpirun(ranks: ranks, "vqvae", [
                "train", "--data", data, "--out", out.path, "--steps", "5", "--global-batch-size", "12", "--seed", "11",
                "--checkpoint-every", "1", "--log-every", "1", "--hidden", "32", "--res-hidden", "16", "--code-dim", "16",
                "--codes", "64", "--bucket-mb", "0.01", "--sync-check-every", "1"])
            XCTAssertEqual(result.status, 0, result.standardError)
            if ranks > 1 {
                XCTAssertTrue(result.standardOutput.contains("identical on all \(ranks) ranks"), result.standardOutput)
            }
            XCTAssertEqual(result.standardOutput.components(separatedBy: "step 5/5").count, 2, "rank 0 alone prints progress")
            folders.append(out.appendingPathComponent("checkpoints").path)
        }
        let compare = """
        import sys, h5py, numpy as np
        one, others = sys.argv[1], sys.argv[2:]
        def rel(a, b): return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))
        worst_grad = worst_param = worst_norm = worst_noise = 0.0
        for other in others:
            a, b = h5py.File(other + '/step-00000001.h5', 'r'), h5py.File(one + '/step-00000001.h5', 'r')
            for name in b['optimizer/adam_m']:
                pass
            names = []
            b['optimizer/adam_m'].visit(lambda n: names.append(n) if isinstance(b['optimizer/adam_m'][n], h5py.Dataset) else None)
            assert len(names) == 30, names
            for n in names:  # adam_m after one step is 0.1 * gradient
                worst_grad = max(worst_grad, rel(a['optimizer/adam_m/' + n][()], b['optimizer/adam_m/' + n][()]))
            for n in ('model/quantizer/ema_count', 'model/quantizer/ema_sum', 'model/quantizer/codebook'):
                worst_grad = max(worst_grad, rel(a[n][()], b[n][()]))
            # After 5 steps: entries whose step-1 gradient is rounding noise (below 1e-6 of their
            # tensor's largest: dead ReLU channels) are judged apart, see below.
            g1 = h5py.File(one + '/step-00000001.h5', 'r')
            a, b = h5py.File(other + '/step-00000005.h5', 'r'), h5py.File(one + '/step-00000005.h5', 'r')
            names = []
            b.visit(lambda n: names.append(n) if isinstance(b[n], h5py.Dataset) else None)
            for n in names:
                x, y = a[n][()], b[n][()]
                if y.dtype.kind != 'f':
                    worst_param = max(worst_param, rel(x, y))
                    continue
                key = 'optimizer/adam_m/' + n[len('model/'):]
                live = np.abs(g1[key][()]) > 1e-6 * np.abs(g1[key][()]).max() if n.startswith('model/') and key in g1 else np.ones(y.shape, bool)
                worst_param = max(worst_param, float(np.abs(x - y)[live].max() / max(np.abs(y).max(), 1e-12)) if live.any() else 0)
                worst_norm = max(worst_norm, float(np.linalg.norm(x - y) / max(np.linalg.norm(y), 1e-12)))
                worst_noise = max(worst_noise, float(np.abs(x - y)[~live].max()) if (~live).any() else 0)
            assert a.attrs['world_size'] != b.attrs['world_size']
        print(f'{worst_grad:.3e} {worst_param:.3e} {worst_norm:.3e} {worst_noise:.3e}')
        """
        let result = try CommandRunner.python(compare, folders)
        XCTAssertEqual(result.status, 0, result.standardError)
        let figures = result.standardOutput.split(separator: " ").compactMap { Double($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        XCTAssertEqual(figures.count, 4, result.standardOutput)
        guard figures.count == 4 else { return }
        print("W = 2, 3 vs W = 1: step-1 gradients and EMA statistics differ by \(figures[0]); after 5 steps every tensor by \(figures[1]) (relative to its largest entry) where the step-1 gradient is above rounding noise, by \(figures[2]) in norm, and entries with a noise gradient by \(figures[3]) (absolute)")
        XCTAssertLessThan(figures[0], 1e-5)
        XCTAssertLessThan(figures[1], 1e-4)
        XCTAssertLessThan(figures[2], 1e-4)
        // An entry whose true gradient is zero (a dead ReLU channel's weights: 1e-11 of rounding,
        // where the tensor's largest gradients are 2e-3) gets a noise gradient whose sign depends
        // on the summation order, and Adam's m / (sqrt(v) + eps) turns it into a full step of up
        // to lr = 3e-4 either way: 5 steps can part two runs by 10 lr at most.
        XCTAssertLessThan(figures[3], 10 * 3e-4)
    }

    /// A rank that cannot read its share (a damaged chunk only rank 1 reads) ends the whole job
    /// within seconds with a non-zero exit and the message naming the file.
    func testAnErrorOnOneRankEndsTheJob() throws {
        let folder = try CommandRunner.temporaryFolder("damaged-share")
        let good = folder.appendingPathComponent("good.h5").path, bad = folder.appendingPathComponent("bad.h5").path
        let make = """
        import sys, h5py, numpy as np
        good, bad = sys.argv[1:3]
        with h5py.File(good, 'w') as f:
            f.create_dataset('images', data=np.full((4, 8, 8, 3), 7, np.uint8), chunks=(1, 8, 8, 3))
        with h5py.File(bad, 'w') as f:
            f.create_dataset('images', data=np.full((4, 8, 8, 3), 0xAB, np.uint8), chunks=(1, 8, 8, 3), fletcher32=True)
        raw = bytearray(open(bad, 'rb').read())
        at = raw.find(bytes([0xAB]) * 192)
        assert at > 0
        raw[at + 100] ^= 0xFF
        open(bad, 'wb').write(raw)
        """
        XCTAssertEqual(try CommandRunner.python(make, [good, bad]).status, 0)
        let out = try CommandRunner.temporaryFolder("damaged-share-out")
        let start = Date()
        let result = try CommandRunner.mpirun(ranks: 2, "vqvae", [
            "train", "--data", good, bad, "--out", out.path, "--steps", "3", "--global-batch-size", "8", "--no-shuffle",
            "--hidden", "8", "--res-hidden", "4", "--code-dim", "4", "--codes", "8"], timeout: 120)
        let seconds = Date().timeIntervalSince(start)
        print("a read error on rank 1 of 2 ended the job in \(String(format: "%.2f", seconds)) s")
        XCTAssertNotEqual(result.status, 0)
        XCTAssertLessThan(seconds, 15)
        XCTAssertTrue(result.standardError.contains("[rank 1] error: \(bad): reading rows"), result.standardError)
    }

    /// A non-finite loss stops the run naming the step (reported once, by rank 0), or is skipped
    /// with --skip-nonfinite; no checkpoint holds NaN.
    func testNonFiniteLossStopsOrIsSkipped() throws {
        let folder = try CommandRunner.temporaryFolder("nan")
        let path = folder.appendingPathComponent("nan.h5").path
        let make = """
        import sys, h5py, numpy as np
        x = np.random.default_rng(0).random((16, 8, 8, 1), dtype=np.float32)
        x[5, 3, 3, 0] = np.nan   # in the first global batch (images 0..7)
        with h5py.File(sys.argv[1], 'w') as f: f.create_dataset('images', data=x)
        """
        XCTAssertEqual(try CommandRunner.python(make, [path]).status, 0)
        let small = ["--data", path, "--steps", "4", "--global-batch-size", "8", "--no-shuffle",
                     "--hidden", "8", "--res-hidden", "4", "--code-dim", "4", "--codes", "8"]
        let stopped = try CommandRunner.temporaryFolder("nan-stop")
        let result = try CommandRunner.mpirun(ranks: 2, "vqvae", ["train", "--out", stopped.path] + small)
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.standardError.contains("loss is nan at step 1"), result.standardError)
        XCTAssertEqual(result.standardError.components(separatedBy: "loss is nan").count, 2, "reported once: \(result.standardError)")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: stopped.appendingPathComponent("checkpoints").path), [])

        let skipping = try CommandRunner.temporaryFolder("nan-skip")
        let skipped = try CommandRunner.mpirun(ranks: 2, "vqvae", ["train", "--out", skipping.path, "--skip-nonfinite"] + small)
        XCTAssertEqual(skipped.status, 0, skipped.standardError)
        XCTAssertTrue(skipped.standardOutput.contains("skipped 2 step(s) with a non-finite loss"), skipped.standardOutput)
        let check = """
        import sys, h5py, numpy as np
        f = h5py.File(sys.argv[1], 'r'); names = []
        f.visit(lambda n: names.append(n) if isinstance(f[n], h5py.Dataset) else None)
        assert all(np.isfinite(f[n][()]).all() for n in names)
        assert f['optimizer'].attrs['t'] == 2
        """
        let verified = try CommandRunner.python(check, [skipping.appendingPathComponent("checkpoints/step-00000004.h5").path])
        XCTAssertEqual(verified.status, 0, verified.standardError)
    }
}
