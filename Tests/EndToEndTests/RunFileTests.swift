import Foundation
import XCTest

/// `vqvae train --config FILE` and `--task NAME` through the built binary: a run file trains the
/// same run as the flags, the command line overrides it, presets lie under both, every run writes
/// `<out>/run.toml` that repeats it, and every broken run file is refused in one line.
final class RunFileTests: XCTestCase {
    static let small = ["--hidden", "16", "--res-hidden", "8", "--code-dim", "8", "--codes", "32", "--global-batch-size", "8"]

    /// Writes `text` as `name` in a fresh folder and returns its path.
    func runFile(_ name: String, _ text: String) throws -> String {
        let path = try CommandRunner.temporaryFolder("runfile-\(name)").appendingPathComponent("\(name).toml").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// The `key = value` lines of a run file, by key (comments and blank lines left out).
    func settings(_ path: String) throws -> [String: String] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        var result: [String: String] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            XCTAssertEqual(parts.count, 2, "not a key = value line: \(line)")
            XCTAssertNil(result[parts[0]], "\(parts[0]) twice in \(path)")
            result[parts[0]] = parts[1]
        }
        return result
    }

    @discardableResult
    func train(_ arguments: [String], file: StaticString = #filePath, line: UInt = #line) throws -> CommandRunner.Result {
        let result = try CommandRunner.vqvae(["train"] + arguments, file: file, line: line)
        XCTAssertEqual(result.status, 0, "train \(arguments): \(result.standardError)", file: file, line: line)
        return result
    }

    /// Asserts that the datasets of two checkpoints are identical (h5py reads them).
    func assertIdentical(_ a: String, _ b: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let result = try CommandRunner.script("compare_hdf5_datasets.py", [a, b, "--min-datasets", "11"])
        XCTAssertEqual(result.status, 0, result.standardError, file: file, line: line)
        XCTAssertEqual(result.standardOutput, "identical\n", file: file, line: line)
    }

    /// A run file with every setting of a command line, `--data` and `--out` included, trains the
    /// same run bit for bit, and both runs write the same `run.toml` but for `out`.
    func testRunFileTrainsTheSameRunAsTheFlags() throws {
        let data = try PreparedData.mnist("test")
        let flagsOut = try CommandRunner.temporaryFolder("runfile-flags")
        let fileOut = try CommandRunner.temporaryFolder("runfile-file")
        try train(["--data", data, "--out", flagsOut.path, "--steps", "3", "--seed", "5", "--no-shuffle", "--lr", "1e-3",
                   "--lr-schedule", "cosine", "--lr-min", "1e-5", "--warmup-steps", "1", "--corrupt", "noise:0.1",
                   "--skip-weight", "0..1", "--skips"] + Self.small)
        let config = try runFile("same", """
            # the same run as the flags
            data = ["\(data)"]
            out = "\(fileOut.path)"
            steps = 3
            seed = 5
            no-shuffle = true
            lr = 1e-3
            lr-schedule = "cosine"
            lr-min = 1e-5
            warmup-steps = 1
            corrupt = "noise:0.1"
            skips = true
            skip-weight = "0..1"
            hidden = 16
            res-hidden = 8
            code-dim = 8
            codes = 32
            global-batch-size = 8
            """)
        try train(["--config", config])
        try assertIdentical(flagsOut.appendingPathComponent("checkpoints/step-00000003.h5").path,
                            fileOut.appendingPathComponent("checkpoints/step-00000003.h5").path)
        var viaFlags = try settings(flagsOut.appendingPathComponent("run.toml").path)
        var viaFile = try settings(fileOut.appendingPathComponent("run.toml").path)
        XCTAssertEqual(viaFlags.removeValue(forKey: "out"), "\"\(flagsOut.path)\"")
        XCTAssertEqual(viaFile.removeValue(forKey: "out"), "\"\(fileOut.path)\"")
        XCTAssertEqual(viaFlags, viaFile)
        XCTAssertEqual(viaFile["skip-weight"], "\"0.0..1.0\"")
        XCTAssertEqual(viaFile["lr"], "0.001")
        XCTAssertEqual(viaFile["lr-decay-steps"], "3", "the cosine decay's default length, resolved")
        XCTAssertEqual(viaFile["data"], "[\"\(data)\"]")

        // Every train flag is a key of the written file, but those that do not apply here.
        let dump = try CommandRunner.vqvae(["train", "--experimental-dump-help"])
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(dump.standardOutput.utf8)) as? [String: Any])
        let arguments = try XCTUnwrap((object["command"] as? [String: Any])?["arguments"] as? [[String: Any]])
        let flags = Set(arguments.flatMap { ($0["names"] as? [[String: Any]]) ?? [] }
            .filter { $0["kind"] as? String == "long" }.compactMap { $0["name"] as? String })
        let notWritten: Set<String> = ["help", "version", "config", "task", "resume", "kmeans-init", "crop", "val",
                                       "lr-step-every", "lr-step-factor", "levels", "weight-ema", "keep-best",
                                       "quantizer-dropout",  // (only with --codebooks 2 or more)
                                       "ranks-per-node"]  // (only when given)
        XCTAssertEqual(Set(viaFile.keys).union(["out"]), flags.subtracting(notWritten))
        XCTAssertEqual(viaFile["codebook-init"], "\"kmeans\"")
        XCTAssertEqual(viaFile["dead-code-threshold"], "1.0", "the default threshold, resolved")
    }

    /// Flags on the command line win over the run file's keys, `--data` included (replaced, not
    /// added to).
    func testCommandLineOverridesTheRunFile() throws {
        let out = try CommandRunner.temporaryFolder("runfile-override")
        let config = try runFile("override", """
            data = "/nonexistent/train.h5"
            steps = 100
            seed = 1
            corrupt = "noise:0.3"
            hidden = 16
            res-hidden = 8
            code-dim = 8
            codes = 32
            global-batch-size = 8
            """)
        try train(["--config", config, "--data", try PreparedData.mnist("test"), "--out", out.path, "--steps", "2",
                   "--seed", "9", "--corrupt", "noise:0.1", "--hidden", "8"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("checkpoints/step-00000002.h5").path))
        let written = try settings(out.appendingPathComponent("run.toml").path)
        XCTAssertEqual(written["steps"], "2")
        XCTAssertEqual(written["seed"], "9")
        XCTAssertEqual(written["corrupt"], "\"noise:0.1\"")
        XCTAssertEqual(written["hidden"], "8")
        XCTAssertEqual(written["codes"], "32", "the file's value where the command line gives none")
        XCTAssertEqual(written["data"], "[\"\(try PreparedData.mnist("test"))\"]")
    }

    /// `--task` sets its flags; the run file and the command line override them; a run file may
    /// name the task itself; `--help` lists every preset with what it sets.
    func testTaskPresetsAreAppliedAndOverridable() throws {
        let data = try PreparedData.mnist("test")
        let small = ["--hidden", "16", "--res-hidden", "8", "--global-batch-size", "8", "--steps", "0"]
        let expected = ["denoise": "noise:0.1", "blind-denoise": "noise:0.02~0.2", "deblur": "blur:2,quantize:255", "inpaint": "holes:8"]
        for (task, corrupt) in expected {
            let out = try CommandRunner.temporaryFolder("runfile-task-\(task)")
            // (MNIST's 28x28 digits do not divide by 2^3: the inpainter's --down is overridden.)
            try train(["--task", task, "--data", data, "--out", out.path] + small + (task == "inpaint" ? ["--down", "2"] : []))
            let written = try settings(out.appendingPathComponent("run.toml").path)
            let preset = task == "inpaint"
                ? ["model": "\"ae\"", "down": "2", "residual": "true", "skips": "true", "mask-channel": "true", "lr": "0.002",
                   "weight-ema": "0.999", "lr-schedule": "\"cosine\"", "warmup-steps": "100", "clip-grad-norm": "0.05",
                   "corrupt": "\"\(corrupt)\""]
                : ["model": "\"ae\"", "down": "1", "residual": "true", "lr": "0.002", "lr-schedule": "\"cosine\"",
                   "warmup-steps": "100", "clip-grad-norm": "0.05", "corrupt": "\"\(corrupt)\"",
                   "detail-layers": task == "deblur" ? "0" : "6", "detail-channels": task == "deblur" ? "32" : "64"]
            for (key, value) in preset { XCTAssertEqual(written[key], value, "--task \(task): \(key)") }
            XCTAssertEqual(written["loss-weight"], task == "blind-denoise" ? "\"damage\"" : task == "inpaint" ? "\"log\"" : "\"uniform\"",
                           "--task \(task): loss-weight")
            XCTAssertEqual(written["hole-fill"], task == "inpaint" ? "\"plate\"" : "\"zero\"", "--task \(task): hole-fill")
            if task == "blind-denoise" { XCTAssertEqual(written["weight-ema"], "0.999", "--task blind-denoise: weight-ema") }
            for key in ["codebook-init", "kmeans-iterations", "dead-code-threshold"] {
                XCTAssertNil(written[key], "--task \(task): \(key) does not apply to an autoencoder")
            }
        }

        // The file over the preset, the command line over both.
        let out = try CommandRunner.temporaryFolder("runfile-task-override")
        let config = try runFile("task", """
            task = "deblur"
            residual = false
            lr = 1e-3
            """)
        try train(["--config", config, "--data", data, "--out", out.path, "--warmup-steps", "5"] + small)
        let written = try settings(out.appendingPathComponent("run.toml").path)
        let overridden = ["model": "\"ae\"", "down": "1", "residual": "false", "lr": "0.001", "warmup-steps": "5",
                          "corrupt": "\"blur:2,quantize:255\"", "lr-schedule": "\"cosine\""]
        for (key, value) in overridden { XCTAssertEqual(written[key], value, key) }
        XCTAssertNil(written["task"], "the preset's flags are written, not its name")
        // An empty string is a value: no corruption, over the preset's.
        let clean = try CommandRunner.temporaryFolder("runfile-task-clean")
        try train(["--config", try runFile("clean", "task = \"denoise\"\ncorrupt = \"\""), "--data", data, "--out", clean.path] + small)
        let cleanSettings = try settings(clean.appendingPathComponent("run.toml").path)
        XCTAssertEqual(cleanSettings["corrupt"], "\"\"")
        XCTAssertEqual(cleanSettings["residual"], "true")
        // (A file without `residual = false`: the denoising preset's detail layers need --residual.)
        let renamed = try CommandRunner.temporaryFolder("runfile-task-command-line")
        try train(["--config", try runFile("deblur", "task = \"deblur\"\nlr = 1e-3"), "--task", "denoise", "--data", data,
                   "--out", renamed.path] + small)
        XCTAssertEqual(try settings(renamed.appendingPathComponent("run.toml").path)["corrupt"], "\"noise:0.1\"")

        let help = try CommandRunner.vqvae(["train", "--help"])
        XCTAssertEqual(help.status, 0)
        let flat = help.standardOutput.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        for (task, corrupt) in expected where task != "inpaint" {
            let detail = task == "deblur" ? "" : " --detail-layers 6 --detail-channels 64"
            XCTAssertTrue(flat.contains("\(task): --model ae --down 1 --residual --lr 2e-3 --lr-schedule cosine --warmup-steps 100 --clip-grad-norm 0.05\(detail) --corrupt \(corrupt)"),
                          "train --help does not list --task \(task): \(help.standardOutput)")
        }
        XCTAssertTrue(flat.contains("inpaint: --model ae --down 3 --residual --skips --mask-channel --hole-fill plate --loss-weight log --lr 2e-3 --lr-schedule cosine --warmup-steps 100 --clip-grad-norm 0.05 --weight-ema 0.999 --corrupt holes:8"),
                      "train --help does not list --task inpaint: \(help.standardOutput)")
        for flag in ["--config", "--task"] { XCTAssertTrue(help.standardOutput.contains(flag), flag) }
    }

    /// `<out>/run.toml` repeats the run: `--config` with it (and another `--out`) trains the same
    /// checkpoint. Resuming with it is accepted (every key agrees with the checkpoint); the resumed
    /// run rewrites it with its own values, the checkpoint's where the command line said nothing.
    func testWrittenRunFileRepeatsTheRunAndResumes() throws {
        let data = try PreparedData.mnist("test")
        let first = try CommandRunner.temporaryFolder("runfile-first")
        try train(["--task", "denoise", "--data", data, "--out", first.path, "--steps", "3", "--warmup-steps", "1",
                   "--optimizer", "adamw", "--seed", "4"] + Self.small)
        let written = first.appendingPathComponent("run.toml").path
        let again = try CommandRunner.temporaryFolder("runfile-again")
        try train(["--config", written, "--out", again.path])
        try assertIdentical(first.appendingPathComponent("checkpoints/step-00000003.h5").path,
                            again.appendingPathComponent("checkpoints/step-00000003.h5").path)
        var original = try settings(written)
        var repeated = try settings(again.appendingPathComponent("run.toml").path)
        original["out"] = nil
        repeated["out"] = nil
        XCTAssertEqual(original, repeated)
        XCTAssertEqual(original["weight-decay"], "0.01", "AdamW's default weight decay, resolved")
        XCTAssertEqual(original["lr-decay-steps"], "3")

        // The autoencoder's file holds no codebook controls, so a VQ-VAE from it gets the defaults.
        let vqvae = try CommandRunner.temporaryFolder("runfile-vqvae")
        try train(["--config", written, "--out", vqvae.path, "--model", "vqvae", "--steps", "0"])
        let vqvaeSettings = try settings(vqvae.appendingPathComponent("run.toml").path)
        XCTAssertEqual(vqvaeSettings["codebook-init"], "\"kmeans\"")
        XCTAssertEqual(vqvaeSettings["dead-code-threshold"], "1.0")

        // Resumed with the file: nothing contradicts; the rewritten file has the new step count.
        try train(["--config", written, "--resume", "auto", "--steps", "5"])
        XCTAssertEqual(try settings(written)["steps"], "5")
        // Resumed from the flags alone: the file still has the checkpoint's settings.
        try train(["--data", data, "--out", first.path, "--resume", "auto", "--steps", "6"])
        let resumed = try settings(written)
        XCTAssertEqual(resumed["steps"], "6")
        for key in ["model", "down", "residual", "corrupt", "hidden", "seed", "optimizer", "lr", "warmup-steps", "lr-decay-steps"] {
            XCTAssertEqual(resumed[key], original[key], key)
        }
        XCTAssertFalse(try FileManager.default.contentsOfDirectory(atPath: first.path).contains { $0.hasPrefix(".") },
                       "no temporary file may remain")
    }

    /// A missing, unreadable or broken run file, an unknown key, a value of the wrong type or one
    /// the command refuses: one line naming the file and line, non-zero exit, nothing written.
    func testBrokenRunFilesAreRefusedInOneLine() throws {
        let out = try CommandRunner.temporaryFolder("runfile-refused").appendingPathComponent("run").path
        let train = ["train", "--data", "/nonexistent/train.h5", "--out", out]
        let folder = try CommandRunner.temporaryFolder("runfile-folder").path
        assertRefused(try CommandRunner.vqvae(train + ["--config", "/nonexistent/run.toml"]),
                          "error: --config /nonexistent/run.toml: no such file", "a missing file")
        assertRefused(try CommandRunner.vqvae(train + ["--config", folder]), "error: --config \(folder): cannot read this file",
                          "a folder")
        let cases: [(name: String, text: String, expected: String)] = [
            ("syntax", "steps = 3\nlr = = 2", "syntax.toml:2:"),
            ("syntax", "steps = 3\nlr = = 2", ": not valid TOML: "),
            ("unknown", "# a comment\nstepz = 3", "unknown.toml:2: unknown key 'stepz'; did you mean 'steps'?"),
            ("type", "steps = \"ten\"", "type.toml:1: steps = \"ten\": expected an integer, not a string"),
            ("float", "\nsteps = 2.5", "float.toml:2: steps = 2.5: expected an integer, not a floating-point number"),
            ("flag", "no-shuffle = \"yes\"", "flag.toml:1: no-shuffle = \"yes\": expected true or false, not a string"),
            ("data", "data = [1, 2]", "data.toml:1: data = [ 1, 2 ]: expected a file name or a non-empty array of them, not an array"),
            ("choice", "optimizer = \"sgd\"", "choice.toml:1: optimizer = \"sgd\": the value 'sgd' is invalid for '--optimizer"),
            ("range", "lr = 2e-3\nsteps = -1", "range.toml:2: steps = -1: --steps must not be negative"),
            ("section", "steps = 3\n[model]\nhidden = 16", "section.toml:2: [model]: a run file has no sections"),
            ("dotted", "model.hidden = 16", "dotted.toml:1: [model]: a run file has no sections"),
            ("nested", "config = \"other.toml\"", "nested.toml:1: config = \"other.toml\": a run file cannot name another run file"),
            ("task", "task = \"sharpen\"", "task.toml:1: task = \"sharpen\": the value 'sharpen' is invalid for '--task"),
        ]
        for (name, text, expected) in cases {
            let result = try CommandRunner.vqvae(train + ["--config", try runFile(name, text)])
            assertRefused(result, expected, name)
            XCTAssertEqual(result.status, 2, name)
            XCTAssertTrue(result.standardError.hasPrefix("error: "), result.standardError)
        }
        // An unknown preset on the command line is a usage error that lists the presets.
        let unknown = try CommandRunner.vqvae(train + ["--task", "sharpen"])
        XCTAssertEqual(unknown.status, 2, unknown.standardError)
        XCTAssertTrue(unknown.standardError.hasPrefix("error: the value 'sharpen' is invalid for '--task <task>'"), unknown.standardError)
        XCTAssertTrue(unknown.standardError.contains("'denoise', 'blind-denoise', 'deblur' or 'inpaint'"), unknown.standardError)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "a refused run file must not create the output folder")
    }
}
