import Foundation
import Model

/// A double-precision VQ-VAE written from spec/model.md with the naive ops, reading its weights
/// from a `VQVAE`'s parameter store through `exportToTorch` (so it works in PyTorch's layouts).
///
/// Besides the plain forward pass it evaluates the straight-through SURROGATE loss whose true
/// gradient is what the model's backward pass computes: with an `Anchor` `(z0, q0, k0)` taken at the
/// base point, the decoder reads `z + sg(q0 - z0)`, the commitment term is `beta * mean((z - sg(q0))^2)`
/// and, with `--codebook grad`, the codebook term is `mean((sg(z0) - E[k0])^2)`. At the base point it
/// equals the true loss; its derivative with respect to every parameter is the straight-through one.
public struct ReferenceVQVAE {
    public let configuration: ModelConfiguration
    /// Every tensor by its checkpoint name, in PyTorch's layout; the codebook as `quantizer/codebook`
    /// for both kinds.
    public var tensors: [String: [Double]]
    /// Residual VQ: the codebooks each latent vector uses (its first ones; nil: all). A vector
    /// skips the others: `q_l = 0`, code -1, no commitment or gradient share.
    public var activeLevels: [Int]?

    public struct Anchor {
        public var latent: [Double]
        public var quantized: [Double]
        public var indices: [Int]
        public init(latent: [Double], quantized: [Double], indices: [Int]) {
            self.latent = latent; self.quantized = quantized; self.indices = indices
        }
    }

    public struct Output {
        public var total: Double
        public var reconstructionLoss: Double
        /// `mean((z - q)^2)` (with an anchor: `mean((z - q0)^2)`).
        public var commitment: Double
        public var latent: [Double]
        public var quantized: [Double]
        /// The nearest codes of `latent` (ties: the smallest index), whatever the anchor says.
        public var indices: [Int]
        /// `min_{k != best} d_k - d_best` over all vectors: how far the assignment is from changing.
        public var smallestMargin: Double
        public var reconstruction: [Double]
        public var anchor: Anchor { Anchor(latent: latent, quantized: quantized, indices: indices) }
    }

    public init(model: VQVAE) {
        configuration = model.configuration
        var tensors: [String: [Double]] = [:]
        for slot in model.parameters.slots {
            tensors[slot.name] = torchTensor(slot, in: model.parameters.values)
        }
        if let quantizer = model.quantizer, quantizer.kind == .ema {
            let c = model.configuration
            for level in 0..<quantizer.levels {
                tensors[level == 0 ? "quantizer/codebook" : "quantizer/level\(level)/codebook"] =
                    doubles(quantizer.codebook(level: level, parameters: model.parameters), count: c.codes * c.quantizerDimension)
            }
        }
        self.tensors = tensors
    }

    private func conv(_ name: String, _ x: Tensor4, _ out: Int, _ window: Window) -> Tensor4 {
        naiveConv2d(x, weight: tensors["\(name)/weight"]!, bias: tensors["\(name)/bias"]!, outputChannels: out, window: window)
    }

    private func block(_ name: String, _ x: Tensor4) -> Tensor4 {
        let c = configuration
        return NaiveResidualBlock(weight3: tensors["\(name)/conv3x3/weight"]!, bias3: tensors["\(name)/conv3x3/bias"]!,
                                  weight1: tensors["\(name)/conv1x1/weight"]!, bias1: tensors["\(name)/conv1x1/bias"]!,
                                  channels: c.hidden, residualChannels: c.residualHidden).forward(x)
    }

