import Foundation

/// The settings of a `CodePrior`: the code grids it models and its width.
public struct PriorConfiguration: Codable, Equatable, Sendable {
    /// Codes per codebook, `K`.
    public var codes: Int
    /// Codebooks per latent position, `L` (residual VQ; 1 for the plain quantizer).
    public var levels: Int
    /// Channels `C` of the hidden activations.
    public var channels = 96

    public init(codes: Int, levels: Int, channels: Int = 96) {
        self.codes = codes
        self.levels = levels
        self.channels = channels
    }

    /// The coding phases of a grid (`CodeOrder`).
    public static let phases = 4
    /// One output head per phase and level.
    public var heads: Int { Self.phases * levels }

    public func validate() throws {
        guard (2...4096).contains(codes) else { throw ModelError("the prior models 2...4096 codes per codebook (got \(codes))") }
        guard (1...16).contains(levels) else { throw ModelError("the prior models 1...16 codebooks (got \(levels))") }
        guard channels >= 16, channels <= 1024, channels % 16 == 0 else {
            throw ModelError("--channels must be a multiple of 16 in 16...1024 (got \(channels))")
        }
    }
}

/// The order in which a grid of codes is coded: four phases over the positions' parities (phase 0
/// the positions with even row and column, 1 odd row and odd column, 2 even row and odd column,
/// 3 odd row and even column), and within a phase the codebooks (levels) in order. A position's
/// codes are predicted from every level of the positions of earlier phases (its neighbours on all
/// sides from phase 1 on) and from its own earlier levels; a decoder needs one pass of the prior's
/// trunk per phase, however large the grid.
public enum CodeOrder {
    @inline(__always)
    public static func phase(y: Int, x: Int) -> Int {
        let a = y & 1, b = x & 1
        return a == b ? a : 2 + a
    }

    /// The positions `y * width + x` of `phase`, in raster order.
    public static func positions(phase: Int, height: Int, width: Int) -> [Int] {
        var result: [Int] = []
        result.reserveCapacity((height + 1) / 2 * ((width + 1) / 2))
        for y in 0..<height {
            for x in 0..<width where Self.phase(y: y, x: x) == phase { result.append(y * width + x) }
        }
        return result
    }
}

/// A learned prior over grids of VQ code indices: the probability of each code given the codes
/// coded before it in `CodeOrder`, for entropy coding (`vqvae compress`) and sampling.
///
/// Architecture, for an image drawn at phase `p` with its first `Q` levels in use:
/// - embedding: `h0 = relu(b + sum_l E_l[c_l])` at every position, where `c_l` is the position's
///   level-`l` code if it is known (the position's phase is before `p` and `l < Q`) and the extra
///   row `K` ("unknown") otherwise; `E` `[L, K + 1, C]`;
/// - trunk: two 3x3 convolutions `C -> C` with ReLU, `h2 = relu(conv1(relu(conv0(h0))))`;
/// - heads, at the positions of phase `p`, for each level `l < Q`:
///   `u = relu(h2 + a_{p,l} + sum_{l' < l} G_{l'}[c_{l'}])` (the position's own earlier codes,
///   `G` `[L - 1, K, C]`), logits `W_{p,l} u + d_{p,l}` over the `K` codes (`W` `[4L, K, C]`).
///
/// Training minimises the cross-entropy of the true codes: each image draws its phase and its `Q`
/// (from `1...L`, as the VQ-VAE's quantizer dropout does) from a stream keyed by its place in the
/// global batch, and its loss is the mean over its coded symbols; the batch's is the mean over
/// images. Explicit forward and backward passes, like every layer here.
public final class CodePrior {
    public let configuration: PriorConfiguration
    public let parameters = ParameterStore()
    public let maxBatch: Int
    /// The code grid of training batches.
    public let height: Int
    public let width: Int

    let embed: ParameterSlot        // [L * (K + 1), C]
    let embedBias: ParameterSlot    // [C]
    let convs: [Conv2d]             // 3x3, C -> C
    let same: ParameterSlot?        // [(L - 1) * K, C], L > 1
    let headBias: ParameterSlot     // [4L, C]
    let headWeight: ParameterSlot   // [4L, K, C]
    let headOutput: ParameterSlot   // [4L, K]

