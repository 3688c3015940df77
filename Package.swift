// swift-tools-version:5.10
import PackageDescription

// Release builds are what users run and what the numeric tests need: the hot loops are
// 10-100x slower without optimisation. `-Ounchecked` is not used: bounds checks stay on in
// Swift code, and the heavy lifting is in OpenBLAS anyway.
let package = Package(
    name: "vqvae",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "vqvae", targets: ["launcher"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
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

        // Communication between ranks (OpenMPI). Knows nothing of models or files.
        .target(name: "Dist", dependencies: ["CMPI"]),
        // Layers, the VQ-VAE, losses and Adam. Knows nothing of MPI or HDF5.
        .target(name: "Model", dependencies: ["COpenBLAS"]),
        // HDF5 datasets and checkpoints, the sampler, PNG images (libpng).
        .target(name: "Data", dependencies: ["CHDF5", "CPNG", "Model"]),
        // Training, evaluation and the tools around them, called with plain option values.
        .target(name: "Training", dependencies: ["Dist", "Model", "Data"]),
        // The `vqvae` command: flags mapped onto the Training library.
        .executableTarget(name: "launcher", dependencies: [
            "Training", "Model", "Data",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        .target(name: "TestSupport", dependencies: ["Model"], path: "Tests/TestSupport"),
        // Started under `mpirun` by EndToEndTests: checks the communicator collective by collective.
        .executableTarget(name: "mpi-checks", dependencies: ["Dist"], path: "Tests/MPIChecks"),
        // Fixtures are read through #filePath-relative paths, not bundled as resources.
        .testTarget(name: "ModelTests", dependencies: ["Model", "TestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "DataTests", dependencies: ["Data", "Model", "TestSupport"]),
        .testTarget(name: "EndToEndTests", dependencies: ["Data", "Model", "TestSupport"]),
        // The Training library in process: a plain process is a world of one.
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Data", "Dist", "Model", "TestSupport"]),
    ]
)