    /// With `targets` the reconstruction loss compares with them instead of `images`. With U-Net
    /// skips, image `n`'s decoder adds `skipWeights[n]` (default 1 each) times the encoder's
    /// activation of each resolution before every transposed convolution. With the mask channel,
    /// `masks` `[N, H, W]` (1 = missing; nil: none) is read beside the image, whose missing pixels
    /// are blanked (or filled by `naiveSmoothFill`), and the output keeps the known pixels of `images`.
    public func forward(images: [Double], masks: [Double]? = nil, targets: [Double]? = nil, batch: Int, anchor: Anchor? = nil,
                        skipWeights: [Double]? = nil) -> Output {
        let c = configuration
        let stride2 = Window(kernel: 4, stride: 2, padding: 1)
        let same3 = Window(kernel: 3, stride: 1, padding: 1)
        let original = Tensor4(batch: batch, height: c.height, width: c.width, channels: c.channels, values: images)
        let m = masks ?? [Double](repeating: 0, count: batch * c.height * c.width)
        var image = original
        var x = image
        if c.maskChannel {
            // [x (1 - m) | m]; the residual path adds to the blanked image.
            // With --hole-fill smooth or plate the missing pixels hold the fill instead of 0.
            x = Tensor4(batch: batch, height: c.height, width: c.width, channels: c.channels + 1)
            let perImage = c.height * c.width * c.channels, pixels = c.height * c.width
            for n in 0..<batch {
                let filled = naiveSmoothFill(Array(images[(n * perImage)..<((n + 1) * perImage)]), missing: Array(m[(n * pixels)..<((n + 1) * pixels)]),
                                             height: c.height, width: c.width, channels: c.channels,
                                             plateSweeps: c.holeFill == .plate ? SmoothFill.platePerLevel : 0)
                for row in 0..<c.height { for col in 0..<c.width {
                    let w = m[(n * c.height + row) * c.width + col]
                    for k in 0..<c.channels {
                        image[n, row, col, k] = c.holeFill != .zero ? filled[(row * c.width + col) * c.channels + k] : original[n, row, col, k] * (1 - w)
                        x[n, row, col, k] = image[n, row, col, k]
                    }
                    x[n, row, col, c.channels] = w
                } }
            }
        }
        // Encoder.
        var encoded: [Tensor4] = []
        for i in 0..<c.downsamplings {
            x = naiveReLU(conv("encoder/down\(i)", x, c.hidden >> (c.downsamplings - 1 - i), stride2))
            encoded.append(x)
        }
        x = conv("encoder/conv", x, c.hidden, same3)
        for j in 0..<c.residualBlocks { x = block("encoder/res\(j)", x) }
        x = naiveReLU(x)
        var z = conv("pre_quant", x, c.codeDimension, Window(kernel: 1))
        if c.hasCodebookProjection {
            // --codebook-dim: the quantizer works on v = project_in(z) (called z below).
            z = conv("quantizer/project_in", z, c.quantizerDimension, Window(kernel: 1))
        }
        if c.quantizer == .cosine {
            // Cosine codes: the quantizer (and the commitment term) sees z / max(|z|, 1e-6).
            let d = c.quantizerDimension
            for p in 0..<(z.count / d) {
                let norm = max((0..<d).reduce(0.0) { $0 + z.values[p * d + $1] * z.values[p * d + $1] }.squareRoot(), 1e-6)
                for j in 0..<d { z.values[p * d + j] /= norm }
            }
        }
        if c.quantizer == .fsq { return finiteScalar(z: z, image: image, original: original, masks: m, targets: targets,
                                                     batch: batch, anchor: anchor, skipWeights: skipWeights, encoded: encoded) }
        // Quantizer: brute force nearest code, ties to the smallest index; residual VQ level by
        // level on what the levels before left (`r_{l+1} = r_l - q_l`, `q = sum_l q_l`).
        // `quantized` holds the levels' rows level-major `[L, P, D]`, `indices` `[P, L]`.
        let d = c.quantizerDimension, k = c.codes, levels = c.codebooks
        let positions = z.count / d
        var indices = [Int](repeating: 0, count: positions * levels)
        var q = [Double](repeating: 0, count: z.count * levels)
        var margin = Double.infinity
        var residual = z.values
        var residuals: [[Double]] = []
        for level in 0..<levels {
            let codebook = tensors[level == 0 ? "quantizer/codebook" : "quantizer/level\(level)/codebook"]!
            residuals.append(residual)
            for p in 0..<positions {
                if let activeLevels, level >= activeLevels[p] {
                    indices[p * levels + level] = -1
                    continue
                }
                var distances = [Double](repeating: 0, count: k)
                for code in 0..<k {
                    var s = 0.0
                    for j in 0..<d { let diff = residual[p * d + j] - codebook[code * d + j]; s += diff * diff }
                    distances[code] = s
                }
                var best = 0
                for code in 1..<k where distances[code] < distances[best] { best = code }
                for code in 0..<k where code != best { margin = min(margin, distances[code] - distances[best]) }
                indices[p * levels + level] = best
                for j in 0..<d { q[level * z.count + p * d + j] = codebook[best * d + j] }
            }
            for i in 0..<z.count { residual[i] -= q[level * z.count + i] }
        }
        var decoderInput = Tensor4(batch: batch, height: z.height, width: z.width, channels: d)
        var commitment = 0.0, codebookTerm = 0.0
        for level in 0..<levels {
            let codebook = tensors[level == 0 ? "quantizer/codebook" : "quantizer/level\(level)/codebook"]!
            let base = level * z.count
            if let anchor {
                // r_l = z - sum_{j<l} q0_j (the anchor's rows, held constant); the decoder reads
                // r_l + sg(q0_l - r0_l), or r_l rotated and scaled onto q0_l by the anchor's
                // (constant) rotation with the rotation trick.
                var r = z.values, r0 = anchor.latent
                for j in 0..<level { for i in 0..<z.count { r[i] -= anchor.quantized[j * z.count + i]; r0[i] -= anchor.quantized[j * z.count + i] } }
                func active(_ p: Int) -> Bool { activeLevels.map { level < $0[p] } ?? true }
                for i in 0..<z.count where active(i / d) {
                    let diff = r[i] - anchor.quantized[base + i]
                    commitment += diff * diff / Double(z.count)
                }
                for p in 0..<positions where active(p) {
                    for j in 0..<d {
                        let diff = r0[p * d + j] - codebook[anchor.indices[p * levels + level] * d + j]
                        codebookTerm += diff * diff / Double(z.count)
                    }
                }
                for p in 0..<positions where active(p) {
                    let z0 = Array(r0[(p * d)..<(p * d + d)]), q0 = Array(anchor.quantized[(base + p * d)..<(base + p * d + d)])
                    let v = Array(r[(p * d)..<(p * d + d)])
                    if c.rotationTrick {
                        let zNorm = max(z0.reduce(0) { $0 + $1 * $1 }.squareRoot(), 1e-6)
                        let qNorm = max(q0.reduce(0) { $0 + $1 * $1 }.squareRoot(), 1e-6)
                        let u = z0.map { $0 / zNorm }, rr = q0.map { $0 / qNorm }
                        let sum = zip(u, rr).map { $0 + $1 }
                        let sumNorm = max(sum.reduce(0) { $0 + $1 * $1 }.squareRoot(), 1e-6)
                        let w = sum.map { $0 / sumNorm }
                        let vw = zip(v, w).reduce(0) { $0 + $1.0 * $1.1 }, vu = zip(v, u).reduce(0) { $0 + $1.0 * $1.1 }
                        for j in 0..<d { decoderInput.values[p * d + j] += qNorm / zNorm * (v[j] - 2 * vw * w[j] + 2 * vu * rr[j]) }
                    } else {
                        for j in 0..<d { decoderInput.values[p * d + j] += v[j] + (q0[j] - z0[j]) }
                    }
                }
            } else {
                for i in 0..<z.count where activeLevels.map({ level < $0[i / d] }) ?? true {
                    decoderInput.values[i] += q[base + i]
                    let diff = residuals[level][i] - q[base + i]
                    commitment += diff * diff / Double(z.count)
                }
            }
        }
        if anchor == nil { codebookTerm = commitment }
        if c.hasCodebookProjection {
            decoderInput = conv("quantizer/project_out", decoderInput, c.codeDimension, Window(kernel: 1))
        }
        let (y, loss, fit) = decode(decoderInput, image: image, original: original, masks: m, targets: targets, batch: batch,
                               skipWeights: skipWeights, encoded: encoded)
        var total = fit + c.commitment * commitment
        if c.codebook == .grad { total += codebookTerm }
        return Output(total: total, reconstructionLoss: loss, commitment: commitment, latent: z.values,
                      quantized: q, indices: indices, smallestMargin: margin, reconstruction: y)
    }

