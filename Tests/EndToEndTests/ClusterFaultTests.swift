import Foundation
import XCTest

/// Training across hosts made of network namespaces, and the fault matrix, in their short forms:
/// scripts/cluster_test.sh (3 ranks on 3 hosts over TCP against 3 ranks on one host) and
/// scripts/fault_matrix.sh with one trial of every case. Both need root (network namespaces,
/// a tmpfs mount); where namespaces cannot be made the scripts say so and these tests fail.
final class ClusterFaultTests: XCTestCase {
    func runScript(_ name: String, _ arguments: [String], timeout: TimeInterval) throws -> CommandRunner.Result {
        let binary = try CommandRunner.built("vqvae")
        let script = CommandRunner.packageRoot.appendingPathComponent("scripts/\(name)").path
        let start = Date()
        let result = try CommandRunner.run(URL(fileURLWithPath: "/usr/bin/env"), ["bash", script] + arguments,
                                           environment: ["VQVAE": binary.path], timeout: timeout)
        print("\(name) \(arguments.joined(separator: " ")) took \(String(format: "%.1f", Date().timeIntervalSince(start))) s:\n"
              + result.standardOutput)
        return result
    }

    /// Three ranks on three hosts over TCP train exactly what three ranks on one host train.
    func testTrainingAcrossHostsMatchesOneHost() throws {
        let result = try runScript("cluster_test.sh", ["3"], timeout: 180)
        XCTAssertEqual(result.status, 0, "scripts/cluster_test.sh failed:\n\(result.standardError)\n\(result.standardOutput)")
        XCTAssertTrue(result.standardOutput.contains("cluster test: ok"), result.standardOutput)
        for host in 0..<3 {
            XCTAssertTrue(result.standardOutput.contains("rank \(host) on host\(host) 10.77.0.\(host + 1)/24"), result.standardOutput)
        }
        XCTAssertTrue(result.standardOutput.contains("bit-identical"), "the checkpoints differ:\n\(result.standardOutput)")
    }

    /// Every fault case once: kills mid-step, mid-all-reduce and mid-write, a frozen rank, a cut
    /// link (at the switch, and at the host under the README's launch from outside the hosts), a
    /// full disk, SIGTERM to a rank and to mpirun mid-write, NaN data and gradients.
    func testFaultMatrixHolds() throws {
        let result = try runScript("fault_matrix.sh", ["1"], timeout: 600)
        XCTAssertEqual(result.status, 0, "scripts/fault_matrix.sh failed:\n\(result.standardError)\n\(result.standardOutput)")
        XCTAssertTrue(result.standardOutput.contains("fault matrix: ok (every case held in every trial)"), result.standardOutput)
        let rows = result.standardOutput.split(separator: "\n").filter { $0.contains(" trial 1: ") }
        XCTAssertEqual(rows.count, 11, "expected one line per case:\n\(result.standardOutput)")
        XCTAssertFalse(rows.contains { $0.contains("FAILED") }, result.standardOutput)
    }
}
