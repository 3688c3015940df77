import Foundation
import Model
#if canImport(Glibc)
import Glibc
#endif

/// The run's position and identity stored beside the tensors of a checkpoint.
public struct CheckpointState: Equatable, Sendable {
    /// Optimiser steps completed.
    public var step: Int64
    /// Epoch of the next batch.
    public var epoch: Int64
    /// Global samples consumed so far.
    public var samplesSeen: Int64
    /// Ranks of the run that wrote it.
    public var worldSize: Int
    /// The resolved configuration as JSON.
    public var configuration: String
    /// Attributes of `/data`: what the sampler and random streams need to continue
    /// (`seed`, `shuffle`, `samples_seen`, `epoch`, `dataset_size`, `global_batch_size`).
    public var data: [String: Int64]
    /// Seconds of training so far, over every run that led to this checkpoint (0 when a file
    /// written before this attribute existed is read).
    public var elapsedSeconds: Double
    /// `--keep-best`: the best validation score of the run up to this checkpoint (nil without it,
    /// and before the first validation).
    public var best: BestScore?

    public init(step: Int64, epoch: Int64, samplesSeen: Int64, worldSize: Int, configuration: String, data: [String: Int64],
                elapsedSeconds: Double = 0, best: BestScore? = nil) {
        self.step = step
        self.epoch = epoch
        self.samplesSeen = samplesSeen
        self.worldSize = worldSize
        self.configuration = configuration
        self.data = data
        self.elapsedSeconds = elapsedSeconds
        self.best = best
    }
}

/// The best validation score of a run (`train --keep-best`): which metric, its value and the step
/// that reached it. Stored as the root attributes `best_metric`, `best_score` and `best_step`.
public struct BestScore: Equatable, Sendable {
    public var metric: String
    public var score: Double
    public var step: Int64

    public init(metric: String, score: Double, step: Int64) {
        self.metric = metric
        self.score = score
        self.step = step
    }
}

/// Which weights a command loads from a checkpoint.
public enum CheckpointWeights: String, Sendable {
    /// The trained parameters (`/model`).
    case trained
    /// The moving average of the parameters (`/weight_ema`, `train --weight-ema`).
    case averaged = "ema"
}

/// Checkpoints in the HDF5 layout of spec/checkpoint.md (format version 1): tensors in PyTorch's
/// layouts, float32 little-endian, chunked, Fletcher-32 checksummed; written to a temporary name in
/// the same folder, flushed and synced, then renamed.
public enum Checkpoint {
    public static let format = "vqvae-checkpoint"
    public static let formatVersion: Int64 = 1

    /// The name of the best checkpoint of a run (`train --keep-best`), beside the step files.
    public static let bestFileName = "best.h5"

    /// Checkpoint file names in `directory`, newest (highest step) first (`best.h5` is not one of
    /// them: it is never pruned or resumed from automatically).
    public static func files(in directory: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
            .filter { $0.hasPrefix("step-") && $0.hasSuffix(".h5") }.sorted(by: >)
    }

    /// Refuses a file that is not a checkpoint of this format version, naming the difference.
    static func checkFormat(_ file: HDF5File, path: String) throws {
        try checkFormat(file, path: path, format: format, version: formatVersion)
    }

    /// The checkpoint formats of this project, as their files are named in messages.
    static let formatNames = [format: "a model's checkpoint (vqvae train)", PriorCheckpoint.format: "a prior's checkpoint (vqvae train-prior)"]

    /// Refuses a file whose `format` attribute is not `expected` or whose `format_version` is not
    /// `version`; a checkpoint of the project's other kind is named as such.
    static func checkFormat(_ file: HDF5File, path: String, format expected: String, version: Int64) throws {
        let found = (try? file.stringAttribute("format")) ?? "(none)"
        guard found == expected else {
            if let other = formatNames[found], let wanted = formatNames[expected] {
                throw DataError("\(path) is \(other), not \(wanted)")
            }
            throw DataError("\(path): not a checkpoint (format attribute is '\(found)', expected '\(expected)')")
        }
        let stored = try file.int64Attribute("format_version")
        guard stored == version else {
            throw DataError("\(path): checkpoint format version \(stored) is not supported (this build reads version \(version))")
        }
    }

