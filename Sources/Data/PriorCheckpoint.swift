import Foundation
import Model

/// What a prior checkpoint records besides its tensors.
public struct PriorCheckpointState: Equatable, Sendable {
    public var step: Int64
    public var worldSize: Int
    /// The run's settings (`PriorRunConfiguration` as JSON).
    public var configuration: String
    public var elapsedSeconds: Double

    public init(step: Int64, worldSize: Int, configuration: String, elapsedSeconds: Double) {
        self.step = step
        self.worldSize = worldSize
        self.configuration = configuration
        self.elapsedSeconds = elapsedSeconds
    }
}

/// Checkpoints of `vqvae train-prior` (docs/formats.md): HDF5 with the root attributes `format`
/// = `vqvae-prior`, `format_version` = 1, `step`, `world_size`, `config` (JSON), `created`,
/// `elapsed_seconds`; the prior's tensors under `/prior/...` and Adam's moments under
/// `/optimizer/exp_avg/...` and `/optimizer/exp_avg_sq/...` (float32, Fletcher-32 checked), Adam's
/// step as `/optimizer` attribute `t`. Written like model checkpoints: built in memory, stored under a
/// temporary name, synced and renamed.
public enum PriorCheckpoint {
    public static let format = "vqvae-prior"
    public static let formatVersion: Int64 = 1

    @discardableResult
    public static func write(directory: String, prior: CodePrior, optimizer: Adam, state: PriorCheckpointState) throws -> String {
        let name = Checkpoint.fileName(step: state.step)
        let finalPath = directory + "/" + name
        let bytes = try OutputFile.bytesInMemory(name: finalPath) { file in
            try file.setAttribute("format", string: format)
            try file.setAttribute("format_version", int64: formatVersion)
            try file.setAttribute("step", int64: state.step)
            try file.setAttribute("world_size", int64: Int64(state.worldSize))
            try file.setAttribute("config", string: state.configuration)
            try file.setAttribute("created", string: Checkpoint.isoTimestamp())
            try file.setAttribute("elapsed_seconds", double: state.elapsedSeconds)
            // Tensors in PyTorch's layouts (convolution weights [out, in, kh, kw]), as model checkpoints.
            let staging = FloatBuffer(count: max(prior.parameters.slots.map(\.count).max() ?? 1, 1))
            defer { withExtendedLifetime(staging) {} }
            for (group, buffer) in [("prior", prior.parameters.values), ("optimizer/exp_avg", optimizer.firstMoment),
                                    ("optimizer/exp_avg_sq", optimizer.secondMoment)] {
                for slot in prior.parameters.slots {
                    let values = buffer.pointer + slot.offset
                    if let index = (0..<slot.count).first(where: { !values[$0].isFinite }) {
                        throw DataError("refusing to write the prior checkpoint of step \(state.step): \(group)/\(slot.name) holds \(values[index]) at index \(index); the earlier checkpoints are kept")
                    }
                    slot.exportToTorch(values, into: staging.pointer)
                    try file.writeFloats("/\(group)/\(slot.name)", shape: slot.shape, from: staging.pointer)
                }
            }
            try file.setAttribute("t", on: "/optimizer", int64: optimizer.step)
        }
        return try Checkpoint.store(bytes, at: finalPath, directory: directory, name: name, step: state.step, halfWritten: {})
    }

    /// The `config` JSON of a prior checkpoint, after checking its format.
    public static func configuration(path: String) throws -> String {
        try HDF5Lock.run {
            let file = try HDF5File.open(path)
            try checkFormat(file, path: path)
            return try file.stringAttribute("config")
        }
    }

    /// Reads a prior checkpoint into `prior` (and `optimizer`, when given), checking the format
    /// and every tensor's shape and checksum.
    @discardableResult
    public static func load(path: String, into prior: CodePrior, optimizer: Adam?) throws -> PriorCheckpointState {
        try HDF5Lock.run {
            let file = try HDF5File.open(path)
            try checkFormat(file, path: path)
            var groups = [("prior", prior.parameters.values)]
            if let optimizer { groups += [("optimizer/exp_avg", optimizer.firstMoment), ("optimizer/exp_avg_sq", optimizer.secondMoment)] }
            let staging = FloatBuffer(count: max(prior.parameters.slots.map(\.count).max() ?? 1, 1))
            defer { withExtendedLifetime(staging) {} }
            for (group, buffer) in groups {
                for slot in prior.parameters.slots {
                    let name = "/\(group)/\(slot.name)"
                    guard file.kind(of: name) == .dataset else {
                        throw DataError("\(path): tensor '\(name)' is missing (a prior of another size?)")
                    }
                    try file.readFloats(name, shape: slot.shape, into: staging.pointer)
                    slot.importFromTorch(staging.pointer, into: buffer.pointer + slot.offset)
                }
            }
            if let optimizer { optimizer.step = try file.int64Attribute("t", on: "/optimizer") }
            return PriorCheckpointState(step: try file.int64Attribute("step"), worldSize: Int(try file.int64Attribute("world_size")),
                                        configuration: try file.stringAttribute("config"),
                                        elapsedSeconds: try file.doubleAttribute("elapsed_seconds"))
        }
    }

    static func checkFormat(_ file: HDF5File, path: String) throws {
        try Checkpoint.checkFormat(file, path: path, format: format, version: formatVersion)
    }
}
