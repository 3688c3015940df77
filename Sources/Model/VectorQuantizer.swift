/// How the codebook learns.
public enum CodebookKind: String, Codable, Sendable, CaseIterable {
    /// Exponential moving averages of the assigned encoder outputs (spec/model.md).
    case ema
    /// A trained parameter with the loss `mean((sg(z) - q)^2)`.
    case grad
}

/// The vector quantizer of spec/model.md over `P` code vectors `z` `[P, D]` (an NHWC latent
/// flattened over `N*h*w`), with a codebook `E` `[K, D]`.
///
/// - Forward: `k = argmin_k ||z - e_k||^2` (ties: the smallest k), `q = e_k`, computed as one GEMM
///   `z * E^T` plus the codes' squared norms.
/// - Backward: straight-through, `dz = dq + beta * 2 (z - q) / (P*D)`; with `.grad` the codebook
///   gets `2 (q - z) / (P*D)` per assigned vector.
/// - EMA (`.ema`): `batchStatistics` holds `[n_k (K) | s_k (K*D)]` of the local batch; after they are
///   summed over ranks, `applyEMA` updates `N`, `M` and `E`.
///
/// Residual VQ (`levels` L > 1, as `vector_quantize_pytorch.ResidualVQ`): L codebooks, each
/// quantizing what the ones before it left: `r_0 = z`, `k_l = nearest(r_l, E_l)`, `q_l = E_l[k_l]`,
/// `r_{l+1} = r_l - q_l`, and the output `q = q_0 + q_1 + ... + q_{L-1}` (summed in that order).
/// Each level is a quantizer of its own on its own residuals (its commitment term, EMA statistics,
/// k-means start and restarts), and the straight-through gradient passes through every level, so
/// `dz = sum_l (dq + beta * 2 (r_l - q_l) / (P*D))` (the rotation trick rotates each level's
/// share by its own `r_l` and `q_l`); the commitment is the sum of the levels' means. Every
/// per-level buffer is L blocks, level 0 first, laid out as the single-level quantizer's.
public final class VectorQuantizer {
    public let codes: Int
    public let dimension: Int
    /// Residual levels (codebooks), 1 for the plain quantizer.
    public let levels: Int
    /// Largest number of vectors a forward pass takes (residual VQ's buffers are sized for it).
    let maxVectors: Int
    public let kind: CodebookKind
    public let commitment: Float
    public let decay: Double
    public let epsilon: Double
    /// The rotation trick (Fifty et al. 2024) instead of the straight-through gradient: see
    /// `backward`.
    public var rotationTrick = false
    /// Cosine-similarity codes: the vectors the quantizer is given are l2-normalised by the
    /// model, and the codebook's rows are kept on the unit sphere: at the start, after each
    /// k-means iteration and after each EMA update (`E_k = M_k / N_k`, then normalised), as
    /// `vector_quantize_pytorch`'s `CosineSimCodebook` does. With unit rows the nearest code by
    /// distance is the nearest by angle.
    public var cosine = false

    /// `x / max(|x|, 1e-6)` for each of `rows` rows of `d` floats, in place (torch's F.normalize).
    static func normalizeRows(_ x: UnsafeMutablePointer<Float>, rows: Int, dimension d: Int) {
        for r in 0..<rows {
            let row = x + r * d
            var norm: Float = 0
            for j in 0..<d { norm += row[j] * row[j] }
            let scale = 1 / max(norm.squareRoot(), 1e-6)
            for j in 0..<d { row[j] *= scale }
        }
    }

    /// With `.grad`: the codebook's slot in the parameter store (level 0's with residual VQ).
    public var codebookSlot: ParameterSlot? { codebookSlots.first }
    /// With `.grad`: each level's codebook slot (`quantizer/codebook`, then `quantizer/level{l}/codebook`).
    public let codebookSlots: [ParameterSlot]
    /// With `.ema`: per level `[codebook (K*D) | ema_count (K) | ema_sum (K*D)]`, levels one after
    /// another in one buffer so that it is broadcast, fingerprinted and checkpointed whole.
    public let emaState: FloatBuffer
    /// Per level `[n_k (K) | s_k (K*D)]` of the last training forward pass on this rank's share.
    public let batchStatistics: FloatBuffer

    private let codeNorms: FloatBuffer
    /// Residual VQ: each level's input `r_l` `[L, P, D]` (level 0's is `z` itself, not copied),
    /// output `q_l` `[L, P, D]` and codes `[L, P]` of the last forward pass; empty for one level.
    let levelInputs: FloatBuffer
    let levelOutputs: FloatBuffer
    private let levelIndices: UnsafeMutableBufferPointer<Int32>
    /// Residual VQ: one level's share of the encoder's gradient, `[P, D]`.
    private let levelGradient: FloatBuffer
    /// Residual VQ: 1 where a vector skipped a level in the last forward pass (quantizer
    /// dropout, or fewer levels in use), `[L, P]`.
    private let levelSkips: UnsafeMutableBufferPointer<UInt8>

