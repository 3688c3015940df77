import Foundation
import XCTest

/// What a user meets on the command line, through the built binary: one error style with
/// documented exit statuses, negative values and unknown options, `--version`, what `eval` says
/// about the damage it measures, outputs it refuses to destroy, `inspect` on code files and
/// checkpoints, stopping a job through `mpirun`, and `scripts/export_pytorch.py` without PyTorch.
final class CommandLineTests: XCTestCase {
    static let tiny = ["--hidden", "16", "--res-hidden", "8", "--code-dim", "8", "--codes", "32", "--global-batch-size", "8"]

    /// A VQ-VAE trained for 2 steps on MNIST with `--corrupt noise:0.1`, once per test process.
    static let noisyModel: Result<String, Error> = Result {
        let out = try CommandRunner.temporaryFolder("cli-noisy-model")
        let result = try CommandRunner.vqvae(["train", "--data", try PreparedData.mnist("train"), "--out", out.path,
                                              "--steps", "2", "--corrupt", "noise:0.1"] + tiny)
        guard result.status == 0 else {
            throw NSError(domain: "CommandLineTests", code: 1, userInfo: [NSLocalizedDescriptionKey: result.standardError])
        }
        return out.appendingPathComponent("checkpoints/step-00000002.h5").path
    }

    func lines(_ text: String) -> [String] { text.split(separator: "\n").map(String.init) }

    /// Line `index` of `text` ("" when there are fewer).
    func line(_ index: Int, of text: String) -> String {
        let all = lines(text)
        return index < all.count ? all[index] : ""
    }

    // MARK: Errors and exit status

    /// Asserts exit status 2, nothing on standard output, and exactly the two lines
    /// `error: <message>` and `see '<help>'` on standard error.
    func assertUsageError(_ arguments: [String], _ message: String, help: String = "vqvae train --help",
                          file: StaticString = #filePath, line: UInt = #line) throws {
        let result = try CommandRunner.vqvae(arguments, file: file, line: line)
        XCTAssertEqual(result.status, 2, "\(arguments): \(result.standardError)", file: file, line: line)
        XCTAssertEqual(lines(result.standardError), ["error: \(message)", "see '\(help)'"], "\(arguments)", file: file, line: line)
        XCTAssertEqual(result.standardOutput, "", file: file, line: line)
    }

