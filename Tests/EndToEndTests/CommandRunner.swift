import Foundation
import XCTest

/// Runs the built `vqvae` executable and Python helpers for end-to-end tests.
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

    /// Runs `python3 -c script args...`; the tests need h5py and numpy (scripts/test.sh installs them).
    static func python(_ script: String, _ arguments: [String] = []) throws -> Result {
        try run(URL(fileURLWithPath: "/usr/bin/env"), ["python3", "-c", script] + arguments)
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