    /// Floats held outside the parameter store: EMA state, batch statistics, code norms, and the
    /// residual levels' buffers.
    var allocatedFloatCount: Int {
        emaState.count + batchStatistics.count + codeNorms.count + levelInputs.count + levelOutputs.count + levelIndices.count
            + levelGradient.count + (levelSkips.count + 3) / 4
    }

    /// Floats of one level's EMA state and of its batch statistics.
    var levelStateCount: Int { codes * dimension * 2 + codes }
    var levelStatisticsCount: Int { codes + codes * dimension }

    init(codes: Int, dimension: Int, kind: CodebookKind, commitment: Float, decay: Double, epsilon: Double,
         parameters: ParameterStore, levels: Int = 1, maxVectors: Int = 0) {
        precondition(levels >= 1)
        self.codes = codes
        self.dimension = dimension
        self.levels = levels
        self.maxVectors = maxVectors
        self.kind = kind
        self.commitment = commitment
        self.decay = decay
        self.epsilon = epsilon
        switch kind {
        case .grad:
            codebookSlots = (0..<levels).map { l in
                parameters.add(name: Self.levelName(l, "codebook"), shape: [codes, dimension], uniformBound: nil)
            }
            emaState = FloatBuffer(count: 0)
        case .ema:
            codebookSlots = []
            emaState = FloatBuffer(count: levels * (codes * dimension * 2 + codes))
        }
        batchStatistics = FloatBuffer(count: levels * (codes + codes * dimension))
        codeNorms = FloatBuffer(count: codes)
        let residual = levels > 1 ? levels * maxVectors * dimension : 0
        levelInputs = FloatBuffer(count: residual)
        levelOutputs = FloatBuffer(count: residual)
        levelIndices = .allocate(capacity: levels > 1 ? levels * maxVectors : 0)
        levelIndices.initialize(repeating: 0)
        levelGradient = FloatBuffer(count: levels > 1 ? maxVectors * dimension : 0)
        levelSkips = .allocate(capacity: levels > 1 ? levels * maxVectors : 0)
        levelSkips.initialize(repeating: 0)
    }

    deinit {
        levelIndices.deallocate()
        levelSkips.deallocate()
    }

    /// A checkpoint name below `quantizer/`: level 0's as the single quantizer's, `quantizer/NAME`,
    /// the others' `quantizer/level{l}/NAME`.
    static func levelName(_ level: Int, _ name: String) -> String {
        level == 0 ? "quantizer/\(name)" : "quantizer/level\(level)/\(name)"
    }

    /// The EMA codebook's start: `E ~ N(0, 1)` from `(seed, stream)` (level `l` > 0: stream + l),
    /// `N = 0`, `M = E`. (With `.grad` the parameter store initialises the codebook.)
    func initializeEMA(seed: UInt64) {
        guard kind == .ema else { return }
        let size = codes * dimension
        for level in 0..<levels {
            var random = SplitMix64(seed: seed, stream: 0xC0DE_B00C &+ UInt64(level))
            let book = emaState.pointer + level * levelStateCount
            for i in 0..<size { book[i] = random.normal() }
            if cosine { Self.normalizeRows(book, rows: codes, dimension: dimension) }
            emaCount(level: level).update(repeating: 0, count: codes)
            emaSum(level: level).update(from: book, count: size)
        }
    }

    /// `E` `[K, D]` (level 0's with residual VQ), wherever it lives.
    public func codebook(parameters: ParameterStore) -> UnsafeMutablePointer<Float> {
        codebook(level: 0, parameters: parameters)
    }

    /// Level `level`'s codebook `E_l` `[K, D]`.
    public func codebook(level: Int, parameters: ParameterStore) -> UnsafeMutablePointer<Float> {
        if kind == .grad { return parameters.values.pointer + codebookSlots[level].offset }
        return emaState.pointer + level * levelStateCount
    }

    /// With `.ema`: the tensors of `emaState` as checkpoints name them (below `/model`), per level
    /// (`levelName`): the codebook `[K, D]`, `ema_count` `[K]` and `ema_sum` `[K, D]`. Empty with `.grad`.
    public var emaSlots: [ParameterSlot] {
        guard kind == .ema else { return [] }
        let (k, d) = (codes, dimension)
        return (0..<levels).flatMap { level -> [ParameterSlot] in
            let base = level * levelStateCount
            return [ParameterSlot(name: Self.levelName(level, "codebook"), offset: base, count: k * d, shape: [k, d], layout: .plain,
                                  uniformBound: nil),
                    ParameterSlot(name: Self.levelName(level, "ema_count"), offset: base + k * d, count: k, shape: [k], layout: .plain,
                                  uniformBound: nil),
                    ParameterSlot(name: Self.levelName(level, "ema_sum"), offset: base + k * d + k, count: k * d, shape: [k, d],
                                  layout: .plain, uniformBound: nil)]
        }
    }

