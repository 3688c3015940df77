import CHDF5
import Model

/// Images compressed to code indices (`vqvae encode`): an HDF5 file holding
///
/// - `/codes`: uint8, the indices of every image's latent grid `[N, h, w]` in row-major order,
///   bit-packed at `bits_per_code = max(1, ceil(log2 K))` bits each (`CodePacking`), one packed run
///   for the whole file;
/// - root attributes `format` = "vqvae-codes", `format_version` = 1, `count` N, `latent_height` h,
///   `latent_width` w, `codebook_size` K, `bits_per_code`, `height`, `width`, `channels` (the image
///   size), `checkpoint` (the path of the checkpoint that encoded them), `codebook_checksum`
///   (FNV-1a of the codebook's float bits, so decoding with another model is refused) and
///   `weights` (`trained` or `ema`: which of the checkpoint's weights encoded them, so `decode`
///   uses the same; absent in older files, which are `trained`).
///
/// The decoder's weights and the codebook are NOT in the file: they are the shared model, named by
/// `checkpoint`. The compressed size is the packed codes alone.
public struct CodeFile: Equatable, Sendable {
    public var count: Int
    public var latentHeight: Int
    public var latentWidth: Int
    public var codebookSize: Int
    public var height: Int
    public var width: Int
    public var channels: Int
    public var checkpoint: String
    public var codebookChecksum: UInt64
    /// Which of the checkpoint's weights encoded the codes (`decode` uses the same).
    public var weights: CheckpointWeights
    /// The packed indices.
    public var packed: [UInt8]

    public init(count: Int, latentHeight: Int, latentWidth: Int, codebookSize: Int, height: Int, width: Int,
                channels: Int, checkpoint: String, codebookChecksum: UInt64, weights: CheckpointWeights = .trained,
                packed: [UInt8]) {
        self.count = count
        self.latentHeight = latentHeight
        self.latentWidth = latentWidth
        self.codebookSize = codebookSize
        self.height = height
        self.width = width
        self.channels = channels
        self.checkpoint = checkpoint
        self.codebookChecksum = codebookChecksum
        self.weights = weights
        self.packed = packed
    }

    public var bitsPerCode: Int { (try? CodePacking.bitsPerCode(codes: codebookSize)) ?? 0 }
    public var indexCount: Int { count * latentHeight * latentWidth }
    /// Bits of the packed codes per image pixel (`H * W` pixels per image, all channels together).
    public var bitsPerPixel: Double {
        Double(packed.count * 8) / Double(count * height * width)
    }

    public func write(path: String) throws {
        guard packed.count == (try CodePacking.byteCount(count: indexCount, codes: codebookSize)) else {
            throw DataError("\(path): \(packed.count) packed bytes do not hold \(indexCount) codes of \(bitsPerCode) bits")
        }
        try OutputFile.write(path: path) { file in
            try packed.withUnsafeBufferPointer {
                try file.writeBytes("codes", shape: [max(packed.count, 1)], rowsPerChunk: 1 << 20, from: $0.baseAddress!)
            }
            try file.setAttribute("format", string: "vqvae-codes")
            try file.setAttribute("format_version", int64: 1)
            for (name, value) in [("count", count), ("latent_height", latentHeight), ("latent_width", latentWidth),
                                  ("codebook_size", codebookSize), ("bits_per_code", bitsPerCode), ("height", height),
                                  ("width", width), ("channels", channels)] {
                try file.setAttribute(name, int64: Int64(value))
            }
            try file.setAttribute("checkpoint", string: checkpoint)
            try file.setAttribute("codebook_checksum", string: String(codebookChecksum, radix: 16))
            try file.setAttribute("weights", string: weights.rawValue)
        }
    }

    /// Reads and validates a code file: every size is checked before anything is allocated.
    public static func read(path: String) throws -> CodeFile {
        try HDF5Lock.run {
            let file = try HDF5File.open(path)
            guard file.hasAttribute("format"), try file.stringAttribute("format") == "vqvae-codes" else {
                throw DataError("\(path): not a code file written by `vqvae encode` (no format attribute \"vqvae-codes\")")
            }
            let version = try file.int64Attribute("format_version")
            guard version == 1 else { throw DataError("\(path): code file version \(version) is not supported (1 is)") }
            func size(_ name: String, _ range: ClosedRange<Int64>) throws -> Int {
                let value = try file.int64Attribute(name)
                guard range.contains(value) else { throw DataError("\(path): attribute \(name) = \(value) is out of range \(range)") }
                return Int(value)
            }
            let count = try size("count", 1...(1 << 40))
            let latentHeight = try size("latent_height", 1...(1 << 20)), latentWidth = try size("latent_width", 1...(1 << 20))
            let codebookSize = try size("codebook_size", 1...(1 << 24))
            let bits = try size("bits_per_code", 1...24)
            guard bits == (try CodePacking.bitsPerCode(codes: codebookSize)) else {
                throw DataError("\(path): bits_per_code \(bits) does not match codebook_size \(codebookSize)")
            }
            let height = try size("height", 1...(1 << 20)), width = try size("width", 1...(1 << 20))
            let channels = try size("channels", 1...4)
            let (indices, overflow) = count.multipliedReportingOverflow(by: latentHeight * latentWidth)
            guard !overflow, indices <= 1 << 40 else { throw DataError("\(path): \(count) images of \(latentHeight)x\(latentWidth) codes is too many") }
            let expected = try CodePacking.byteCount(count: indices, codes: codebookSize)
            // Unpacked, the codes take 4 bytes each; decoded, each image H*W*C floats.
            let needed = Double(indices) * 4 + Double(expected) + Double(count) * Double(height * width * channels) * 4
            guard needed <= Double(physicalMemoryBytes) / 2 else {
                throw DataError("\(path): \(count) images of \(height)x\(width)x\(channels) need about \(describeBytes(needed)) to decode, more than half of this machine's memory")
            }
            let info = try file.info("codes")
            guard info.elementType == .uint8, info.shape == [max(expected, 1)] else {
                throw DataError("\(path): /codes is \(info.elementType.rawValue) \(info.shape), expected uint8 [\(expected)]")
            }
            var packed = [UInt8](repeating: 0, count: max(expected, 1))
            let dataset = try file.openDataset("codes")
            defer { H5Dclose(dataset) }
            try packed.withUnsafeMutableBytes {
                try file.readRows(dataset, name: "codes", rank: 1, start: 0, count: max(expected, 1), rowShape: [],
                                  memoryType: CHDF5_T_NATIVE_UINT8(), into: $0.baseAddress!)
            }
            let checksumText = try file.stringAttribute("codebook_checksum")
            guard let checksum = UInt64(checksumText, radix: 16) else {
                throw DataError("\(path): codebook_checksum '\(checksumText)' is not a hexadecimal number")
            }
            var weights = CheckpointWeights.trained
            if file.hasAttribute("weights") {
                let name = try file.stringAttribute("weights")
                guard let known = CheckpointWeights(rawValue: name) else {
                    throw DataError("\(path): weights '\(name)' is neither 'trained' nor 'ema'")
                }
                weights = known
            }
            return CodeFile(count: count, latentHeight: latentHeight, latentWidth: latentWidth, codebookSize: codebookSize,
                            height: height, width: width, channels: channels, checkpoint: try file.stringAttribute("checkpoint"),
                            codebookChecksum: checksum, weights: weights, packed: Array(packed.prefix(expected)))
        }
    }
}