    let h0: FloatBuffer, h1: FloatBuffer, h2: FloatBuffer
    let d0: FloatBuffer, d1: FloatBuffer, d2: FloatBuffer
    let rows: FloatBuffer           // u, [R, C]
    let rowGradient: FloatBuffer    // dL/du, [R, C]
    let logits: FloatBuffer         // [R, K]; after forward, dL/dlogits
    let workspace: FloatBuffer
    let phasePositions: [[Int]]

    // The last forward pass.
    var lastCodes: UnsafePointer<Int32>?
    var lastBatch = 0
    var lastDraws: [Draw] = []
    var rowImage: [Int32] = [], rowPosition: [Int32] = []
    var headStart: [Int] = []

    /// Bits per code of the last forward pass, by level (mean over the batch's coded symbols of
    /// that level), and how many symbols each mean covers.
    public private(set) var lastLevelBits: [Double] = []
    public private(set) var lastLevelCounts: [Int] = []

    /// What one training image is coded as: the phase whose codes it predicts, and how many
    /// levels are in use.
    public struct Draw: Equatable, Sendable {
        public var phase: Int
        public var levels: Int
        public init(phase: Int, levels: Int) {
            self.phase = phase
            self.levels = levels
        }
    }

    public init(configuration: PriorConfiguration, maxBatch: Int, height: Int, width: Int) throws {
        try configuration.validate()
        guard maxBatch >= 1 else { throw ModelError("the batch per rank must be at least 1") }
        guard height >= 2, width >= 2 else { throw ModelError("the prior needs code grids of at least 2x2 (got \(height)x\(width))") }
        self.configuration = configuration
        self.maxBatch = maxBatch
        self.height = height
        self.width = width
        let (k, l, c) = (configuration.codes, configuration.levels, configuration.channels)
        embed = parameters.add(name: "embed", shape: [l * (k + 1), c], uniformBound: 1 / Float(l).squareRoot())
        embedBias = parameters.add(name: "embed_bias", shape: [c], uniformBound: 0)
        let store = parameters
        convs = (0..<2).map {
            Conv2d(name: "conv\($0)", inputChannels: c, outputChannels: c, window: Window(kernel: 3, stride: 1, padding: 1),
                   parameters: store)
        }
        same = l > 1 ? parameters.add(name: "same", shape: [(l - 1) * k, c], uniformBound: 1 / Float(l).squareRoot()) : nil
        headBias = parameters.add(name: "head_bias", shape: [configuration.heads, c], uniformBound: 0)
        let bound = 1 / Float(c).squareRoot()
        headWeight = parameters.add(name: "head/weight", shape: [configuration.heads, k, c], uniformBound: bound)
        headOutput = parameters.add(name: "head/bias", shape: [configuration.heads, k], uniformBound: bound)
        parameters.allocate()

        let positions = maxBatch * height * width
        h0 = FloatBuffer(count: positions * c)
        h1 = FloatBuffer(count: positions * c)
        h2 = FloatBuffer(count: positions * c)
        d0 = FloatBuffer(count: positions * c)
        d1 = FloatBuffer(count: positions * c)
        d2 = FloatBuffer(count: positions * c)
        phasePositions = (0..<PriorConfiguration.phases).map { CodeOrder.positions(phase: $0, height: height, width: width) }
        let largestPhase = phasePositions.map(\.count).max()!
        let maxRows = maxBatch * largestPhase * l
        rows = FloatBuffer(count: maxRows * c)
        rowGradient = FloatBuffer(count: maxRows * c)
        logits = FloatBuffer(count: maxRows * k)
        workspace = FloatBuffer(count: convs.map { $0.workspaceCount(batch: maxBatch, height: height, width: width) }.max()!)
    }

    public func initialize(seed: UInt64) { parameters.initialize(seed: seed) }

    /// Each image's phase and levels in use: image `firstImage + n` of the global batch draws them
    /// from its own stream keyed by `(seed, step, firstImage + n)`, so they do not depend on how the
    /// batch is split over ranks.
    public static func draws(key: NoiseKey, batch: Int, levels: Int) -> [Draw] {
        (0..<batch).map { n in
            var random = SplitMix64(seed: key.seed &+ SplitMix64.mix(key.step ^ 0x5052_494F_52), stream: UInt64(key.firstImage + n))
            let phase = random.below(PriorConfiguration.phases)
            return Draw(phase: phase, levels: 1 + random.below(levels))
        }
    }