    /// `step-00001200.h5`.
    public static func fileName(step: Int64) -> String {
        let digits = String(step)
        return "step-" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits + ".h5"
    }

    /// Writes the checkpoint of `model`, `optimizer` and `weightAverage` (when given) at
    /// `state.step` into `directory`, as `name` (default: `step-XXXXXXXX.h5`), and returns its
    /// path. The file is built in memory, written to a temporary name in `directory`, synced and
    /// renamed, so a failure (a full disk, an I/O error, a kill) leaves no file under the final name
    /// and the earlier checkpoints untouched. `halfWritten` runs when half of the bytes are in the
    /// temporary file (a fault-injection point; nothing by default).
    @discardableResult
    public static func write(directory: String, name: String? = nil, model: VQVAE, optimizer: Adam,
                             weightAverage: WeightAverage? = nil, state: CheckpointState,
                             halfWritten: () -> Void = {}) throws -> String {
        let name = name ?? fileName(step: state.step)
        let finalPath = directory + "/" + name
        let image = try OutputFile.bytesInMemory(name: finalPath) {
            try writeContents($0, model: model, optimizer: optimizer, weightAverage: weightAverage, state: state)
        }
        return try store(image, at: finalPath, directory: directory, name: name, step: state.step, halfWritten: halfWritten)
    }

    /// Writes `bytes` to `.<name>.tmp-<pid>` beside `finalPath`, syncs and closes it, renames it to
    /// `finalPath` and syncs the folder; on any failure removes the temporary file and throws one
    /// message naming the cause (a full disk says how much space there is and how much is needed).
    static func store(_ bytes: [UInt8], at finalPath: String, directory: String, name: String, step: Int64,
                              halfWritten: () -> Void) throws -> String {
        let temporaryPath = directory + "/." + name + ".tmp-\(getpid())"
        do {
            try OutputFile.storeAtomically(bytes, temporaryPath: temporaryPath, finalPath: finalPath, folder: directory,
                                           halfWritten: halfWritten)
        } catch let failure as OutputFile.StoreFailure {
            if failure.call == "creating" {
                throw DataError("\(temporaryPath): cannot create the checkpoint file (\(failure.reason))")
            }
            if failure.isDiskFull {
                let free = freeBytes(directory).map { String(format: "%.2f MB", Double($0) / 1e6) } ?? "too little"
                throw DataError("\(finalPath): the disk is full (\(free) free in \(directory), the checkpoint of step \(step) needs \(String(format: "%.2f MB", Double(bytes.count) / 1e6))); nothing was written under this name and the earlier checkpoints are intact. Free some space (or lower --keep) and continue with --resume auto")
            }
            throw DataError("\(finalPath): \(failure.call) the checkpoint failed (\(failure.reason)); nothing was written under this name and the earlier checkpoints are intact")
        }
        return finalPath
    }

    /// Bytes available to this process in the file system holding `path`.
    static func freeBytes(_ path: String) -> Int64? {
        var status = statvfs()
        guard statvfs(path, &status) == 0 else { return nil }
        return Int64(status.f_bavail) * Int64(status.f_frsize)
    }

