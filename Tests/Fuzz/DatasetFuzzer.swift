import Data
#if canImport(Glibc)
import Glibc
#endif

/// libFuzzer target for the image dataset readers: every input is a file given to `--data` or to
/// `vqvae inspect`. It runs what `vqvae train` and `vqvae inspect` run on a dataset: open and
/// validate in either layout (`openImageFiles`: `ImageDataset` or `VariableSizeDataset`), the
/// memory check with the training defaults, a read of a small batch (first images, the last
/// image and one in between; for images of different sizes their random dihedral crops of up to
/// 8x8 and centre crops), its labels when present, the data's identity, and the inspector's
/// description. Thrown errors are the expected outcome for damaged files;
/// crashes, traps, hangs, huge allocations and HDF5 objects left open are failures.
@_cdecl("LLVMFuzzerTestOneInput")
public func datasetFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let path = FuzzInput.write(data, size)
    readLikeTraining(path)
    FuzzInput.checkNothingLeftOpen(after: "ImageDataset")
    _ = try? Inspector.describe(path: path)
    FuzzInput.checkNothingLeftOpen(after: "Inspector.describe")
    FuzzInput.releaseLibraryMemory()
    return 0
}

/// The training defaults of `vqvae train`: 32 images per rank, hidden 128, prefetch 2.
private let batchPerRank = 32
private let bytesPerImageElement = 4 * (16 + 2 * 128 + 4 * 2)

private func readLikeTraining(_ path: String) {
    do {
        let files = try openImageFiles(paths: [path])
        guard let dataset = files as? ImageDataset else {
            try readCropsLikeTraining(files)
            return
        }
        try dataset.checkFitsInMemory(batch: batchPerRank, bytesPerImageElement: bytesPerImageElement)
        var indices = Array(0..<min(dataset.count, 3))
        if dataset.count > 3 { indices += [dataset.count - 1, dataset.count / 2] }
        let values = UnsafeMutablePointer<Float>.allocate(capacity: indices.count * dataset.imageElements)
        defer { values.deallocate() }
        try dataset.read(indices: indices, into: values)
        if dataset.hasLabels { _ = try dataset.labels(indices: indices) }
    } catch {
        // A clean, typed error is what a damaged file must produce.
    }
}

/// Images of different sizes: crops of the smallest image's shorter side (at most 8), random and
/// turned as `--augment dihedral` draws them, then centre crops, labels and the identity.
private func readCropsLikeTraining(_ files: any ImageFiles) throws {
    let smallest = files.smallestImage
    let size = min(8, smallest.height, smallest.width)
    let cropped = try CroppedImages(files: files, size: size, seed: 1, augmentation: .dihedral)
    var indices = Array(0..<min(files.count, 3))
    if files.count > 3 { indices += [files.count - 1, files.count / 2] }
    let values = UnsafeMutablePointer<Float>.allocate(capacity: indices.count * cropped.imageElements)
    defer { values.deallocate() }
    try cropped.read(samples: indices.map { (epoch: 0, index: $0) }, into: values)
    try cropped.read(indices: indices, into: values)
    if let variable = files as? VariableSizeDataset, variable.hasLabels { _ = try variable.labels(indices: indices) }
    _ = try files.identity()
}