    /// Level 0's EMA counts `N` and sums `M`.
    public var emaCount: UnsafeMutablePointer<Float> { emaCount(level: 0) }
    public var emaSum: UnsafeMutablePointer<Float> { emaSum(level: 0) }
    public func emaCount(level: Int) -> UnsafeMutablePointer<Float> { emaState.pointer + level * levelStateCount + codes * dimension }
    public func emaSum(level: Int) -> UnsafeMutablePointer<Float> { emaState.pointer + level * levelStateCount + codes * dimension + codes }
    /// Level `level`'s block of `batchStatistics`: `[n_k (K) | s_k (K*D)]`.
    public func statistics(level: Int) -> UnsafeMutablePointer<Float> { batchStatistics.pointer + level * levelStatisticsCount }

    /// Workspace floats for `vectors` code vectors (the distance matrix).
    func workspaceCount(vectors: Int) -> Int { vectors * codes }

    /// Every level (see the type): fills `quantized` `[P, D]` with the sum of the levels' rows
    /// and `indices` `[P, L]` (position-major) with their codes, and returns the sum over levels of
    /// `mean((r_l - q_l)^2)`. With `collectStatistics`, fills every level's `batchStatistics`. One
    /// level is `forward(quantized:indices:vectors:count:codebook:...)` itself.
    ///
    /// `activeLevels` (one per vector, 1...L; nil: all L) limits each vector to its first levels
    /// (quantizer dropout in training, or decoding at fewer levels): a level it skips gives it
    /// `q_l = 0` and code -1, and leaves its residual, statistics, commitment (still divided by
    /// every vector, `P*D`) and gradient alone.
    func forwardLevels(quantized: UnsafeMutablePointer<Float>, indices: UnsafeMutablePointer<Int32>, vectors z: UnsafePointer<Float>,
                       count: Int, parameters: ParameterStore, collectStatistics: Bool, workspace: UnsafeMutablePointer<Float>,
                       activeLevels: UnsafePointer<Int32>? = nil) -> Double {
        if levels == 1 {
            return forward(quantized: quantized, indices: indices, vectors: z, count: count, codebook: codebook(parameters: parameters),
                           collectStatistics: collectStatistics, workspace: workspace)
        }
        precondition(count <= maxVectors, "\(count) vectors exceed the \(maxVectors) the residual levels hold")
        let d = dimension, size = count * d
        var commitment: Double = 0
        for level in 0..<levels {
            let input = level == 0 ? z : UnsafePointer(levelInputs.pointer + level * maxVectors * d)
            let output = levelOutputs.pointer + level * maxVectors * d
            let codesOut = levelIndices.baseAddress! + level * maxVectors
            let skips = levelSkips.baseAddress! + level * maxVectors
            var anySkipped = false
            for p in 0..<count {
                let skipped = activeLevels.map { Int($0[p]) <= level } ?? false
                skips[p] = skipped ? 1 : 0
                anySkipped = anySkipped || skipped
            }
            commitment += forward(quantized: output, indices: codesOut, vectors: input, count: count,
                                  codebook: codebook(level: level, parameters: parameters),
                                  collectStatistics: collectStatistics, workspace: workspace, level: level,
                                  skip: anySkipped ? UnsafePointer(skips) : nil)
            if level + 1 < levels {
                let next = levelInputs.pointer + (level + 1) * maxVectors * d
                for i in 0..<size { next[i] = input[i] - output[i] }
            }
            for p in 0..<count { indices[p * levels + level] = codesOut[p] }
        }
        quantized.update(from: levelOutputs.pointer, count: size)
        for level in 1..<levels {
            let output = levelOutputs.pointer + level * maxVectors * d
            for i in 0..<size { quantized[i] += output[i] }
        }
        return commitment
    }

    /// Residual VQ's decoding of codes `[P, L]`: `q = E_0[k_0] + E_1[k_1] + ...`, summed as the
    /// forward pass sums, so the forward pass's codes give its `q` bit for bit.
    func decodeLevels(codes indices: UnsafePointer<Int32>, count: Int, into quantized: UnsafeMutablePointer<Float>,
                      parameters: ParameterStore) {
        let d = dimension
        for p in 0..<count {
            let q = quantized + p * d
            for level in 0..<levels {
                let k = Int(indices[p * levels + level])
                // -1: a level the position skipped (it adds 0, as in the forward pass).
                if k == -1 && level > 0 { continue }
                precondition(k >= 0 && k < codes, "code \(k) is outside the codebook")
                let row = codebook(level: level, parameters: parameters) + k * d
                if level == 0 { q.update(from: row, count: d) } else { for j in 0..<d { q[j] += row[j] } }
            }
        }
    }

