#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Physical memory of this machine in bytes.
public var physicalMemoryBytes: Int {
    Int(sysconf(Int32(_SC_PHYS_PAGES))) * Int(sysconf(Int32(_SC_PAGESIZE)))
}

/// A size in bytes for a message, rounded up: "3 GB", "220 GB", "4 TB", "12 MB"; any size, however
/// absurd, prints without trapping.
public func describeBytes(_ bytes: Double) -> String {
    bytes >= 1e15 ? "more than 1000 TB" : bytes >= 1e12 ? "\(Int((bytes / 1e12).rounded(.up))) TB"
        : bytes >= 1e9 ? "\(Int((bytes / 1e9).rounded(.up))) GB" : "\(Int((max(bytes, 0) / 1e6).rounded(.up))) MB"
}

extension ModelConfiguration {
    /// Largest image side and channel width accepted anywhere: beyond these, index arithmetic
    /// could overflow before the memory check below has a chance to refuse the model.
    static let largestSide = 1 << 16
    static let largestWidth = 1 << 20

    /// Parameters of the network and the codebook's state, counted in floating point so that absurd settings (from a
    /// damaged or hostile checkpoint) cannot overflow: convolution weights and biases, the
    /// codebook, and for the EMA codebook its `N` and `M` statistics.
    public var parameterCountEstimate: Double {
        let hidden = Double(self.hidden), residual = Double(residualHidden), d = Double(codeDimension)
        var count = 0.0
        func conv(_ input: Double, _ output: Double, area: Double) { count += input * output * area + output }
        for i in 0..<downsamplings {
            conv(i == 0 ? Double(inputChannels) : Double(downChannels(i - 1)), Double(downChannels(i)), area: 16)
        }
        conv(hidden, hidden, area: 9)
        for _ in 0..<(2 * residualBlocks) {
            conv(hidden, residual, area: 9)
            conv(residual, hidden, area: 1)
        }
        conv(hidden, Double(latentChannels), area: 1)
        let qd = Double(quantizerDimension)
        if hasCodebookProjection { conv(d, qd, area: 1); conv(qd, d, area: 1) }
        if hasCodebook { count += Double(max(codebooks, 1)) * Double(codes) * (2 * qd + 1) }
        conv(d, hidden, area: 9)
        for i in 0..<downsamplings {
            conv(Double(hidden) / Double(1 << i), i == downsamplings - 1 ? Double(channels) : hidden / Double(1 << (i + 1)),
                 area: upsampling == .resize ? 9 : 16)
        }
        for i in 0..<max(detailLayers, 0) {
            conv(i == 0 ? 2 * Double(channels) : Double(detailChannels), i == detailLayers - 1 ? Double(channels) : Double(detailChannels), area: 9)
        }
        return count
    }