    /// Removes the temporary files of checkpoint writes that never finished (the writer was killed
    /// or its machine lost) and returns their names. Call only when no other run writes to `directory`.
    @discardableResult
    public static func removeUnfinished(in directory: String) -> [String] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
            .filter { ($0.hasPrefix(".step-") || $0.hasPrefix("." + bestFileName)) && $0.contains(".h5.tmp-") }.sorted()
        for name in names { unlink(directory + "/" + name) }
        return names
    }

    private static func writeContents(_ file: HDF5File, model: VQVAE, optimizer: Adam, weightAverage: WeightAverage?,
                                      state: CheckpointState) throws {
        try file.setAttribute("format", string: format)
        try file.setAttribute("format_version", int64: formatVersion)
        try file.setAttribute("step", int64: state.step)
        try file.setAttribute("epoch", int64: state.epoch)
        try file.setAttribute("samples_seen", int64: state.samplesSeen)
        try file.setAttribute("world_size", int64: Int64(state.worldSize))
        try file.setAttribute("model", string: model.configuration.model.rawValue)
        try file.setAttribute("config", string: state.configuration)
        try file.setAttribute("created", string: isoTimestamp())
        try file.setAttribute("elapsed_seconds", double: state.elapsedSeconds)
        if let best = state.best {
            try file.setAttribute("best_metric", string: best.metric)
            try file.setAttribute("best_score", double: best.score)
            try file.setAttribute("best_step", int64: best.step)
        }

        // A non-finite value is refused: a checkpoint never holds NaN or infinity.
        func put(_ name: String, _ shape: [Int], _ values: UnsafePointer<Float>) throws {
            let count = shape.reduce(1, *)
            if let index = (0..<count).first(where: { !values[$0].isFinite }) {
                throw DataError("refusing to write the checkpoint of step \(state.step): \(name) holds \(values[index]) at index \(index); the earlier checkpoints are kept")
            }
            try file.writeFloats(name, shape: shape, from: values)
        }
        let buffers = model.stateBuffers + optimizer.stateBuffers(for: model)
            + (weightAverage.map { [$0.stateBuffer(for: model)] } ?? [])
        let staging = FloatBuffer(count: max(buffers.flatMap(\.tensors).map(\.count).max() ?? 0, 1))
        defer { withExtendedLifetime(staging) {} }  // raw pointers below outlive the last reference
        for state in buffers {
            for tensor in state.tensors {
                tensor.exportToTorch(state.buffer.pointer + tensor.offset, into: staging.pointer)
                try put(state.path(of: tensor), tensor.shape, staging.pointer)
            }
        }
        try file.createGroup("/optimizer")
        try file.setAttribute("t", on: "/optimizer", int64: optimizer.step)
        try file.setAttribute("lr", on: "/optimizer", double: Double(optimizer.learningRate))
        try file.setAttribute("beta1", on: "/optimizer", double: optimizer.beta1)
        try file.setAttribute("beta2", on: "/optimizer", double: optimizer.beta2)
        try file.setAttribute("eps", on: "/optimizer", double: optimizer.epsilon)
        try file.setAttribute("weight_decay", on: "/optimizer", double: optimizer.weightDecay)
        try file.createGroup("/data")
        for (name, value) in state.data.sorted(by: { $0.key < $1.key }) {
            try file.setAttribute(name, on: "/data", int64: value)
        }
        if let weightAverage {
            try file.createGroup("/" + WeightAverage.group)
            try file.setAttribute("decay", on: "/" + WeightAverage.group, double: weightAverage.decay)
            try file.setAttribute("updates", on: "/" + WeightAverage.group, int64: weightAverage.updates)
        }
    }

    /// Reads a checkpoint into `model` (and `optimizer` and `weightAverage`, when given), checking
    /// the format, the model kind and every tensor's shape; a damaged tensor fails its Fletcher-32
    /// check. With `weights: .averaged` the model's parameters are the checkpoint's weight average
    /// (`/weight_ema`), which it must hold; the EMA codebook is `/model`'s either way.
    public static func load(path: String, into model: VQVAE, optimizer: Adam?, weightAverage: WeightAverage? = nil,
                            weights: CheckpointWeights = .trained) throws -> CheckpointState {
        try HDF5Lock.run {
            try loadLocked(path: path, into: model, optimizer: optimizer, weightAverage: weightAverage, weights: weights)
        }
    }

    /// Whether the checkpoint at `path` holds a weight average (`train --weight-ema`).
    public static func hasWeightAverage(path: String) throws -> Bool {
        try HDF5Lock.run { try HDF5File.open(path).kind(of: "/" + WeightAverage.group) == .group }
    }

    private static func loadLocked(path: String, into model: VQVAE, optimizer: Adam?, weightAverage: WeightAverage?,
                                   weights: CheckpointWeights) throws -> CheckpointState {
        let file = try HDF5File.open(path)
        try checkFormat(file, path: path)
        let kind = try file.stringAttribute("model")
        guard kind == model.configuration.model.rawValue else {
            throw DataError("\(path): checkpoint holds a '\(kind)' model, not '\(model.configuration.model.rawValue)'")
        }
        let averaged = "/" + WeightAverage.group
        if weightAverage != nil || weights == .averaged, file.kind(of: averaged) != .group {
            throw DataError("\(path): no weight EMA (\(averaged)); it was trained without --weight-ema")
        }
        var buffers = model.stateBuffers + (optimizer?.stateBuffers(for: model) ?? [])
        if let weightAverage { buffers.append(weightAverage.stateBuffer(for: model)) }
        let staging = FloatBuffer(count: max(buffers.flatMap(\.tensors).map(\.count).max() ?? 0, 1))
        defer { withExtendedLifetime(staging) {} }
        for state in buffers {
            // The averaged weights go where the trained ones would.
            let group = weights == .averaged && state.buffer === model.parameters.values ? WeightAverage.group : state.group
            for tensor in state.tensors {
                let name = "/\(group)/\(tensor.name)"
                guard file.kind(of: name) == .dataset else {
                    if name.hasPrefix("/model/quantizer/ema_") {
                        throw DataError("\(path): no EMA statistics (\(name)); was it trained with --codebook grad?")
                    }
                    throw DataError("\(path): tensor '\(name)' is missing (a checkpoint of another architecture?)")
                }
                try file.readFloats(name, shape: tensor.shape, into: staging.pointer)
                tensor.importFromTorch(staging.pointer, into: state.buffer.pointer + tensor.offset)
            }
        }
        if let optimizer {
            optimizer.step = try file.int64Attribute("t", on: "/optimizer")
        }
        if let weightAverage {
            weightAverage.updates = try file.int64Attribute("updates", on: averaged)
        }
        var data: [String: Int64] = [:]
        for name in ["seed", "shuffle", "wrap", "samples_seen", "epoch", "dataset_size", "global_batch_size"]
        where file.hasAttribute(name, on: "/data") {
            data[name] = try file.int64Attribute(name, on: "/data")
        }
        return CheckpointState(
            step: try file.int64Attribute("step"), epoch: try file.int64Attribute("epoch"),
            samplesSeen: try file.int64Attribute("samples_seen"), worldSize: Int(try file.int64Attribute("world_size")),
            configuration: try file.stringAttribute("config"), data: data,
            elapsedSeconds: file.hasAttribute("elapsed_seconds") ? try file.doubleAttribute("elapsed_seconds") : 0,
            best: file.hasAttribute("best_metric")
                ? BestScore(metric: try file.stringAttribute("best_metric"), score: try file.doubleAttribute("best_score"),
                            step: try file.int64Attribute("best_step"))
                : nil)
    }

    /// Checks that a checkpoint opens, has this format and version, and that every tensor reads
    /// back through its Fletcher-32 checksum; throws naming what is wrong.
    public static func verify(path: String) throws {
        _ = try Inspector.describeCheckpoint(path: path)
    }

    /// The `config` JSON of a checkpoint, read without building a model.
    public static func configuration(path: String) throws -> String {
        try HDF5Lock.run {
            let file = try HDF5File.open(path)
            try checkFormat(file, path: path)
            return try file.stringAttribute("config")
        }
    }

    static func isoTimestamp() -> String {
        var now = time(nil)
        var parts = tm()
        gmtime_r(&now, &parts)
        var buffer = [CChar](repeating: 0, count: 32)
        strftime(&buffer, 32, "%Y-%m-%dT%H:%M:%SZ", &parts)
        return String(cString: buffer)
    }
}