    /// Fills `quantized` `[P, D]` and `indices` `[P]` and returns `mean((z - q)^2)` over the
    /// `P*D` elements. With `collectStatistics`, also fills level `level`'s `batchStatistics`.
    ///
    /// `skip` (one per vector, nil: none) marks vectors left out: `q = 0`, code -1, no error and
    /// no statistics.
    func forward(
        quantized: UnsafeMutablePointer<Float>, indices: UnsafeMutablePointer<Int32>,
        vectors z: UnsafePointer<Float>, count: Int, codebook: UnsafePointer<Float>,
        collectStatistics: Bool, workspace: UnsafeMutablePointer<Float>, activeCodes: Int? = nil, level: Int = 0,
        skip: UnsafePointer<UInt8>? = nil
    ) -> Double {
        let d = dimension
        // k-means with fewer starting vectors than codes searches only the codes it placed.
        let searched = min(max(activeCodes ?? codes, 1), codes)
        for k in 0..<codes {
            var norm: Float = 0
            let e = codebook + k * d
            for j in 0..<d { norm += e[j] * e[j] }
            codeNorms[k] = norm
        }
        // scores[P, K] = z[P, D] * E^T[D, K]
        gemm(transposeA: false, transposeB: true, m: count, n: codes, k: d,
             a: z, lda: d, b: codebook, ldb: d, beta: 0, c: workspace, ldc: codes)
        var squaredError: Double = 0
        for p in 0..<count {
            if let skip, skip[p] != 0 {
                indices[p] = -1
                (quantized + p * d).update(repeating: 0, count: d)
                continue
            }
            let scores = workspace + p * codes
            var best = 0
            var bestDistance = codeNorms[0] - 2 * scores[0]
            for k in 1..<searched {
                let distance = codeNorms[k] - 2 * scores[k]
                if distance < bestDistance { bestDistance = distance; best = k }
            }
            indices[p] = Int32(best)
            let q = quantized + p * d, e = codebook + best * d, v = z + p * d
            var rowError: Float = 0
            for j in 0..<d {
                q[j] = e[j]
                let diff = v[j] - e[j]
                rowError += diff * diff
            }
            squaredError += Double(rowError)
        }
        if collectStatistics {
            let counts = statistics(level: level), sums = counts + codes
            counts.update(repeating: 0, count: levelStatisticsCount)
            for p in 0..<count where indices[p] >= 0 {
                let k = Int(indices[p])
                counts[k] += 1
                let s = sums + k * d, v = z + p * d
                for j in 0..<d { s[j] += v[j] }
            }
        }
        return squaredError / Double(count * d)
    }

    /// Straight-through backward: WRITES `dz = dq + beta * 2 (z - q) / (P*D)`; with `.grad`
    /// accumulates the codebook loss's gradient into `gradients`.
    ///
    /// With `rotationTrick` the decoder's gradient reaches `z` through the rotation and scaling
    /// that carry `z` onto `q` (Fifty et al. 2024, "Restructuring Vector Quantization with the
    /// Rotation Trick", section 4.2), all of it held constant: with `u = z / |z|`, `r = q / |q|`,
    /// `w = (u + r) / |u + r|` and `s = |q| / |z|`,
    /// `dz = s (dq - 2 w (w . dq) + 2 u (r . dq)) + beta * 2 (z - q) / (P*D)`.
    /// Norms are clamped below at 1e-6 as `vector_quantize_pytorch.rotate_to` does.
    func backward(
        vectorGradient dz: UnsafeMutablePointer<Float>, quantizedGradient dq: UnsafePointer<Float>,
        vectors z: UnsafePointer<Float>, quantized q: UnsafePointer<Float>, indices: UnsafePointer<Int32>,
        count: Int, gradients: UnsafeMutablePointer<Float>, level: Int = 0
    ) {
        let d = dimension
        let scale = 2 / Float(count * d)
        let commitmentScale = commitment * scale
        if rotationTrick {
            rotateGradients(dz, dq, z: z, q: q, count: count, commitmentScale: commitmentScale)
            accumulateCodebookGradient(z: z, q: q, indices: indices, count: count, scale: scale, gradients: gradients, level: level)
            return
        }
        var i = 0
        let vscale = Vector(repeating: commitmentScale)
        while i + vectorWidth <= count * d {
            store(load(dq + i) + vscale * (load(z + i) - load(q + i)), dz + i)
            i += vectorWidth
        }
        for i in i..<(count * d) {
            dz[i] = dq[i] + commitmentScale * (z[i] - q[i])
        }
        accumulateCodebookGradient(z: z, q: q, indices: indices, count: count, scale: scale, gradients: gradients, level: level)
    }