    /// Usage errors, ArgumentParser's and ours alike: one `error:` line, a hint, status 2, and
    /// nothing read or written (the data file does not exist, the output folder is not made).
    func testUsageErrorsAreOneLineAndExitWithStatus2() throws {
        let out = try CommandRunner.temporaryFolder("cli-usage").appendingPathComponent("run").path
        let train = ["train", "--data", "/nonexistent/train.h5", "--out", out]
        try assertUsageError(train + ["--steps", "-1"], "--steps must not be negative")
        try assertUsageError(train + ["--lr", "-1"], "--lr must be a positive number")
        try assertUsageError(train + ["--lr", "-3e-4"], "--lr must be a positive number")
        try assertUsageError(train + ["--settings", "run.yaml"], "unknown option '--settings'")
        try assertUsageError(["train", "--settings", "run.yaml"], "unknown option '--settings'")
        try assertUsageError(["train", "--out", out, "--settings", "run.yaml"], "unknown option '--settings'")
        try assertUsageError(train + ["--step", "5"], "unknown option '--step'. Did you mean '--steps'?")
        try assertUsageError(train + ["--steps"], "missing value for '--steps <steps>'")
        try assertUsageError(train + ["--steps", "ten"], "the value 'ten' is invalid for '--steps <steps>'")
        try assertUsageError(["train", "--out", out], "give at least one dataset with --data FILE")
        try assertUsageError(["train", "--data", "/nonexistent/train.h5"], "give an output folder with --out DIR")
        try assertUsageError(["eval", "--config", "x"], "unknown option '--config'", help: "vqvae eval --help")
        try assertUsageError(["bench", "--steps", "-5"], "--batch, --steps and --threads must be positive", help: "vqvae bench --help")
        try assertUsageError(["trian"], "unexpected argument 'trian'", help: "vqvae --help")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "a usage error must not create the output folder")
    }

    /// Every training control refuses a bad value with a usage error naming the flag, before
    /// anything is read or written.
    func testTrainingControlValuesAreChecked() throws {
        let out = try CommandRunner.temporaryFolder("cli-controls").appendingPathComponent("run").path
        let train = ["train", "--data", "/nonexistent/train.h5", "--out", out]
        let cosine = ["--lr-schedule", "cosine"], step = ["--lr-schedule", "step"]
        let cases: [([String], String)] = [
            (["--warmup-steps", "-1"], "--warmup-steps must not be negative"),
            (cosine + ["--lr-min", "-1e-5"], "--lr-min must be between 0 and --lr"),
            (cosine + ["--lr-min", "1e-3"], "--lr-min must be between 0 and --lr"),
            (cosine + ["--lr-decay-steps", "0"], "--lr-decay-steps must be at least 1"),
            (step, "--lr-schedule step needs --lr-step-every N with N at least 1"),
            (step + ["--lr-step-every", "-2"], "--lr-schedule step needs --lr-step-every N with N at least 1"),
            (step + ["--lr-step-every", "10", "--lr-step-factor", "0"], "--lr-step-factor must be in (0, 1]"),
            (step + ["--lr-step-every", "10", "--lr-step-factor", "1.5"], "--lr-step-factor must be in (0, 1]"),
            (["--lr-step-every", "10"], "--lr-step-every applies to --lr-schedule step, not constant"),
            (["--lr-min", "1e-5"], "--lr-min applies to --lr-schedule cosine, not constant"),
            (step + ["--lr-step-every", "10", "--lr-decay-steps", "5"], "--lr-decay-steps applies to --lr-schedule cosine, not step"),
            (["--clip-grad-norm", "-1"], "--clip-grad-norm must be 0 (off) or a positive number"),
            (["--clip-grad-norm", "inf"], "--clip-grad-norm must be 0 (off) or a positive number"),
            (["--weight-decay", "-0.1"], "--weight-decay must not be negative"),
            (["--dead-code-threshold", "-1"], "--dead-code-threshold must be 0 (off) or a positive number"),
            (["--kmeans-iterations", "-1"], "--kmeans-iterations must not be negative"),
            (["--kmeans-init", "--codebook-init", "sonnet"], "--kmeans-init contradicts --codebook-init sonnet; give one of them"),
        ]
        for (arguments, message) in cases { try assertUsageError(train + arguments, message) }
        for (flag, value) in [("--optimizer", "sgd"), ("--lr-schedule", "linear"), ("--codebook-init", "random")] {
            let result = try CommandRunner.vqvae(train + [flag, value])
            XCTAssertEqual(result.status, 2, result.standardError)
            XCTAssertEqual(lines(result.standardError).count, 2, result.standardError)
            XCTAssertTrue(result.standardError.hasPrefix("error: the value '\(value)' is invalid for '\(flag)"), result.standardError)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "a usage error must not create the output folder")
    }

    /// A failure while running: one `error:` line, status 1.
    func testRuntimeErrorsAreOneLineAndExitWithStatus1() throws {
        let out = try CommandRunner.temporaryFolder("cli-runtime")
        let result = try CommandRunner.vqvae(["train", "--data", "/nonexistent/train.h5", "--out", out.path])
        XCTAssertEqual(result.status, 1)
        XCTAssertEqual(lines(result.standardError), ["error: /nonexistent/train.h5: no such file"])
        // A negative value reaches the command's own check, whichever reports it.
        let eval = try CommandRunner.vqvae(["eval", "--checkpoint", try Self.noisyModel.get(), "--data", try PreparedData.mnist("test"),
                                            "--limit", "-1"])
        XCTAssertEqual(eval.status, 1)
        XCTAssertEqual(lines(eval.standardError), ["error: --limit must not be negative"])
    }

    /// Under mpirun every rank finds the usage error; rank 0 alone prints it, and mpirun returns 2.
    func testUsageErrorUnderMPIIsPrintedOnce() throws {
        let result = try CommandRunner.mpirun(ranks: 2, "vqvae", ["train", "--data", "/nonexistent/train.h5", "--out", "/nonexistent/run",
                                                                  "--steps", "-1"], timeout: 120)
        XCTAssertEqual(result.status, 2, result.standardError)
        XCTAssertEqual(lines(result.standardError).filter { $0.contains("error:") }, ["error: --steps must not be negative"],
                       result.standardError)
    }

    /// `--help` and `--version` print to standard output and exit 0, at the top and in a command.
    func testHelpAndVersionExitWithStatus0() throws {
        for arguments in [["--version"], ["train", "--version"]] {
            let result = try CommandRunner.vqvae(arguments)
            XCTAssertEqual(result.status, 0, result.standardError)
            XCTAssertNotNil(result.standardOutput.range(of: #"^vqvae \d+\.\d+\.\d+\n$"#, options: .regularExpression),
                            "\(arguments): \(result.standardOutput)")
            XCTAssertEqual(result.standardError, "")
        }
        for arguments in [["--help"], [], ["eval", "--help"], ["train", "--steps", "-1", "--help"]] {
            let result = try CommandRunner.vqvae(arguments)
            XCTAssertEqual(result.status, 0, "\(arguments): \(result.standardError)")
            XCTAssertTrue(result.standardOutput.contains("USAGE: vqvae"), "\(arguments): \(result.standardOutput)")
            XCTAssertEqual(result.standardError, "")
        }
        let eval = try CommandRunner.vqvae(["eval", "--help"])
        XCTAssertTrue(eval.standardOutput.contains("--force"), eval.standardOutput)
    }

    // MARK: eval

    /// The table names the damage evaluated and the damage the model was trained on; --json has
    /// both as `corrupt` and `trained_corrupt`.
    func testEvalSaysWhichDamageItMeasures() throws {
        let checkpoint = try Self.noisyModel.get()
        let base = ["eval", "--checkpoint", checkpoint, "--data", try PreparedData.mnist("test"), "--limit", "20"]
        let clean = try CommandRunner.vqvae(base)
        XCTAssertEqual(clean.status, 0, clean.standardError)
        XCTAssertEqual(line(1, of: clean.standardOutput),
                       "evaluating on clean inputs; the model was trained on noise:0.1 — pass --corrupt noise:0.1 to measure restoration")
        XCTAssertTrue(clean.standardOutput.contains("MSE"), clean.standardOutput)
        let same = try CommandRunner.vqvae(base + ["--corrupt", "noise:0.1"])
        XCTAssertEqual(line(1, of: same.standardOutput), "evaluating on noise:0.1, the damage the model was trained on")
        let other = try CommandRunner.vqvae(base + ["--corrupt", "mask:0.25"])
        XCTAssertEqual(line(1, of: other.standardOutput), "evaluating on mask:0.25; the model was trained on noise:0.1")

        for (extra, corrupt) in [([String](), ""), (["--corrupt", "noise:0.1"], "noise:0.1")] {
            let result = try CommandRunner.vqvae(base + extra + ["--json"])
            XCTAssertEqual(result.status, 0, result.standardError)
            let object = try JSONSerialization.jsonObject(with: Data(result.standardOutput.utf8)) as? [String: Any] ?? [:]
            XCTAssertEqual(object["corrupt"] as? String, corrupt, "\(object)")
            XCTAssertEqual(object["trained_corrupt"] as? String, "noise:0.1", "\(object)")
            for key in ["mse", "psnr", "ssim", "bpp", "images", "model", "checkpoint", "perplexity", "codes_used"] {
                XCTAssertNotNil(object[key], "eval --json lost \(key)")
            }
        }

        // A model trained on clean images, evaluated on clean images: nothing to say.
        let out = try CommandRunner.temporaryFolder("cli-clean-model")
        XCTAssertEqual(try CommandRunner.vqvae(["train", "--data", try PreparedData.mnist("train"), "--out", out.path, "--steps", "0"]
                                               + Self.tiny).status, 0)
        let plain = try CommandRunner.vqvae(["eval", "--checkpoint", out.appendingPathComponent("checkpoints/step-00000000.h5").path,
                                             "--data", try PreparedData.mnist("test"), "--limit", "20"])
        XCTAssertEqual(plain.status, 0, plain.standardError)
        XCTAssertFalse(plain.standardOutput.contains("evaluating on"), plain.standardOutput)
        XCTAssertTrue(line(1, of: plain.standardOutput).hasPrefix("MSE"), plain.standardOutput)
    }

    /// --recon-out and --grid-out never replace an input, nor an existing file without --force,
    /// on one rank or two (one error line, every rank exits).
    func testEvalRefusesToDestroyItsInputsOrExistingFiles() throws {
        let folder = try CommandRunner.temporaryFolder("cli-eval-outputs")
        let data = folder.appendingPathComponent("test.h5").path
        try FileManager.default.copyItem(atPath: try PreparedData.mnist("test"), toPath: data)
        let checkpoint = try Self.noisyModel.get()
        let original = try Data(contentsOf: URL(fileURLWithPath: data))
        let base = ["eval", "--checkpoint", checkpoint, "--data", data, "--limit", "20"]
        for ranks in [0, 2] {
            for (extra, message) in [(["--recon-out", data], "--recon-out \(data) is the input \(data)"),
                                     (["--recon-out", folder.path + "/../\(folder.lastPathComponent)/test.h5"], "is the input \(data)"),
                                     (["--grid-out", checkpoint], "--grid-out \(checkpoint) is the input \(checkpoint)")] {
                let result = try CommandRunner.mpirun(ranks: ranks, "vqvae", base + extra, timeout: 120)
                XCTAssertEqual(result.status, 1, "\(ranks) ranks, \(extra): \(result.standardError)")
                let errors = lines(result.standardError).filter { $0.contains("error:") }
                XCTAssertEqual(errors.count, 1, "\(ranks) ranks: one error line: \(result.standardError)")
                XCTAssertTrue(errors.first?.contains(message) ?? false, "\(ranks) ranks: \(result.standardError)")
                XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: data)), original, "the input was changed")
            }
        }
        let grid = folder.appendingPathComponent("grid.png").path
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: grid))
        for ranks in [0, 2] {
            let refused = try CommandRunner.mpirun(ranks: ranks, "vqvae", base + ["--grid-out", grid], timeout: 120)
            XCTAssertEqual(refused.status, 1)
            XCTAssertTrue(refused.standardError.contains("--grid-out \(grid) already exists; pass --force to replace it"),
                          refused.standardError)
            XCTAssertEqual(try String(contentsOfFile: grid, encoding: .utf8), "keep me")
        }
        let forced = try CommandRunner.mpirun(ranks: 2, "vqvae", base + ["--grid-out", grid, "--force"], timeout: 120)
        XCTAssertEqual(forced.status, 0, forced.standardError)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: grid)).prefix(4), Data([0x89, 0x50, 0x4E, 0x47]), "a PNG replaced it")
    }

    // MARK: inspect

    /// A code file is described; a checkpoint's configuration is indented JSON with sorted keys and
    /// its learning rate reads as it was given.
    func testInspectDescribesCodeFilesAndLaysOutTheConfiguration() throws {
        let checkpoint = try Self.noisyModel.get()
        let codes = try CommandRunner.temporaryFolder("cli-inspect").appendingPathComponent("codes.h5").path
        let encoded = try CommandRunner.vqvae(["encode", "--checkpoint", checkpoint, "--data", try PreparedData.mnist("test"),
                                               "--limit", "30", "--out", codes])
        XCTAssertEqual(encoded.status, 0, encoded.standardError)
        let described = try CommandRunner.vqvae(["inspect", codes])
        XCTAssertEqual(described.status, 0, described.standardError)
        XCTAssertEqual(Array(lines(described.standardOutput).prefix(3)), [
            "\(codes): code file (format version 1)",
            "  30 images of H=28 W=28 C=1, each a latent grid of 7x7 codes",
            "  codebook size 32, 5 bits per code, 919 packed bytes (0.3126 bits per pixel)",
        ])
        XCTAssertTrue(line(3, of: described.standardOutput).hasPrefix("  checkpoint: \(checkpoint), codebook checksum "),
                      described.standardOutput)

        let inspected = try CommandRunner.vqvae(["inspect", checkpoint])
        XCTAssertEqual(inspected.status, 0, inspected.standardError)
        let text = inspected.standardOutput
        XCTAssertTrue(text.contains("  optimizer: adam t=2 lr=0.0003\n"), text)
        guard let start = text.range(of: "  config: "), let end = text.range(of: "\n  optimizer:") else {
            return XCTFail("no configuration in\n\(text)")
        }
        let config = String(text[start.upperBound..<end.lowerBound])
        XCTAssertTrue(config.hasPrefix("{\n    \"codebook\": {\n      \"dead_code_threshold\": 1,"), config)
        XCTAssertTrue(config.contains("\n      \"lr\": 0.0003,\n"), config)
        XCTAssertTrue(config.contains("\n      \"corrupt\": \"noise:0.1\",\n"), config)
        let object = try JSONSerialization.jsonObject(with: Data(config.utf8)) as? [String: Any] ?? [:]
        XCTAssertEqual(object.keys.sorted(), ["codebook", "data", "model", "optimizer", "seed", "steps"])
        let topLevel = lines(config).filter { $0.hasPrefix("    \"") }.map { $0.split(separator: "\"")[1] }
        XCTAssertEqual(topLevel, ["codebook", "data", "model", "optimizer", "seed", "steps"], "keys in order")
    }

    // MARK: Signals

    /// Starts `mpirun -np 2 vqvae train` in the background, standard output and error into `logs`.
    func startJob(out: URL, logs: URL) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["mpirun", "-np", "2", "--oversubscribe", "--bind-to", "none", try CommandRunner.built("vqvae").path,
                             "train", "--data", try PreparedData.mnist("train"), "--out", out.path, "--steps", "1000000",
                             "--log-every", "1", "--checkpoint-every", "0"] + Self.tiny
        var environment = ProcessInfo.processInfo.environment
        environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        process.environment = environment
        for name in ["stdout.txt", "stderr.txt"] {
            _ = FileManager.default.createFile(atPath: logs.appendingPathComponent(name).path, contents: nil)
        }
        process.standardOutput = try FileHandle(forWritingTo: logs.appendingPathComponent("stdout.txt"))
        process.standardError = try FileHandle(forWritingTo: logs.appendingPathComponent("stderr.txt"))
        try process.run()
        // Running once steps are logged (the signal handlers are in place from before step 1).
        let metrics = out.appendingPathComponent("metrics.jsonl")
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline && process.isRunning
            && ((try? String(contentsOf: metrics, encoding: .utf8)) ?? "").split(separator: "\n").count < 3 { usleep(50_000) }
        return process
    }

    /// Sends `signal` to the job's `mpirun` and waits up to 60 s for it to end.
    func stop(_ job: Process, with signal: Int32) -> Bool {
        kill(job.processIdentifier, signal)
        let deadline = Date().addingTimeInterval(60)
        while job.isRunning && Date() < deadline { usleep(50_000) }
        if job.isRunning { job.terminate() }
        job.waitUntilExit()
        return Date() < deadline
    }

    /// SIGUSR1 to `mpirun`: forwarded to every rank, which finish the step, write a checkpoint and
    /// exit 0; mpirun returns 0. SIGINT to `mpirun` ends the job as aborted: status 1.
    func testSignalsToMPIRun() throws {
        let folder = try CommandRunner.temporaryFolder("cli-signals")
        let out = folder.appendingPathComponent("usr1"), logs = folder
        let job = try startJob(out: out, logs: logs)
        XCTAssertTrue(job.isRunning, "the job ended before the signal")
        XCTAssertTrue(stop(job, with: SIGUSR1), "mpirun did not end within 60 s of SIGUSR1")
        let output = (try? String(contentsOf: logs.appendingPathComponent("stdout.txt"), encoding: .utf8)) ?? ""
        let errors = (try? String(contentsOf: logs.appendingPathComponent("stderr.txt"), encoding: .utf8)) ?? ""
        XCTAssertEqual(job.terminationStatus, 0, errors)
        guard let stopped = output.range(of: #"stopped by a signal after step (\d+)"#, options: .regularExpression) else {
            return XCTFail("no stop line in\n\(output)\n\(errors)")
        }
        let step = Int(output[stopped].split(separator: " ").last!)!
        let checkpoint = out.appendingPathComponent(String(format: "checkpoints/step-%08d.h5", step)).path
        let verified = try CommandRunner.vqvae(["inspect", checkpoint])
        XCTAssertEqual(verified.status, 0, "the checkpoint of step \(step) must verify: \(verified.standardError)")

        let interrupted = try startJob(out: folder.appendingPathComponent("int"), logs: logs)
        XCTAssertTrue(interrupted.isRunning, "the job ended before the signal")
        XCTAssertTrue(stop(interrupted, with: SIGINT), "mpirun did not end within 60 s of SIGINT")
        XCTAssertEqual(interrupted.terminationStatus, 1, "mpirun reports a job it ended on SIGINT as aborted")
    }

    // MARK: Scripts

    /// `export_pytorch.py --help` needs no PyTorch; an export without it is one line and status 1.
    func testExportScriptWithoutPyTorch() throws {
        let hide = CommandRunner.packageRoot.appendingPathComponent("Tests/Scripts/run_with_torch_hidden.py").path
        let script = CommandRunner.packageRoot.appendingPathComponent("scripts/export_pytorch.py").path
        let python = URL(fileURLWithPath: "/usr/bin/env")
        let help = try CommandRunner.run(python, ["python3", hide, script, "--help"])
        XCTAssertEqual(help.status, 0, help.standardError)
        XCTAssertTrue(help.standardOutput.hasPrefix("usage: export_pytorch.py"), help.standardOutput)
        XCTAssertEqual(help.standardError, "")
        let output = try CommandRunner.temporaryFolder("cli-export").appendingPathComponent("model.pt").path
        let export = try CommandRunner.run(python, ["python3", hide, script, try Self.noisyModel.get(), output])
        XCTAssertEqual(export.status, 1, export.standardError)
        XCTAssertEqual(lines(export.standardError).count, 1, export.standardError)
        XCTAssertTrue(export.standardError.hasPrefix("export_pytorch.py: torch is not installed"), export.standardError)
        XCTAssertFalse(FileManager.default.fileExists(atPath: output))
    }
}
