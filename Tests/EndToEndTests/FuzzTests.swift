import Foundation
import XCTest

/// A short run of scripts/fuzz.sh: it builds the libFuzzer harnesses of Tests/Fuzz/ with
/// AddressSanitizer, writes its seed corpus (h5py datasets, checkpoints from the built `vqvae`),
/// fuzzes the dataset, checkpoint and .vqz readers for FUZZ_SECONDS each (20 by default) and exits
/// non-zero when any failing input is in the project's code (a crash, trap, hang, huge allocation
/// or HDF5 object left open). Crashes inside libhdf5 itself are reported, not failed on.
final class FuzzTests: XCTestCase {
    func testShortFuzzingFindsNothingInOurCode() throws {
        let folder = try CommandRunner.temporaryFolder("fuzz")
        defer { try? FileManager.default.removeItem(at: folder) }
        let vqvae = try CommandRunner.built("vqvae")
        let seconds = ProcessInfo.processInfo.environment["FUZZ_SECONDS"] ?? "20"
        let script = CommandRunner.packageRoot.appendingPathComponent("scripts/fuzz.sh").path
        let result = try CommandRunner.run(URL(fileURLWithPath: "/usr/bin/env"), ["bash", script, seconds],
                                           environment: ["FUZZ_BUILD_DIR": folder.path, "VQVAE_BINARY": vqvae.path],
                                           timeout: 1200)
        let output = result.standardOutput + result.standardError
        XCTAssertEqual(result.status, 0, output)
        for target in ["dataset", "checkpoint", "codec"] {
            let line = output.split(separator: "\n").first { $0.hasPrefix("fuzz: \(target): ") }
            XCTAssertNotNil(line, "no summary for the \(target) fuzzer:\n\(output)")
            guard let line else { continue }
            // "fuzz: dataset: 20s in 1 run(s), 1234 executions, ... failing inputs: 0 in our code, ..."
            let executions = line.components(separatedBy: " executions")[0].split(separator: " ").last.flatMap { Int($0) }
            XCTAssertGreaterThan(executions ?? 0, 0, String(line))
            XCTAssertTrue(line.contains("failing inputs: 0 in our code"), String(line))
        }
    }
}