    /// Every level's backward (see the type) after `forwardLevels` over the same `z`: WRITES `dz`,
    /// the sum of the levels' shares, each `backward` of the level's `r_l`, `q_l` and codes, and
    /// with `.grad` accumulates each level's codebook gradient.
    func backwardLevels(vectorGradient dz: UnsafeMutablePointer<Float>, quantizedGradient dq: UnsafePointer<Float>,
                        vectors z: UnsafePointer<Float>, quantized q: UnsafePointer<Float>, indices: UnsafePointer<Int32>,
                        count: Int, gradients: UnsafeMutablePointer<Float>) {
        if levels == 1 {
            backward(vectorGradient: dz, quantizedGradient: dq, vectors: z, quantized: q, indices: indices, count: count, gradients: gradients)
            return
        }
        let d = dimension
        for level in 0..<levels {
            let input = level == 0 ? z : UnsafePointer(levelInputs.pointer + level * maxVectors * d)
            let output = UnsafePointer(levelOutputs.pointer + level * maxVectors * d)
            let target = level == 0 ? dz : levelGradient.pointer
            backward(vectorGradient: target, quantizedGradient: dq, vectors: input, quantized: output,
                     indices: levelIndices.baseAddress! + level * maxVectors, count: count, gradients: gradients, level: level)
            guard level > 0 else { continue }
            // A vector that skipped this level takes no share of it.
            let skips = levelSkips.baseAddress! + level * maxVectors
            for p in 0..<count where skips[p] == 0 {
                for j in 0..<d { dz[p * d + j] += target[p * d + j] }
            }
        }
    }

    /// `.grad`: the codebook loss's gradient `scale (q - z)` into each assigned row of level `level`.
    private func accumulateCodebookGradient(z: UnsafePointer<Float>, q: UnsafePointer<Float>, indices: UnsafePointer<Int32>,
                                            count: Int, scale: Float, gradients: UnsafeMutablePointer<Float>, level: Int) {
        guard kind == .grad else { return }
        let slot = codebookSlots[level]
        let d = dimension, dE = gradients + slot.offset
        for p in 0..<count where indices[p] >= 0 {  // (code -1: a skipped vector, no share)
            let k = Int(indices[p])
            let g = dE + k * d, qp = q + p * d, zp = z + p * d
            for j in 0..<d { g[j] += scale * (qp[j] - zp[j]) }
        }
    }

    /// The rotation trick's `dz` (see `backward`), vector by vector.
    private func rotateGradients(_ dz: UnsafeMutablePointer<Float>, _ dq: UnsafePointer<Float>, z: UnsafePointer<Float>,
                                 q: UnsafePointer<Float>, count: Int, commitmentScale: Float) {
        let d = dimension, floor: Float = 1e-6
        for p in 0..<count {
            let zp = z + p * d, qp = q + p * d, gp = dq + p * d, out = dz + p * d
            var zNorm: Float = 0, qNorm: Float = 0
            for j in 0..<d { zNorm += zp[j] * zp[j]; qNorm += qp[j] * qp[j] }
            zNorm = max(zNorm.squareRoot(), floor)
            qNorm = max(qNorm.squareRoot(), floor)
            // w = (u + r) / max(|u + r|, eps); the dot products with dq.
            var wNorm: Float = 0
            for j in 0..<d { let w = zp[j] / zNorm + qp[j] / qNorm; wNorm += w * w }
            wNorm = max(wNorm.squareRoot(), floor)
            var wDot: Float = 0, rDot: Float = 0
            for j in 0..<d {
                wDot += (zp[j] / zNorm + qp[j] / qNorm) / wNorm * gp[j]
                rDot += qp[j] / qNorm * gp[j]
            }
            let s = qNorm / zNorm
            for j in 0..<d {
                let w = (zp[j] / zNorm + qp[j] / qNorm) / wNorm
                out[j] = s * (gp[j] - 2 * w * wDot + 2 * zp[j] / zNorm * rDot) + commitmentScale * (zp[j] - qp[j])
            }
        }
    }

