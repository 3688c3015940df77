import Data
import Foundation
import Model
import XCTest

/// Runs the built `vqvae` executable and the Python scripts of Tests/Scripts for end-to-end tests.
enum CommandRunner {
    struct Result {
        let status: Int32
        let standardOutput: String
        let standardError: String
    }

    /// The package root, from this file's location.
    static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func run(_ executable: URL, _ arguments: [String], environment: [String: String] = [:],
                    timeout: TimeInterval = 600) throws -> Result {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env.merge(environment) { $1 }
        process.environment = env
        // Output goes to files, so a chatty child never blocks on a full pipe.
        let folder = FileManager.default.temporaryDirectory
        let outURL = folder.appendingPathComponent("vqvae-run-\(getpid())-\(UUID().uuidString).out")
        let errURL = folder.appendingPathComponent("vqvae-run-\(getpid())-\(UUID().uuidString).err")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: outURL); try? FileManager.default.removeItem(at: errURL) }
        let out = try FileHandle(forWritingTo: outURL), err = try FileHandle(forWritingTo: errURL)
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        try out.close()
        try err.close()
        let outData = try Data(contentsOf: outURL), errData = try Data(contentsOf: errURL)
        return Result(status: process.terminationStatus,
                      standardOutput: String(decoding: outData, as: UTF8.self),
                      standardError: String(decoding: errData, as: UTF8.self))
    }

    /// Runs `vqvae` with `arguments`.
    static func vqvae(_ arguments: [String], file: StaticString = #filePath, line: UInt = #line) throws -> Result {
        let folder = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        var candidates = [folder.appendingPathComponent("vqvae"),
                          folder.deletingLastPathComponent().appendingPathComponent("vqvae")]
        if let explicit = ProcessInfo.processInfo.environment["VQVAE_BINARY"] {
            candidates.insert(URL(fileURLWithPath: explicit), at: 0)
        }
        guard let binary = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
            XCTFail("the vqvae executable is not built next to the tests (looked in \(candidates.map(\.path))); run `swift build` first",
                    file: file, line: line)
            throw CocoaError(.fileNoSuchFile)
        }
        return try run(binary, arguments)
    }

    /// Runs a product built beside the tests (`vqvae`, `mpi-checks`) under `mpirun -np ranks`
    /// (oversubscribed: CI has 2 cores). With `ranks == 0` it runs as a plain process.
    static func mpirun(ranks: Int, _ product: String, _ arguments: [String], timeout: TimeInterval = 600,
                       file: StaticString = #filePath, line: UInt = #line) throws -> Result {
        let binary = try built(product, file: file, line: line)
        if ranks == 0 { return try run(binary, arguments, timeout: timeout) }
        return try run(URL(fileURLWithPath: "/usr/bin/env"),
                       ["mpirun", "-np", "\(ranks)", "--oversubscribe", "--bind-to", "none", binary.path] + arguments,
                       environment: ["OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"], timeout: timeout)
    }

    static func built(_ product: String, file: StaticString = #filePath, line: UInt = #line) throws -> URL {
        let folder = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let candidates = [folder.appendingPathComponent(product), folder.deletingLastPathComponent().appendingPathComponent(product)]
        guard let binary = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
            XCTFail("\(product) is not built next to the tests (looked in \(candidates.map(\.path))); run `swift build` first",
                    file: file, line: line)
            throw CocoaError(.fileNoSuchFile)
        }
        return binary
    }

    /// Runs `python3 Tests/Scripts/<name> args...`: the checks and fixtures that use an independent
    /// reader or writer (h5py, Pillow). They need numpy, h5py and Pillow (scripts/test.sh installs them).
    static func script(_ name: String, _ arguments: [String] = []) throws -> Result {
        try run(URL(fileURLWithPath: "/usr/bin/env"),
                ["python3", packageRoot.appendingPathComponent("Tests/Scripts/\(name)").path] + arguments)
    }

    /// A fresh temporary folder.
    static func temporaryFolder(_ name: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("vqvae-tests-\(getpid())-\(name)")
        try? FileManager.default.removeItem(at: url)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}

/// Real datasets made once per test process by scripts/prepare_data.py.
enum PreparedData {
    static let folder: Result<URL, Error> = Result {
        let url = try CommandRunner.temporaryFolder("prepared")
        let script = CommandRunner.packageRoot.appendingPathComponent("scripts/prepare_data.py").path
        let result = try CommandRunner.run(URL(fileURLWithPath: "/usr/bin/env"),
                                           ["python3", script, "mnist", "--out", url.path])
        guard result.status == 0 else {
            throw NSError(domain: "PreparedData", code: Int(result.status),
                          userInfo: [NSLocalizedDescriptionKey: "prepare_data.py mnist failed: \(result.standardError)"])
        }
        return url
    }

    static func mnist(_ split: String) throws -> String {
        try folder.get().appendingPathComponent("mnist-\(split).h5").path
    }
}

/// A checkpoint read back with `Checkpoint.load` into a model built from its own configuration:
/// what the tests check of a checkpoint that needs no independent reader.
struct LoadedCheckpoint {
    let state: CheckpointState
    let model: VQVAE
    let optimizer: Adam

    init(_ path: String) throws {
        struct Stored: Decodable { let model: ModelConfiguration }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let stored = try decoder.decode(Stored.self, from: Foundation.Data(try Checkpoint.configuration(path: path).utf8))
        model = try VQVAE(configuration: stored.model, maxBatch: 1)
        optimizer = Adam(count: model.parameters.count)
        state = try Checkpoint.load(path: path, into: model, optimizer: optimizer)
    }

    /// The `config` attribute of the checkpoint at `path`, parsed.
    static func configuration(_ path: String) throws -> [String: Any] {
        let json = try Checkpoint.configuration(path: path)
        return try JSONSerialization.jsonObject(with: Foundation.Data(json.utf8)) as? [String: Any] ?? [:]
    }

    /// Every tensor of the checkpoint by its name in the file (copied out, in this project's
    /// layouts): the parameters and both Adam moments, and an EMA codebook with its statistics.
    var tensors: [(name: String, values: [Float])] {
        var result: [(name: String, values: [Float])] = []
        for slot in model.parameters.slots {
            for (group, buffer) in [("model", model.parameters.values), ("optimizer/adam_m", optimizer.firstMoment),
                                    ("optimizer/adam_v", optimizer.secondMoment)] {
                result.append(("/\(group)/\(slot.name)", Array(UnsafeBufferPointer(start: buffer.pointer + slot.offset, count: slot.count))))
            }
        }
        if let quantizer = model.quantizer, quantizer.kind == .ema {
            let (k, d) = (quantizer.codes, quantizer.dimension)
            result.append(("/model/quantizer/codebook", Array(UnsafeBufferPointer(start: quantizer.emaState.pointer, count: k * d))))
            result.append(("/model/quantizer/ema_count", Array(UnsafeBufferPointer(start: quantizer.emaCount, count: k))))
            result.append(("/model/quantizer/ema_sum", Array(UnsafeBufferPointer(start: quantizer.emaSum, count: k * d))))
        }
        return result
    }
}
