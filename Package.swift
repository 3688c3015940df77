// swift-tools-version:5.10
import Foundation
import PackageDescription

// Release builds are what users run and what the numeric tests need: the hot loops are
// 10-100x slower without optimisation. `-Ounchecked` is not used: bounds checks stay on in
// Swift code, and the heavy lifting is in OpenBLAS anyway.
//
// The instruction set: VQVAE_TARGET_CPU names the CPU the Swift and C code is compiled for.
// `native` (the default) uses every extension of the building machine (AVX2 and FMA, AVX-512
// where there is one); `generic` the architecture's baseline (x86-64: SSE2, a fifth of the
// speed), for a cluster with a node older than AVX2; any other value is an LLVM CPU name
// (`haswell`, the choice for nodes that differ but all have AVX2; `znver3`, `skylake-avx512`,
// `neoverse-v1`, ...). A binary started on a CPU without an extension it was built for stops with
// one line naming it (Sources/CPUCheck). Give each choice its own --scratch-path.
let targetCPU = ProcessInfo.processInfo.environment["VQVAE_TARGET_CPU"] ?? "native"
// The building machine's CPU flags (Linux's /proc/cpuinfo), which `native` compiles for.
let nativeFlags: Set<Substring> = {
    let info = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
    let line = info.split(separator: "\n").first { $0.hasPrefix("flags") } ?? ""
    return Set(line.split(separator: " "))
}()

// Whether that CPU has fused multiply-add: the hot loops use it (condition VECTOR_FMA) where it is
// an instruction, and a separate multiply and add where it is not (without the instruction, Swift's
// addingProduct becomes one libm fmaf call per element, 60x slower). `native` reads this machine's
// flags; `generic` (x86-64 SSE2) has none; a CPU name has it unless it predates FMA3 (x86) or
// VQVAE_FMA=0|1 says otherwise. Every aarch64 CPU has it.
let fusedMultiplyAdd: Bool = {
    if let forced = ProcessInfo.processInfo.environment["VQVAE_FMA"] { return forced == "1" }
    #if arch(x86_64)
    switch targetCPU {
    case "generic":
        return false
    case "native":
        return nativeFlags.contains("fma")
    default:
        let beforeFMA: Set<String> = ["x86-64", "x86-64-v2", "k8", "k8-sse3", "amdfam10", "barcelona", "btver1", "btver2",
                                      "core2", "penryn", "nehalem", "westmere", "sandybridge", "ivybridge", "bonnell",
                                      "atom", "silvermont", "slm", "goldmont", "goldmont-plus", "tremont"]
        return !beforeFMA.contains(targetCPU)
    }
    #else
    return true
    #endif
}()

// Whether that CPU has AVX-512's 32 vector registers of 16 floats: the Winograd products then keep a
// block twice as wide in registers (condition VECTOR_WIDE_REGISTERS; Sources/Model/WinogradProducts).
// `native` reads this machine's flags; a CPU name has them if it is one of the AVX-512 CPUs below;
// VQVAE_WIDE_REGISTERS=0|1 overrides (the results are the same either way, only the speed differs).
let wideRegisters: Bool = {
    if let forced = ProcessInfo.processInfo.environment["VQVAE_WIDE_REGISTERS"] { return forced == "1" }
    #if arch(x86_64)
    switch targetCPU {
    case "generic":
        return false
    case "native":
        return nativeFlags.contains("avx512f")
    default:
        let avx512: Set<String> = ["skylake-avx512", "skx", "cascadelake", "cooperlake", "cannonlake",
                                   "icelake-client", "icelake-server", "tigerlake", "rocketlake", "sapphirerapids",
                                   "emeraldrapids", "graniterapids", "graniterapids-d", "znver4", "znver5"]
        return avx512.contains(targetCPU)
    }
    #else
    return false
    #endif
}()
let cpuSwiftSettings: [SwiftSetting] = (targetCPU == "generic" ? [] : [.unsafeFlags(["-target-cpu", targetCPU])])
    + (fusedMultiplyAdd ? [.define("VECTOR_FMA")] : [])
    + (wideRegisters ? [.define("VECTOR_WIDE_REGISTERS")] : [])
#if arch(x86_64)
let cpuCSettings: [CSetting] = targetCPU == "generic" ? [] : [.unsafeFlags(["-march=\(targetCPU)"])]
#else
let cpuCSettings: [CSetting] = targetCPU == "generic" ? [] : [.unsafeFlags(["-mcpu=\(targetCPU)"])]
#endif

let package = Package(
    name: "vqvae",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "vqvae", targets: ["launcher"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
    ],
    targets: [
        // C system-library shims: the only places that include the C headers.
        .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev"])]),
        .systemLibrary(name: "CHDF5", path: "Sources/CHDF5", pkgConfig: "hdf5",
                       providers: [.apt(["libhdf5-dev"])]),
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG", pkgConfig: "libpng",
                       providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CJPEG", path: "Sources/CJPEG", pkgConfig: "libjpeg",
                       providers: [.apt(["libjpeg62-turbo-dev"])]),
        // libjpeg recovers from errors by longjmp: the calls are wrapped in C so no jump crosses Swift.
        .target(name: "CJPEGShim", dependencies: ["CJPEG"], path: "Sources/CJPEGShim"),

        // Stops a build from running on a CPU without the extensions it was compiled for.
        .target(name: "CPUCheck", cSettings: cpuCSettings),

        // Communication between ranks (OpenMPI). Knows nothing of models or files.
        .target(name: "Dist", dependencies: ["CMPI"], swiftSettings: cpuSwiftSettings),
        // Layers, the VQ-VAE, losses and Adam. Knows nothing of MPI or HDF5.
        .target(name: "Model", dependencies: ["COpenBLAS"], swiftSettings: cpuSwiftSettings),
        // Entropy coding (rANS) for the image codec; no dependencies.
        .target(name: "Codec", swiftSettings: cpuSwiftSettings),
        // HDF5 datasets and checkpoints, the sampler, PNG (libpng) and JPEG (libjpeg) images.
        .target(name: "Data", dependencies: ["CHDF5", "CPNG", "CJPEGShim", "Model"], swiftSettings: cpuSwiftSettings),
        // Training, evaluation and the tools around them, called with plain option values.
        .target(name: "Training", dependencies: ["Dist", "Model", "Data", "Codec", "CPUCheck"], swiftSettings: cpuSwiftSettings),
        // The `vqvae` command: flags mapped onto the Training library.
        .executableTarget(name: "launcher", dependencies: [
            "Training", "Model", "Data",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "TOMLKit", package: "TOMLKit"),
        ], swiftSettings: cpuSwiftSettings),

        .target(name: "TestSupport", dependencies: ["Model"], path: "Tests/TestSupport", swiftSettings: cpuSwiftSettings),
        // Started under `mpirun` by EndToEndTests: checks the communicator collective by collective.
        .executableTarget(name: "mpi-checks", dependencies: ["Dist"], path: "Tests/MPIChecks"),
        // Fixtures are read through #filePath-relative paths, not bundled as resources.
        .testTarget(name: "ModelTests", dependencies: ["Model", "Codec", "TestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "CodecTests", dependencies: ["Codec"]),
        .testTarget(name: "DataTests", dependencies: ["Data", "Model", "TestSupport"]),
        .testTarget(name: "EndToEndTests", dependencies: ["Data", "Model", "TestSupport"]),
        // The Training library in process: a plain process is a world of one.
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Data", "Dist", "Model", "TestSupport"]),
    ]
)