    /// k-means initialisation of the codebook from `count` vectors `[count, D]` (for example the
    /// encoder outputs of the first global batch): up to `K` distinct vectors (one within 1e-3 of
    /// its norm of one already drawn does not count, see `nearlyEqualsAny`) drawn with `seed` start
    /// Lloyd's iterations, whose assignment step is this
    /// quantizer's own GEMM search; a cluster that empties keeps its previous centre. The EMA
    /// state becomes `E = centres`, `N_k` = the size of cluster k, `M_k = N_k * e_k`.
    ///
    /// With fewer distinct vectors `m` than codes, only the first `m` codes are placed and
    /// clustered; the others start at the origin with `N_k = 0` and `M_k = 0` (unused, for
    /// dead-code restart to re-seed). Copies of placed codes would tie with them exactly, and a
    /// tie decided by rounding would make the result depend on how the batch was split over ranks.
    /// `workspace` holds `count * K` floats. Returns `m` (of level 0).
    ///
    /// Residual VQ: level by level, each clustered on the residuals the levels before it leave
    /// with their new codebooks (`r_{l+1} = r_l - E_l[nearest]`), level `l` drawing from `seed + l`.
    @discardableResult
    public func initializeWithKMeans(vectors: UnsafePointer<Float>, count: Int, iterations: Int, seed: UInt64,
                                     parameters: ParameterStore, workspace: UnsafeMutablePointer<Float>) -> Int {
        let placed = kMeans(level: 0, vectors: vectors, count: count, iterations: iterations, seed: seed, parameters: parameters,
                            workspace: workspace)
        guard levels > 1, count > 0 else {
            for level in 1..<max(levels, 1) {
                _ = kMeans(level: level, vectors: vectors, count: 0, iterations: iterations, seed: seed &+ UInt64(level),
                           parameters: parameters, workspace: workspace)
            }
            return placed
        }
        forEachLevelResidual(of: vectors, count: count, parameters: parameters, workspace: workspace) { level, residual in
            guard level > 0 else { return }
            _ = kMeans(level: level, vectors: residual, count: count, iterations: iterations, seed: seed &+ UInt64(level),
                       parameters: parameters, workspace: workspace)
        }
        return placed
    }

    /// Residual VQ: `body(l, r_l)` for every level in turn over `count` vectors, with `r_0 =
    /// vectors` and `r_{l+1} = r_l - E_l[nearest]` under level `l`'s codebook as `body` left it
    /// (the k-means start and restarts change a level before the next one's residuals are taken).
    private func forEachLevelResidual(of vectors: UnsafePointer<Float>, count: Int, parameters: ParameterStore,
                                      workspace: UnsafeMutablePointer<Float>, _ body: (Int, UnsafePointer<Float>) -> Void) {
        body(0, vectors)
        guard levels > 1 else { return }
        let d = dimension
        let residual = UnsafeMutablePointer<Float>.allocate(capacity: count * d)
        let quantized = UnsafeMutablePointer<Float>.allocate(capacity: count * d)
        let indices = UnsafeMutablePointer<Int32>.allocate(capacity: count)
        defer { residual.deallocate(); quantized.deallocate(); indices.deallocate() }
        residual.update(from: vectors, count: count * d)
        for level in 1..<levels {
            _ = forward(quantized: quantized, indices: indices, vectors: residual, count: count,
                        codebook: codebook(level: level - 1, parameters: parameters), collectStatistics: false, workspace: workspace)
            for i in 0..<(count * d) { residual[i] -= quantized[i] }
            body(level, residual)
        }
    }

    /// One level's k-means start (see `initializeWithKMeans`).
    private func kMeans(level: Int, vectors: UnsafePointer<Float>, count: Int, iterations: Int, seed: UInt64,
                        parameters: ParameterStore, workspace: UnsafeMutablePointer<Float>) -> Int {
        let d = dimension
        let centres = codebook(level: level, parameters: parameters)
        let statistics = statistics(level: level)
        guard count > 0 else {
            // No vector to start from: every code unused at the origin.
            centres.update(repeating: 0, count: codes * d)
            if kind == .ema {
                emaCount(level: level).update(repeating: 0, count: codes)
                emaSum(level: level).update(repeating: 0, count: codes * d)
            }
            statistics.update(repeating: 0, count: levelStatisticsCount)
            return 0
        }
        // Distinct starting vectors in the order of a Fisher-Yates shuffle of the indices, drawn
        // until K are found or the vectors run out.
        var random = SplitMix64(seed: seed, stream: 0x4B4D_45414E53)
        var order = Array(0..<count)
        var placed = 0, slot = 0
        while placed < codes && slot < count {
            order.swapAt(slot, slot + random.below(count - slot))
            let v = vectors + order[slot] * d
            slot += 1
            if Self.nearlyEqualsAny(v, codebook: centres, codes: 0..<placed, dimension: d) { continue }
            (centres + placed * d).update(from: v, count: d)
            placed += 1
        }
        for k in placed..<codes { (centres + k * d).update(repeating: 0, count: d) }
        let quantized = UnsafeMutablePointer<Float>.allocate(capacity: count * d)
        let indices = UnsafeMutablePointer<Int32>.allocate(capacity: count)
        defer { quantized.deallocate(); indices.deallocate() }
        for _ in 0..<iterations {
            _ = forward(quantized: quantized, indices: indices, vectors: vectors, count: count,
                        codebook: centres, collectStatistics: true, workspace: workspace, activeCodes: placed, level: level)
            let counts = statistics, sums = statistics + codes
            for k in 0..<placed where counts[k] > 0 {
                for j in 0..<d { centres[k * d + j] = sums[k * d + j] / counts[k] }
                if cosine { Self.normalizeRows(centres + k * d, rows: 1, dimension: d) }
            }
        }
        // The EMA statistics become those of the clustering itself: N_k = the cluster's size,
        // M_k = N_k * e_k, so the first EMA updates average new assignments into the centres.
        // (Keeping the spec's fresh start N = 0, M = E here would divide the centres by the first
        // step's small counts and scatter them.)
        _ = forward(quantized: quantized, indices: indices, vectors: vectors, count: count,
                    codebook: centres, collectStatistics: true, workspace: workspace, activeCodes: placed, level: level)
        if kind == .ema {
            let counts = statistics, emaCount = emaCount(level: level), emaSum = emaSum(level: level)
            for k in 0..<codes {
                emaCount[k] = counts[k]
                for j in 0..<d { emaSum[k * d + j] = counts[k] * centres[k * d + j] }
            }
        }
        statistics.update(repeating: 0, count: levelStatisticsCount)
        return placed
    }