    /// The loss of `batch` code grids `codes` `[N, h, w, L]`, image `n` coded as `draws[n]`: the
    /// mean over images of each image's mean cross-entropy (nats) over its coded symbols.
    /// Keeps what `backward()` needs.
    @discardableResult
    public func forward(codes: UnsafePointer<Int32>, draws: [Draw], batch: Int) -> Double {
        precondition(batch >= 1 && batch <= maxBatch && draws.count == batch, "batch \(batch) exceeds the allocated \(maxBatch)")
        let cfg = configuration
        let (k, l, c) = (cfg.codes, cfg.levels, cfg.channels)
        let grid = height * width
        let p = UnsafePointer(parameters.values.pointer)
        for index in 0..<(batch * grid * l) {
            precondition(codes[index] >= 0 && Int(codes[index]) < k, "code \(codes[index]) is outside the codebook")
        }
        lastCodes = codes
        lastBatch = batch
        lastDraws = draws

        // Embedding.
        let e = p + embed.offset, eb = p + embedBias.offset
        for q in 0..<(batch * grid) { (h0.pointer + q * c).update(from: eb, count: c) }
        forEachEmbeddingRow(codes: codes, draws: draws) { q, row in
            let out = h0.pointer + q * c, source = e + row * c
            for j in 0..<c { out[j] += source[j] }
        }
        relu(h0.pointer, h0.pointer, count: batch * grid * c)
        // Trunk.
        convs[0].forward(output: h1.pointer, input: h0.pointer, batch: batch, height: height, width: width, relu: true,
                         parameters: p, workspace: workspace.pointer)
        convs[1].forward(output: h2.pointer, input: h1.pointer, batch: batch, height: height, width: width, relu: true,
                         parameters: p, workspace: workspace.pointer)

        // Rows, grouped by head.
        rowImage.removeAll(keepingCapacity: true)
        rowPosition.removeAll(keepingCapacity: true)
        headStart = [0]
        for head in 0..<cfg.heads {
            let (phase, level) = (head / l, head % l)
            for n in 0..<batch where draws[n].phase == phase && level < draws[n].levels {
                for position in phasePositions[phase] {
                    rowImage.append(Int32(n))
                    rowPosition.append(Int32(position))
                }
            }
            headStart.append(rowImage.count)
        }
        let hb = p + headBias.offset
        for head in 0..<cfg.heads {
            let level = head % l
            for r in headStart[head]..<headStart[head + 1] {
                let q = Int(rowImage[r]) * grid + Int(rowPosition[r])
                let u = rows.pointer + r * c, t = h2.pointer + q * c, a = hb + head * c
                for j in 0..<c { u[j] = t[j] + a[j] }
                if let same {
                    for earlier in 0..<level {
                        let g = p + same.offset + (earlier * k + Int(codes[q * l + earlier])) * c
                        for j in 0..<c { u[j] += g[j] }
                    }
                }
                for j in 0..<c { u[j] = max(u[j], 0) }
            }
        }
        // Logits, cross-entropy and its gradient (kept in `logits`).
        var levelNats = [Double](repeating: 0, count: l)
        var levelCounts = [Int](repeating: 0, count: l)
        var imageNats = [Double](repeating: 0, count: batch)
        for head in 0..<cfg.heads {
            let (start, end) = (headStart[head], headStart[head + 1])
            guard end > start else { continue }
            let out = logits.pointer + start * k
            gemm(transposeA: false, transposeB: true, m: end - start, n: k, k: c, a: rows.pointer + start * c, lda: c,
                 b: p + headWeight.offset + head * k * c, ldb: c, beta: 0, c: out, ldc: k)
            addBias(out, bias: p + headOutput.offset + head * k, rows: end - start, channels: k, relu: false)
            let level = head % l
            for r in start..<end {
                let n = Int(rowImage[r]), q = n * grid + Int(rowPosition[r])
                let target = Int(codes[q * l + level])
                let z = logits.pointer + r * k
                var largest = z[0]
                for j in 1..<k { largest = max(largest, z[j]) }
                let targetLogit = z[target] - largest
                var sum: Double = 0
                for j in 0..<k {
                    let v = exp(z[j] - largest)
                    z[j] = v
                    sum += Double(v)
                }
                let nats = log(sum) - Double(targetLogit)
                levelNats[level] += nats
                levelCounts[level] += 1
                imageNats[n] += nats
                // dL/dz = (softmax - onehot) / (symbols of the image * batch)
                let symbols = Double(phasePositions[draws[n].phase].count * draws[n].levels)
                let scale = Float(1 / (symbols * Double(batch)))
                let inverse = Float(1 / sum)
                for j in 0..<k { z[j] = z[j] * inverse * scale }
                z[target] -= scale
            }
        }
        lastLevelBits = (0..<l).map { levelCounts[$0] > 0 ? levelNats[$0] / Double(levelCounts[$0]) / log(2) : .nan }
        lastLevelCounts = levelCounts
        var loss: Double = 0
        for n in 0..<batch {
            loss += imageNats[n] / Double(phasePositions[draws[n].phase].count * draws[n].levels)
        }
        return loss / Double(batch)
    }

