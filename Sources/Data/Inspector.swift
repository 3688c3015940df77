import CHDF5
import Foundation
import Model

/// Human-readable descriptions of HDF5 files for `vqvae inspect`: an image dataset
/// (spec/dataset.md), a checkpoint (spec/checkpoint.md) or a code file (`CodeFile`), whichever the
/// file is.
public enum Inspector {
    /// The `format` attribute of a code file.
    static let codeFileFormat = "vqvae-codes"

    public static func describe(path: String, imagesKey: String = "images") throws -> String {
        let format = try HDF5Lock.run { () throws -> String? in
            let file = try HDF5File.open(path)
            return try? file.stringAttribute("format")
        }
        switch format {
        case Checkpoint.format?: return try describeCheckpoint(path: path)
        case PriorCheckpoint.format?: return try describePriorCheckpoint(path: path)
        case codeFileFormat?: return try describeCodeFile(path: path)
        default: return try describeDataset(path: path, imagesKey: imagesKey)
        }
    }

    /// A prior checkpoint (`vqvae train-prior`), loaded as `compress` loads it (every tensor's
    /// checksum verified).
    static func describePriorCheckpoint(path: String) throws -> String {
        let json = try PriorCheckpoint.configuration(path: path)
        guard let settings = try? JSONSerialization.jsonObject(with: Foundation.Data(json.utf8)) as? [String: Any],
              let prior = settings["prior"] as? [String: Any],
              let codes = prior["codes"] as? Int, let levels = prior["levels"] as? Int, let channels = prior["channels"] as? Int else {
            throw DataError("\(path): the prior checkpoint's config cannot be read")
        }
        let model = try CodePrior(configuration: PriorConfiguration(codes: codes, levels: levels, channels: channels),
                                  maxBatch: 1, height: 2, width: 2)
        let state = try PriorCheckpoint.load(path: path, into: model, optimizer: Adam(count: model.parameters.count))
        return ["\(path): prior checkpoint (format version \(PriorCheckpoint.formatVersion))",
                "  step \(state.step), written by \(state.worldSize) rank(s), " + String(format: "%.0f s of training", state.elapsedSeconds),
                "  the codes of \(settings["vq_checkpoint"] as? String ?? "?") (weights fingerprint \(settings["vq_fingerprint"] as? String ?? "?")): "
                    + "\(levels) codebook(s) of \(codes) codes",
                "  \(channels) channels, \(model.parameters.count) parameters; every tensor's checksum verifies"]
            .joined(separator: "\n")
    }

    /// A code file, read and checked as `vqvae decode` reads it (the packed codes' checksum included).
    static func describeCodeFile(path: String) throws -> String {
        let codes = try CodeFile.read(path: path)
        let version = try HDF5Lock.run { try HDF5File.open(path).int64Attribute("format_version") }
        return ["\(path): code file (format version \(version))",
                "  \(codes.count) images of H=\(codes.height) W=\(codes.width) C=\(codes.channels), each a latent grid of \(codes.latentHeight)x\(codes.latentWidth) codes",
                "  codebook size \(codes.codebookSize), \(codes.bitsPerCode) bits per code, \(codes.packed.count) packed bytes ("
                    + String(format: "%.4f", codes.bitsPerPixel) + " bits per pixel)",
                "  checkpoint: \(codes.checkpoint), codebook checksum \(String(codes.codebookChecksum, radix: 16))"
                    + (codes.weights == .averaged ? ", encoded with its weight EMA" : "")]
            .joined(separator: "\n")
    }