    /// Codes whose EMA count `N_k` is below `threshold` (`.ema` only; none for `.grad`). Residual
    /// VQ: level `l`'s code `k` is `l * K + k`.
    public func deadCodes(threshold: Float) -> [Int] {
        guard kind == .ema else { return [] }
        return (0..<levels).flatMap { level -> [Int] in
            let count = emaCount(level: level)
            return (0..<codes).filter { count[$0] < threshold }.map { level * codes + $0 }
        }
    }

    /// Dead-code restart: the codes `dead` are re-seeded, in order, from vectors of `candidates`
    /// `[count, D]` (for example the encoder outputs of the current global batch) that differ from
    /// every code in use and every code re-seeded before them (`nearlyEqualsAny`), drawn without
    /// replacement from the stream `(seed, step)`:
    /// `e_k = v`, `N_k = weight`, `M_k = weight * v`, so the next EMA update averages new
    /// assignments into `v` as if `weight` vectors equal to `v` had been assigned. When the
    /// candidates run out, the remaining codes stay as they are (dead, for the next step): two
    /// codes at one vector would tie, and a tie decided by rounding would make training depend on
    /// how the batch was split over ranks. Returns the codes re-seeded.
    ///
    /// Residual VQ (`dead` as `deadCodes` numbers them): level `l`'s codes are re-seeded from the
    /// residuals `r_l` of the candidates under the current codebooks, from the stream
    /// `(seed + l, step)`, level by level. `workspace` (needed then) holds `count * K` floats.
    @discardableResult
    public func restart(codes dead: [Int], candidates: UnsafePointer<Float>, count: Int, weight: Float,
                        seed: UInt64, step: Int, parameters: ParameterStore? = nil, workspace: UnsafeMutablePointer<Float>? = nil) -> Int {
        guard kind == .ema, count > 0, !dead.isEmpty else { return 0 }
        let orders = (0..<levels).map { level in
            dead.contains { $0 / codes == level } ? Self.restartOrder(count: count, limit: count, seed: seed, level: level, step: step) : []
        }
        return restart(codes: dead, candidates: candidates, indices: Array(0..<count), orders: orders, weight: weight,
                       parameters: parameters, workspace: workspace).reseeded
    }

    /// The order in which a restart considers `count` candidates for level `level` in step `step`:
    /// the first `limit` entries of a uniform random permutation of `0..<count` drawn from the
    /// stream `(seed + level, step)`. Fisher-Yates with the swaps kept in a dictionary, so it takes
    /// O(limit) time and memory whatever `count` is, and the first entries are the same for every
    /// `limit`: every rank computes the same prefix without the candidates themselves.
    public static func restartOrder(count: Int, limit: Int, seed: UInt64, level: Int, step: Int) -> [Int] {
        var random = SplitMix64(seed: seed &+ UInt64(level), stream: 0x5245_5354_4152_54 &+ UInt64(step))
        return randomPrefix(count: count, limit: limit, random: &random)
    }

    /// The first `limit` entries of a uniform random permutation of `0..<count` from `random`:
    /// Fisher-Yates with the swaps kept in a dictionary, O(limit) time and memory.
    public static func randomPrefix(count: Int, limit: Int, random: inout SplitMix64) -> [Int] {
        let limit = min(limit, count)
        var moved: [Int: Int] = [:]
        moved.reserveCapacity(limit)
        var order: [Int] = []
        order.reserveCapacity(limit)
        for slot in 0..<limit {
            let other = slot + random.below(count - slot)
            let atSlot = moved[slot] ?? slot, atOther = moved[other] ?? other
            moved[other] = atSlot
            moved[slot] = nil
            order.append(atOther)
        }
        return order
    }