    /// Bytes a model with a batch of `maxBatch` per rank needs while training, over-estimated:
    /// parameters with their gradients, Adam moments and reduction buffers, every activation and
    /// saved tensor, the two gradient buffers and the largest workspace (an im2col matrix,
    /// Winograd's tiles or the quantizer's `[positions, K]` distances). Counted in floating point (see above).
    public func trainingBytesEstimate(maxBatch: Int) -> Double {
        let n = Double(maxBatch)
        let hidden = Double(self.hidden), residual = Double(residualHidden)
        var elements = 6 * parameterCountEstimate
        var largest = n * Double(height) * Double(width) * Double(channels)
        var workspace = 0.0
        var (h, w) = (Double(height), Double(width))
        var input = Double(inputChannels)
        for i in 0..<downsamplings {
            let output = Double(downChannels(i))
            let (oh, ow) = (h / 2, w / 2)
            // The encoder's output here, the decoder's output at the same size, and their gradients.
            let activation = n * oh * ow * max(output, input)
            elements += 2 * activation
            // U-Net skips: the sum up{i} reads at this size, and its gradient's encoder share.
            if skips { elements += 2 * n * oh * ow * output }
            largest = max(largest, activation)
            workspace = max(workspace, n * oh * ow * input * 16, n * oh * ow * output * 16)
            // Or the strided Winograd's tiles and kernel, for this level's convolution and the
            // decoder's transposed convolution at the same size.
            let levelWidest = max(input, output)
            let tiles = n * (oh / 2).rounded(.up) * (ow / 2).rounded(.up)
            workspace = max(workspace, 45 * tiles * levelWidest + 36 * levelWidest * levelWidest + levelWidest)
            (h, w, input) = (oh, ow, output)
        }
        let positions = n * h * w
        let widest = max(hidden, Double(latentChannels), residual, Double(quantizerDimension))
        // Two residual stacks (input, per-block outputs and saved tensors, output), the latent,
        // the quantized latent, the VAE's noise and the scratch buffer.
        elements += 2 * positions * (hidden * Double(2 + 2 * residualBlocks) + residual * Double(residualBlocks))
        elements += positions * (Double(latentChannels) + 2 * Double(codeDimension) + residual + 1)
        // Cosine codes: the normalised latent.
        if hasCodebook && quantizer == .cosine { elements += positions * Double(quantizerDimension) }
        // A codebook projection: the projected vectors and the chosen rows in the codebook's space.
        if hasCodebookProjection { elements += 2 * positions * Double(quantizerDimension) }
        // Residual VQ: each level's input, output and codes, one level's gradient, the codes.
        // (codes, skips and the levels in use counted as whole floats each, an over-estimate).
        if hasCodebook && codebooks > 1 { elements += positions * (Double(codebooks) * (2 * Double(quantizerDimension) + 3) + Double(quantizerDimension) + 1) }
        largest = max(largest, positions * widest)
        // The 3x3 convolutions: an im2col matrix, or Winograd's two tile matrices and kernel.
        let tiles = n * (h / 4).rounded(.up) * (w / 4).rounded(.up)
        workspace = max(workspace, positions * widest * 9, 72 * tiles * widest + 36 * widest * widest + widest)
        if hasCodebook { workspace = max(workspace, positions * Double(codes)) }
        if self.residual {
            // The output x + dec; with detail layers their input [x | dec], activations, the kept
            // output gradient, and the Winograd workspace at full resolution.
            let pixels = n * Double(height) * Double(width), c = Double(channels)
            elements += pixels * c
            if detailLayers > 0 {
                let widestDetail = max(Double(detailChannels), 2 * c)
                elements += pixels * (2 * c + Double(detailLayers - 1) * Double(detailChannels) + 2 * c)
                largest = max(largest, pixels * widestDetail)
                let fullTiles = n * (Double(height) / 4).rounded(.up) * (Double(width) / 4).rounded(.up)
                workspace = max(workspace, 72 * fullTiles * widestDetail + 36 * widestDetail * widestDetail + widestDetail)
            }
        }
        // The mask channel: the masks, the blanked image and the encoder's input [x | m].
        if maskChannel { elements += n * Double(height) * Double(width) * (2 * Double(channels) + 2) }
        // A smooth or plate hole fill: its pyramid and sweep buffers, kept for one image at a time.
        if maskChannel && holeFill != .zero { elements += SmoothFill.floatsBound(height: height, width: width, channels: channels) }
        // Resize upsampling: the tied 4x4 kernel of the widest decoder layer and its gradient.
        if upsampling == .resize { workspace += 2 * 16 * hidden * max(hidden / 2, Double(channels)) }
        elements += 2 * largest + workspace
        // Input batches: the one in use and the prefetched ones.
        elements += 3 * n * Double(height) * Double(width) * Double(channels)
        return 4 * elements
    }

    /// Refuses, before anything is allocated, a model that cannot fit in this machine's memory
    /// with a batch of `maxBatch` per rank, naming what it would need.
    public func checkFitsInMemory(maxBatch: Int, memory: Int = physicalMemoryBytes) throws {
        let bytes = trainingBytesEstimate(maxBatch: maxBatch)
        guard bytes.isFinite, bytes <= 0.8 * Double(memory) else {
            throw ModelError("this model (\(Self.describe(count: parameterCountEstimate)) parameters: --hidden \(hidden) --res-hidden \(residualHidden) --code-dim \(codeDimension) --codes \(codes), \(height)x\(width)x\(channels) images) with a batch of \(maxBatch) needs about \(describeBytes(bytes)) to train, more than the 80% of this machine's \(describeBytes(Double(memory))) it may use")
        }
    }

    static func describe(count: Double) -> String {
        count >= 1e12 ? "more than 1000 billion" : count >= 1e9 ? "\(Int((count / 1e9).rounded())) billion" : count >= 1e6 ? "\(Int((count / 1e6).rounded())) million" : "\(Int(count))"
    }
}
