import Data
import Foundation
import Model

/// libFuzzer target for the checkpoint reader: every input is a file given to `--resume` or to
/// `vqvae inspect`. It runs what a resumed `vqvae train` runs: `Checkpoint.verify`, the stored
/// configuration (`Checkpoint.configuration`) decoded as the launcher does, a model and Adam built
/// from it, and `Checkpoint.load` into them; then the inspector's description. Thrown errors are
/// the expected outcome for damaged files; crashes, traps, hangs, huge allocations and HDF5
/// objects left open are failures.
@_cdecl("LLVMFuzzerTestOneInput")
public func checkpointFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let path = FuzzInput.write(data, size)
    do { try Checkpoint.verify(path: path) } catch {}
    FuzzInput.checkNothingLeftOpen(after: "Checkpoint.verify")
    loadLikeResume(path)
    FuzzInput.checkNothingLeftOpen(after: "Checkpoint.load")
    _ = try? Inspector.describe(path: path)
    FuzzInput.checkNothingLeftOpen(after: "Inspector.describe")
    FuzzInput.releaseLibraryMemory()
    return 0
}

/// The part of the launcher's run configuration that builds the model (its JSON keys are snake
/// case, as `vqvae train` writes them).
private struct StoredConfiguration: Decodable {
    var model: ModelConfiguration
}

/// The largest model this harness builds: models are built from the configuration in the file,
/// and a real run refuses what does not fit before building; the fuzzer only needs a model whose
/// tensors the checkpoint can be checked against.
private let largestParameterCount = 4_000_000

private func loadLikeResume(_ path: String) {
    do {
        let json = try Checkpoint.configuration(path: path)
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        guard let stored = try? decoder.decode(StoredConfiguration.self, from: Foundation.Data(json.utf8)) else { return }
        let configuration = stored.model
        try configuration.validate()
        guard estimatedSize(configuration) <= largestParameterCount else { return }
        let model = try VQVAE(configuration: configuration, maxBatch: 1)
        let optimizer = Adam(count: model.parameters.count)
        _ = try Checkpoint.load(path: path, into: model, optimizer: optimizer)
    } catch {
        // A clean, typed error is what a damaged file must produce.
    }
}

/// An upper bound on the values a model of `c` allocates for one image: parameters (convolutions
/// of at most hidden x hidden x 4 x 4), codebook and EMA statistics, and activations at the input
/// resolution, with overflow counted as too large.
private func estimatedSize(_ c: ModelConfiguration) -> Int {
    let widest = max(c.hidden, c.residualHidden, c.codeDimension, c.channels)
    let terms: [[Int]] = [
        [widest, widest, 16, c.downsamplings * 2 + c.residualBlocks * 4 + 4],
        [c.codes, c.codeDimension, 3],
        [c.height, c.width, widest, 16],
    ]
    var total = 0
    for term in terms {
        var product = 1
        for factor in term {
            let (next, overflow) = product.multipliedReportingOverflow(by: max(factor, 0))
            if overflow { return Int.max }
            product = next
        }
        let (sum, overflow) = total.addingReportingOverflow(product)
        if overflow { return Int.max }
        total = sum
    }
    return total
}
