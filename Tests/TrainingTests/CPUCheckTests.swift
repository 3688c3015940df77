import Foundation
import Training
import XCTest

/// A build refuses, in one line, to run on a CPU without an extension it was compiled for.
final class CPUCheckTests: XCTestCase {
    static let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Sources/CPUCheck")

    /// The extensions this CPU reports in /proc/cpuinfo.
    func cpuFlags() throws -> Set<String> {
        let info = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
        let line = try XCTUnwrap(info.split(separator: "\n").first { $0.hasPrefix("flags") })
        return Set(line.split(separator: " ").map(String.init))
    }

    /// Compiles the check with `march` and a program that does nothing, runs it, returns status and stderr.
    func runCheck(march: String) throws -> (Int32, String) {
        let folder = NSTemporaryDirectory() + "vqvae-cpu-check-\(getpid())"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try "int main(void) { return 0; }\n".write(toFile: folder + "/main.c", atomically: true, encoding: .utf8)
        let compile = Process()
        compile.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        compile.arguments = ["clang", "-O2", "-march=\(march)", "-I", Self.source.path + "/include",
                             Self.source.path + "/cpu_check.c", folder + "/main.c", "-o", folder + "/check-\(march)"]
        try compile.run()
        compile.waitUntilExit()
        XCTAssertEqual(compile.terminationStatus, 0, "clang failed for -march=\(march)")
        let run = Process()
        run.executableURL = URL(fileURLWithPath: folder + "/check-\(march)")
        let errors = Pipe()
        run.standardError = errors
        try run.run()
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        run.waitUntilExit()
        return (run.terminationStatus, text)
    }

    func testThisBuildRunsHereAndAForeignOneStopsWithOneLine() throws {
        #if arch(x86_64)
        // The build under test runs here, and knows what it was compiled for.
        XCTAssertFalse(ProcessEnvironment.instructionSet.isEmpty)
        let native = try runCheck(march: "native")
        XCTAssertEqual(native.0, 0, native.1)
        XCTAssertEqual(native.1, "")
        // A build for a CPU with extensions this one lacks stops before main, naming them.
        let flags = try cpuFlags()
        let foreign: (march: String, lacking: String)? =
            !flags.contains("avx512f") ? ("skylake-avx512", "avx512f")
            : !flags.contains("avx2") ? ("haswell", "avx2") : nil
        guard let foreign else {
            print("this CPU has every extension the check knows; only the native build was run")
            return
        }
        let stopped = try runCheck(march: foreign.march)
        XCTAssertEqual(stopped.0, 1)
        XCTAssertEqual(stopped.1.split(separator: "\n").count, 1, stopped.1)
        XCTAssertTrue(stopped.1.hasPrefix("error: this vqvae was built for a CPU with"), stopped.1)
        XCTAssertTrue(stopped.1.contains("this CPU lacks") && stopped.1.contains(foreign.lacking), stopped.1)
        XCTAssertTrue(stopped.1.contains("VQVAE_TARGET_CPU=generic"), stopped.1)
        #endif
    }
}