    /// Accumulates the gradient of the last forward pass's loss into `parameters.gradients`.
    public func backward() {
        guard let codes = lastCodes else { preconditionFailure("backward before forward") }
        let cfg = configuration
        let (k, l, c) = (cfg.codes, cfg.levels, cfg.channels)
        let batch = lastBatch, grid = height * width
        let p = UnsafePointer(parameters.values.pointer), g = parameters.gradients.pointer
        d2.pointer.update(repeating: 0, count: batch * grid * c)
        for head in 0..<cfg.heads {
            let (start, end) = (headStart[head], headStart[head + 1])
            guard end > start else { continue }
            let count = end - start
            let dz = UnsafePointer(logits.pointer + start * k)
            // dW += dz^T u, dd += colsum dz, du = dz W.
            gemm(transposeA: true, transposeB: false, m: k, n: c, k: count, a: dz, lda: k, b: rows.pointer + start * c, ldb: c,
                 beta: 1, c: g + headWeight.offset + head * k * c, ldc: c)
            accumulateBiasGradient(g + headOutput.offset + head * k, dy: dz, rows: count, channels: k)
            gemm(transposeA: false, transposeB: false, m: count, n: c, k: k, a: dz, lda: k, b: p + headWeight.offset + head * k * c,
                 ldb: c, beta: 0, c: rowGradient.pointer + start * c, ldc: c)
            reluBackward(rowGradient.pointer + start * c, rowGradient.pointer + start * c, output: rows.pointer + start * c,
                         count: count * c)
            let level = head % l
            let ga = g + headBias.offset + head * c
            for r in start..<end {
                let q = Int(rowImage[r]) * grid + Int(rowPosition[r])
                let du = rowGradient.pointer + r * c, dt = d2.pointer + q * c
                for j in 0..<c { dt[j] += du[j] }
                for j in 0..<c { ga[j] += du[j] }
                if let same {
                    for earlier in 0..<level {
                        let gg = g + same.offset + (earlier * k + Int(codes[q * l + earlier])) * c
                        for j in 0..<c { gg[j] += du[j] }
                    }
                }
            }
        }
        let count = batch * grid * c
        reluBackward(d2.pointer, d2.pointer, output: h2.pointer, count: count)
        convs[1].backward(inputGradient: d1.pointer, outputGradient: d2.pointer, input: h1.pointer, batch: batch, height: height,
                          width: width, parameters: p, gradients: g, workspace: workspace.pointer)
        reluBackward(d1.pointer, d1.pointer, output: h1.pointer, count: count)
        convs[0].backward(inputGradient: d0.pointer, outputGradient: d1.pointer, input: h0.pointer, batch: batch, height: height,
                          width: width, parameters: p, gradients: g, workspace: workspace.pointer)
        reluBackward(d0.pointer, d0.pointer, output: h0.pointer, count: count)
        accumulateBiasGradient(g + embedBias.offset, dy: d0.pointer, rows: batch * grid, channels: c)
        forEachEmbeddingRow(codes: codes, draws: lastDraws) { q, row in
            let dh = d0.pointer + q * c, target = g + embed.offset + row * c
            for j in 0..<c { target[j] += dh[j] }
        }
    }

    /// For every position `q` of the batch and every level, in order, the row of `embed` the
    /// position reads: its code when known at its image's draw, the level's "unknown" row otherwise.
    @inline(__always)
    func forEachEmbeddingRow(codes: UnsafePointer<Int32>, draws: [Draw], _ body: (_ q: Int, _ row: Int) -> Void) {
        let (k, l) = (configuration.codes, configuration.levels)
        for (n, draw) in draws.enumerated() {
            for y in 0..<height {
                for x in 0..<width {
                    let q = (n * height + y) * width + x
                    let known = CodeOrder.phase(y: y, x: x) < draw.phase
                    for level in 0..<l {
                        body(q, level * (k + 1) + (known && level < draw.levels ? Int(codes[q * l + level]) : k))
                    }
                }
            }
        }
    }
}