    static func describeDataset(path: String, imagesKey: String) throws -> String {
        if try VariableSizeDataset.isVariableSize(path: path, imagesKey: imagesKey) {
            return try describeVariableSizeDataset(path: path)
        }
        let dataset = try ImageDataset(paths: [path], imagesKey: imagesKey)
        return ["\(path): image dataset",
                "  \(imagesKey): N=\(dataset.count) H=\(dataset.height) W=\(dataset.width) C=\(dataset.channels) \(dataset.elementType.rawValue)",
                "  " + storage(chunks: dataset.chunks, filters: dataset.filters),
                try labelLine(path: path, hasLabels: dataset.hasLabels, count: dataset.count, read: dataset.labels(indices:))]
            .joined(separator: "\n")
    }

    /// `chunks: (...)  filters: ...` of a dataset's storage.
    private static func storage(chunks: [Int]?, filters: [String]) -> String {
        "chunks: \(chunks.map { "(" + $0.map(String.init).joined(separator: ", ") + ")" } ?? "none (contiguous)")"
            + "  filters: \(filters.isEmpty ? "none" : filters.joined(separator: ", "))"
    }

    /// `labels: N TYPE, values LOW..HIGH, K distinct` (the summary only up to `largestLabelSummary`), or `labels: none`.
    private static func labelLine(path: String, hasLabels: Bool, count: Int, read: ([Int]) throws -> [Int64]) throws -> String {
        guard hasLabels else { return "  labels: none" }
        let type = try HDF5Lock.run { try HDF5File.open(path).info("labels").elementType }
        var summary = "  labels: \(count) \(type.rawValue)"
        if count <= largestLabelSummary { summary += ", " + (try summarizeLabels(count: count, read: read)) }
        return summary
    }

    /// A dataset of images of different sizes: count, smallest and largest sides, channels, storage.
    static func describeVariableSizeDataset(path: String) throws -> String {
        let dataset = try VariableSizeDataset(paths: [path])
        var heights = (Int.max, 0), widths = (Int.max, 0)
        for index in 0..<dataset.count {
            let (h, w) = dataset.imageSize(index)
            heights = (min(heights.0, h), max(heights.1, h))
            widths = (min(widths.0, w), max(widths.1, w))
        }
        let smallest = dataset.smallestImage
        return ["\(path): image dataset of images of different sizes",
                "  N=\(dataset.count) C=\(dataset.channels) uint8, H \(heights.0)..\(heights.1), W \(widths.0)..\(widths.1); "
                    + "smallest \(smallest.height)x\(smallest.width) (image \(smallest.index)), \(dataset.pixelBytes) pixel bytes",
                "  pixels " + storage(chunks: dataset.chunks, filters: dataset.filters),
                try labelLine(path: path, hasLabels: dataset.hasLabels, count: dataset.count, read: dataset.labels(indices:))]
            .joined(separator: "\n")
    }

    /// Labels are summarised (range, distinct values) up to this many; beyond, only counted.
    static let largestLabelSummary = 10_000_000
    /// Distinct label values counted exactly up to this many.
    static let largestDistinctCount = 1_000_000

    /// `values LOW..HIGH, K distinct`, reading the labels in blocks so that memory stays small.
    private static func summarizeLabels(count: Int, read: ([Int]) throws -> [Int64]) throws -> String {
        var low = Int64.max, high = Int64.min
        var distinct = Set<Int64>()
        var start = 0
        while start < count {
            let end = min(start + 65_536, count)
            for value in try read(Array(start..<end)) {
                low = min(low, value)
                high = max(high, value)
                if distinct.count <= largestDistinctCount { distinct.insert(value) }
            }
            start = end
        }
        let distinctText = distinct.count > largestDistinctCount ? "more than \(largestDistinctCount)" : "\(distinct.count)"
        return "values \(low)..\(high), \(distinctText) distinct"
    }