    /// FSQ in double precision: `b = tanh(z + s) h - o`, `q = round(b) / w` per channel (see
    /// `FiniteScalarQuantizer`); with an anchor the decoder reads `b(z) / w + (q0 - b(z0) / w)`,
    /// whose derivative is the straight-through one. `smallestMargin` is the least distance of
    /// any `b` from a rounding boundary.
    private func finiteScalar(z: Tensor4, image: Tensor4, original: Tensor4, masks: [Double], targets: [Double]?, batch: Int,
                              anchor: Anchor?, skipWeights: [Double]?, encoded: [Tensor4]) -> Output {
        let c = configuration, d = c.codeDimension
        let levels = c.levels.map(Double.init)
        let half = levels.map { ($0 - 1) * 1.001 / 2 }, offset = c.levels.map { $0 % 2 == 0 ? 0.5 : 0.0 }
        let shift = zip(offset, half).map { atanh($0 / $1) }, width = c.levels.map { Double($0 / 2) }
        func bound(_ value: Double, _ j: Int) -> Double { tanh(value + shift[j]) * half[j] - offset[j] }
        var q = [Double](repeating: 0, count: z.count), indices = [Int](repeating: 0, count: z.count / d)
        var decoderInput = Tensor4(batch: batch, height: z.height, width: z.width, channels: d)
        var margin = Double.infinity
        for p in 0..<(z.count / d) {
            var index = 0, basis = 1
            for j in 0..<d {
                let b = bound(z.values[p * d + j], j)
                let level = b.rounded(.toNearestOrEven)
                margin = min(margin, abs(abs(b - b.rounded(.down)) - 0.5))
                q[p * d + j] = level / width[j]
                index += Int(level + width[j]) * basis
                basis *= c.levels[j]
                decoderInput.values[p * d + j] = anchor.map { b / width[j] + ($0.quantized[p * d + j] - bound($0.latent[p * d + j], j) / width[j]) }
                    ?? q[p * d + j]
            }
            indices[p] = index
        }
        let (y, loss, fit) = decode(decoderInput, image: image, original: original, masks: masks, targets: targets, batch: batch,
                               skipWeights: skipWeights, encoded: encoded)
        return Output(total: fit, reconstructionLoss: loss, commitment: 0, latent: z.values, quantized: q, indices: indices,
                      smallestMargin: margin, reconstruction: y)
    }

