import CHDF5

/// Human-readable descriptions of HDF5 files for `vqvae inspect`: an image dataset
/// (spec/dataset.md) or a checkpoint (spec/checkpoint.md), whichever the file is.
public enum Inspector {
    public static func describe(path: String, imagesKey: String = "images") throws -> String {
        let isCheckpoint = try HDF5Lock.run {
            let file = try HDF5File.open(path)
            return (try? file.stringAttribute("format")) == Checkpoint.format
        }
        return isCheckpoint ? try describeCheckpoint(path: path) : try describeDataset(path: path, imagesKey: imagesKey)
    }

    static func describeDataset(path: String, imagesKey: String) throws -> String {
        let dataset = try ImageDataset(paths: [path], imagesKey: imagesKey)
        var lines = ["\(path): image dataset",
                     "  \(imagesKey): N=\(dataset.count) H=\(dataset.height) W=\(dataset.width) C=\(dataset.channels) \(dataset.elementType.rawValue)",
                     "  chunks: \(dataset.chunks.map { "(" + $0.map(String.init).joined(separator: ", ") + ")" } ?? "none (contiguous)")"
                        + "  filters: \(dataset.filters.isEmpty ? "none" : dataset.filters.joined(separator: ", "))"]
        if dataset.hasLabels {
            let type = try HDF5Lock.run { try HDF5File.open(path).info("labels").elementType }
            var summary = "  labels: \(dataset.count) \(type.rawValue)"
            if dataset.count <= largestLabelSummary {
                summary += ", " + (try summarizeLabels(dataset))
            }
            lines.append(summary)
        } else {
            lines.append("  labels: none")
        }
        return lines.joined(separator: "\n")
    }

    /// Labels are summarised (range, distinct values) up to this many; beyond, only counted.
    static let largestLabelSummary = 10_000_000
    /// Distinct label values counted exactly up to this many.
    static let largestDistinctCount = 1_000_000

    /// `values LOW..HIGH, K distinct`, reading the labels in blocks so that memory stays small.
    private static func summarizeLabels(_ dataset: ImageDataset) throws -> String {
        var low = Int64.max, high = Int64.min
        var distinct = Set<Int64>()
        var start = 0
        while start < dataset.count {
            let end = min(start + 65_536, dataset.count)
            for value in try dataset.labels(indices: Array(start..<end)) {
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
            lines.append("  config: \(try file.stringAttribute("config"))")
            if file.kind(of: "/optimizer") == .group {
                lines.append("  optimizer: adam t=\(try file.int64Attribute("t", on: "/optimizer")) lr=\(try file.doubleAttribute("lr", on: "/optimizer"))")
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