    static func describeCheckpoint(path: String) throws -> String {
        try HDF5Lock.run {
            let file = try HDF5File.open(path)
            try Checkpoint.checkFormat(file, path: path)
            var lines = ["\(path): checkpoint (format version \(Checkpoint.formatVersion))"]
            lines.append("  model \(try file.stringAttribute("model")), step \(try file.int64Attribute("step")), epoch \(try file.int64Attribute("epoch")), "
                + "samples_seen \(try file.int64Attribute("samples_seen")), written by \(try file.int64Attribute("world_size")) rank(s) at \(try file.stringAttribute("created"))")
            let config = try file.stringAttribute("config")
            lines.append("  config: \(JSONLayout.pretty(config, indent: "  ") ?? config)")
            if file.kind(of: "/optimizer") == .group {
                // The learning rate is a float32: printed as Float, not as the Double it widens to.
                let lr = Float(try file.doubleAttribute("lr", on: "/optimizer"))
                lines.append("  optimizer: adam t=\(try file.int64Attribute("t", on: "/optimizer")) lr=\(lr)")
            }
            let averaged = "/" + WeightAverage.group
            if file.kind(of: averaged) == .group {
                lines.append("  weight EMA: decay \(try file.doubleAttribute("decay", on: averaged)), \(try file.int64Attribute("updates", on: averaged)) updates")
            }
            if file.hasAttribute("best_metric") {
                lines.append("  best \(try file.stringAttribute("best_metric")) \(try file.doubleAttribute("best_score")) at step \(try file.int64Attribute("best_step"))")
            }
            var tensors: [String] = []
            collectDatasets(file, group: "/", into: &tensors)
            var failures: [String] = []
            var parameters = 0
            for name in tensors {
                let info = try file.info(name)
                let count = info.elementCount
                if name.hasPrefix("/model/") && !name.contains("ema_") { parameters += count }
                if name.hasPrefix("/model/") {
                    lines.append("  \(name) \(info.shape) \(info.elementType.rawValue)\(info.filters.contains("fletcher32") ? "" : " (no checksum)")")
                }
                // Reading every tensor verifies its Fletcher-32 checksum. Memory is allocated only
                // for a float32 tensor whose values are all in the file (see `storesEveryValue`).
                guard info.elementType == .float32, info.storesEveryValue else {
                    failures.append(name)
                    continue
                }
                var values = [Float](repeating: 0, count: max(count, 1))
                do {
                    try values.withUnsafeMutableBufferPointer { try file.readFloats(name, shape: info.shape, into: $0.baseAddress!) }
                } catch {
                    failures.append(name)
                }
            }
            lines.append("  \(tensors.count) tensors, \(parameters) model values (parameters and codebook)")
            lines.append(failures.isEmpty ? "  checksums: all \(tensors.count) tensors verify"
                                          : "  checksums: FAILED for \(failures.joined(separator: ", "))")
            if !failures.isEmpty {
                throw DataError("\(path): damaged checkpoint: checksum or read failure in \(failures.joined(separator: ", "))")
            }
            return lines.joined(separator: "\n")
        }
    }

    /// Objects listed at most (a checkpoint holds a few hundred).
    static let largestObjectCount = 100_000
    /// Groups nested deeper are not listed (a checkpoint nests four deep).
    static let largestDepth = 64

    /// The datasets under `group`, depth first in name order. Each group is entered once, however
    /// many links lead to it (HDF5 allows links back up the tree), and the listing stops at
    /// `largestObjectCount` objects or `largestDepth` nested groups.
    private static func collectDatasets(_ file: HDF5File, group: String, into names: inout [String]) {
        var visited: Set<UInt64> = []
        var seen = 0
        func collect(_ group: String, depth: Int) {
            guard depth <= largestDepth else { return }
            if let address = file.objectAddress(of: group), !visited.insert(address).inserted { return }
            for member in file.members(of: group).sorted() {
                seen += 1
                guard seen <= largestObjectCount else { return }
                let path = (group == "/" ? "" : group) + "/" + member
                switch file.kind(of: path) {
                case .dataset: names.append(path)
                case .group: collect(path, depth: depth + 1)
                default: break
                }
            }
        }
        collect(group, depth: 0)
    }
}