    /// The decoder (and the residual, detail and mask paths) from the decoder's input; returns
    /// `x_hat`, the mean squared error and the reconstruction term the loss trains (the same, or
    /// with `--loss charbonnier` `mean(sqrt(d^2 + eps^2))`).
    private func decode(_ decoderInput: Tensor4, image: Tensor4, original: Tensor4, masks m: [Double], targets: [Double]?,
                        batch: Int, skipWeights: [Double]?, encoded: [Tensor4]) -> ([Double], Double, Double) {
        let c = configuration
        let stride2 = Window(kernel: 4, stride: 2, padding: 1)
        let same3 = Window(kernel: 3, stride: 1, padding: 1)
        // Decoder.
        var y = conv("decoder/conv", decoderInput, c.hidden, same3)
        for j in 0..<c.residualBlocks { y = block("decoder/res\(j)", y) }
        y = naiveReLU(y)
        for i in 0..<c.downsamplings {
            if c.skips {
                let skip = encoded[c.downsamplings - 1 - i], perImage = skip.count / batch
                for j in y.values.indices { y.values[j] += (skipWeights?[j / perImage] ?? 1) * skip.values[j] }
            }
            let last = i == c.downsamplings - 1
            let out = last ? c.channels : c.hidden >> (i + 1)
            y = c.upsampling == .resize
                ? conv("decoder/up\(i)", naiveUpsampleNearest2x(y), out, same3)
                : naiveConvTranspose2d(y, weight: tensors["decoder/up\(i)/weight"]!, bias: tensors["decoder/up\(i)/bias"]!,
                                       outputChannels: out, window: stride2)
            if !last { y = naiveReLU(y) }
        }
        if c.residual {
            // x_hat = x + dec (+ detail([x | dec]) through 3x3 layers with ReLU between them).
            var output = naiveAdd(image, y)
            if c.detailLayers > 0 {
                var h = Tensor4(batch: batch, height: c.height, width: c.width, channels: 2 * c.channels)
                for n in 0..<batch { for row in 0..<c.height { for col in 0..<c.width { for k in 0..<c.channels {
                    h[n, row, col, k] = image[n, row, col, k]
                    h[n, row, col, c.channels + k] = y[n, row, col, k]
                } } } }
                for i in 0..<c.detailLayers {
                    h = conv("detail/conv\(i)", h, i == c.detailLayers - 1 ? c.channels : c.detailChannels, same3)
                    if i < c.detailLayers - 1 { h = naiveReLU(h) }
                }
                output = naiveAdd(output, h)
            }
            y = output
        }
        if c.maskChannel {
            for n in 0..<batch { for row in 0..<c.height { for col in 0..<c.width {
                let w = m[(n * c.height + row) * c.width + col]
                for k in 0..<c.channels { y[n, row, col, k] = w * y[n, row, col, k] + (1 - w) * original[n, row, col, k] }
            } } }
        }
        let target = targets ?? original.values
        var squared = 0.0
        for i in image.values.indices { let diff = y.values[i] - target[i]; squared += diff * diff }
        // Each image's mean of its per-element terms, times its weight (1, or with
        // `--loss-weight damage` 0.1 / max(RMS of input - target, 0.01)), averaged over images.
        let perImage = image.count / batch
        let epsilon = ReconstructionLoss.charbonnierEpsilon
        var fit = 0.0
        for n in 0..<batch {
            var term = 0.0, damage = 0.0
            for i in (n * perImage)..<((n + 1) * perImage) {
                let diff = y.values[i] - target[i]
                term += c.loss == .charbonnier ? (diff * diff + epsilon * epsilon).squareRoot() : diff * diff
                damage += (original.values[i] - target[i]) * (original.values[i] - target[i])
            }
            let mean = term / Double(perImage)
            switch c.lossWeighting {
            case .uniform: fit += mean
            case .damage: fit += 0.1 / max((damage / Double(perImage)).squareRoot(), 0.01) * mean
            // `--loss-weight log`: 1e-4 log(1 + mean / 1e-4).
            case .log: fit += 1e-4 * Foundation.log(1 + mean / 1e-4)
            }
        }
        fit /= Double(batch)
        return (y.values, squared / Double(image.count), fit)
    }
}
