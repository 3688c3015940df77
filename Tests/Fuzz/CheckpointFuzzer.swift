import Data
import Foundation
import Model

/// libFuzzer target for the checkpoint readers: every input is a file given to `--resume`, to
/// `vqvae inspect` or as a prior to `train-prior --resume`, `compress`, `decompress` and `sample`
/// (`PriorCheckpoint.configuration` and `load` into a prior built from the stored settings). It runs what a resumed `vqvae train` runs: `Checkpoint.verify`, the stored
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
    loadLikePrior(path)
    FuzzInput.checkNothingLeftOpen(after: "PriorCheckpoint.load")
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

/// The memory this harness lets a model take: the launcher's own check (`VQVAE.init` calls
/// `checkFitsInMemory` with the machine's memory) runs here against a budget that stays inside
/// the fuzzer's RSS limit.
private let modelBudget = 256 << 20

private func loadLikeResume(_ path: String) {
    do {
        let json = try Checkpoint.configuration(path: path)
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        guard let stored = try? decoder.decode(StoredConfiguration.self, from: Foundation.Data(json.utf8)) else { return }
        let configuration = stored.model
        try configuration.validate()
        try configuration.checkFitsInMemory(maxBatch: 1, memory: modelBudget)
        let model = try VQVAE(configuration: configuration, maxBatch: 1)
        let optimizer = Adam(count: model.parameters.count)
        _ = try Checkpoint.load(path: path, into: model, optimizer: optimizer)
    } catch {
        // A clean, typed error is what a damaged file must produce.
    }
}

/// The part of a prior checkpoint's configuration that builds the prior.
private struct StoredPriorConfiguration: Decodable {
    var prior: PriorConfiguration
}

private func loadLikePrior(_ path: String) {
    do {
        let json = try PriorCheckpoint.configuration(path: path)
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        guard let stored = try? decoder.decode(StoredPriorConfiguration.self, from: Foundation.Data(json.utf8)) else { return }
        let c = stored.prior
        try c.validate()
        // The prior's parameters grow with K * C * L; keep within the fuzzer's memory.
        guard c.codes * c.channels * c.levels * 8 <= modelBudget / 4 else { return }
        let prior = try CodePrior(configuration: c, maxBatch: 1, height: 2, width: 2)
        _ = try PriorCheckpoint.load(path: path, into: prior, optimizer: Adam(count: prior.parameters.count))
    } catch {
        // A clean, typed error is what a damaged file must produce.
    }
}