    /// Dead-code restart from part of the candidates: `candidates` holds the vectors whose indices
    /// (among all the candidates) are `indices`, and level `l` considers them in the order
    /// `orders[l]` (indices, each in `indices`; `restartOrder`'s prefix). Re-seeds exactly as
    /// `restart(codes:candidates:count:...)` would from all of them as long as no level runs out
    /// of its order; `exhausted` says one did before re-seeding all its codes (then a longer prefix
    /// may re-seed more). `workspace` holds `indices.count * K` floats for residual VQ.
    public func restart(codes dead: [Int], candidates: UnsafePointer<Float>, indices: [Int], orders: [[Int]], weight: Float,
                        parameters: ParameterStore? = nil, workspace: UnsafeMutablePointer<Float>? = nil)
        -> (reseeded: Int, exhausted: Bool) {
        guard kind == .ema, !indices.isEmpty, !dead.isEmpty else { return (0, false) }
        precondition(orders.count == levels, "one order per level")
        var position: [Int: Int] = [:]
        position.reserveCapacity(indices.count)
        for (i, index) in indices.enumerated() { position[index] = i }
        var reseeded = 0, exhausted = false
        func level(_ level: Int, residual: UnsafePointer<Float>) {
            let mine = dead.filter { $0 / codes == level }.map { $0 % codes }
            guard !mine.isEmpty else { return }
            let order = orders[level].map { position[$0]! }
            let done = restart(level: level, codes: mine, candidates: residual, order: order, weight: weight)
            reseeded += done
            if done < mine.count { exhausted = true }
        }
        if levels == 1 {
            level(0, residual: candidates)
        } else {
            guard let parameters, let workspace else { preconditionFailure("residual VQ's restart needs the parameters and a workspace") }
            forEachLevelResidual(of: candidates, count: indices.count, parameters: parameters, workspace: workspace, level)
        }
        return (reseeded, exhausted)
    }

    /// One level's restart (see `restart(codes:...)`), `dead` numbered within the level, the
    /// candidates considered in `order` (positions in `candidates`).
    private func restart(level: Int, codes dead: [Int], candidates: UnsafePointer<Float>, order: [Int], weight: Float) -> Int {
        let d = dimension
        let book = emaState.pointer + level * levelStateCount, emaCount = emaCount(level: level), emaSum = emaSum(level: level)
        // The codes a candidate must differ from: those in use, then each one re-seeded here.
        let deadSet = Set(dead)
        var live = (0..<codes).filter { !deadSet.contains($0) }
        var slot = 0, reseeded = 0
        for k in dead {
            var chosen: UnsafePointer<Float>?
            while chosen == nil && slot < order.count {
                let v = candidates + order[slot] * d
                slot += 1
                if !Self.nearlyEqualsAny(v, codebook: book, codes: live, dimension: d) { chosen = v }
            }
            guard let v = chosen else { break }
            (book + k * d).update(from: v, count: d)
            emaCount[k] = weight
            for j in 0..<d { emaSum[k * d + j] = weight * v[j] }
            live.append(k)
            reseeded += 1
        }
        return reseeded
    }

    /// Whether `v` lies within 1e-3 of its own norm of one of `codes` (squared distance at most
    /// 1e-6 |v|^2; an exact copy of a zero vector included): such a vector adds no code of its own,
    /// and two codes that close tie up to rounding, which would then decide between them.
    static func nearlyEqualsAny<C: Sequence>(_ v: UnsafePointer<Float>, codebook: UnsafePointer<Float>, codes: C,
                                             dimension d: Int) -> Bool where C.Element == Int {
        var norm: Float = 0
        for j in 0..<d { norm += v[j] * v[j] }
        let limit = 1e-6 * norm
        for k in codes {
            let e = codebook + k * d
            var distance: Float = 0
            for j in 0..<d {
                let difference = v[j] - e[j]
                distance += difference * difference
            }
            if distance <= limit { return true }
        }
        return false
    }

    /// The EMA update from `batchStatistics` (already summed over ranks), each level its own:
    /// `N = g*N + (1-g)*n`, `M = g*M + (1-g)*s`, `Ntilde_k = (N_k + eps) / (sum N + K*eps) * sum N`,
    /// `E = M / Ntilde`.
    public func applyEMA() {
        guard kind == .ema else { return }
        let d = dimension
        let g = Float(decay), oneMinusG = Float(1 - decay)
        for level in 0..<levels {
            let counts = statistics(level: level), sums = counts + codes
            let count = emaCount(level: level), sum = emaSum(level: level), e = emaState.pointer + level * levelStateCount
            var total: Float = 0
            for k in 0..<codes {
                count[k] = g * count[k] + oneMinusG * counts[k]
                total += count[k]
            }
            for i in 0..<(codes * d) { sum[i] = g * sum[i] + oneMinusG * sums[i] }
            let eps = Float(epsilon)
            let denominator = total + Float(codes) * eps
            for k in 0..<codes {
                let smoothed = (count[k] + eps) / denominator * total
                for j in 0..<d { e[k * d + j] = sum[k * d + j] / smoothed }
            }
            if cosine { Self.normalizeRows(e, rows: codes, dimension: d) }
        }
    }
}
