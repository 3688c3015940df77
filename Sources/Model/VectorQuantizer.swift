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
public final class VectorQuantizer {
    public let codes: Int
    public let dimension: Int
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

    /// With `.grad`: the codebook's slot in the parameter store.
    public let codebookSlot: ParameterSlot?
    /// With `.ema`: `[codebook (K*D) | ema_count (K) | ema_sum (K*D)]`, one buffer so that it is
    /// broadcast, fingerprinted and checkpointed whole.
    public let emaState: FloatBuffer
    /// `[n_k (K) | s_k (K*D)]` of the last training forward pass on this rank's share.
    public let batchStatistics: FloatBuffer

    private let codeNorms: FloatBuffer

    /// Floats held outside the parameter store: EMA state, batch statistics, code norms.
    var allocatedFloatCount: Int { emaState.count + batchStatistics.count + codeNorms.count }

    init(codes: Int, dimension: Int, kind: CodebookKind, commitment: Float, decay: Double, epsilon: Double,
         parameters: ParameterStore) {
        self.codes = codes
        self.dimension = dimension
        self.kind = kind
        self.commitment = commitment
        self.decay = decay
        self.epsilon = epsilon
        switch kind {
        case .grad:
            codebookSlot = parameters.add(name: "quantizer/codebook", shape: [codes, dimension], uniformBound: nil)
            emaState = FloatBuffer(count: 0)
        case .ema:
            codebookSlot = nil
            emaState = FloatBuffer(count: codes * dimension * 2 + codes)
        }
        batchStatistics = FloatBuffer(count: codes + codes * dimension)
        codeNorms = FloatBuffer(count: codes)
    }

    /// The EMA codebook's start: `E ~ N(0, 1)` from `(seed, stream)`, `N = 0`, `M = E`.
    /// (With `.grad` the parameter store initialises the codebook.)
    func initializeEMA(seed: UInt64) {
        guard kind == .ema else { return }
        var random = SplitMix64(seed: seed, stream: 0xC0DE_B00C)
        let size = codes * dimension
        for i in 0..<size { emaState[i] = random.normal() }
        if cosine { Self.normalizeRows(emaState.pointer, rows: codes, dimension: dimension) }
        emaCount.update(repeating: 0, count: codes)
        emaSum.update(from: emaState.pointer, count: size)
    }

    /// `E` `[K, D]`, wherever it lives.
    public func codebook(parameters: ParameterStore) -> UnsafeMutablePointer<Float> {
        if let slot = codebookSlot { return parameters.values.pointer + slot.offset }
        return emaState.pointer
    }

    /// With `.ema`: the tensors of `emaState` as checkpoints name them (below `/model`): the
    /// codebook `[K, D]`, `ema_count` `[K]` and `ema_sum` `[K, D]`. Empty with `.grad`.
    public var emaSlots: [ParameterSlot] {
        guard kind == .ema else { return [] }
        let (k, d) = (codes, dimension)
        return [ParameterSlot(name: "quantizer/codebook", offset: 0, count: k * d, shape: [k, d], layout: .plain, uniformBound: nil),
                ParameterSlot(name: "quantizer/ema_count", offset: k * d, count: k, shape: [k], layout: .plain, uniformBound: nil),
                ParameterSlot(name: "quantizer/ema_sum", offset: k * d + k, count: k * d, shape: [k, d], layout: .plain,
                              uniformBound: nil)]
    }

    public var emaCount: UnsafeMutablePointer<Float> { emaState.pointer + codes * dimension }
    public var emaSum: UnsafeMutablePointer<Float> { emaState.pointer + codes * dimension + codes }

    /// Workspace floats for `vectors` code vectors (the distance matrix).
    func workspaceCount(vectors: Int) -> Int { vectors * codes }

    /// Fills `quantized` `[P, D]` and `indices` `[P]` and returns `mean((z - q)^2)` over the
    /// `P*D` elements. With `collectStatistics`, also fills `batchStatistics`.
    func forward(
        quantized: UnsafeMutablePointer<Float>, indices: UnsafeMutablePointer<Int32>,
        vectors z: UnsafePointer<Float>, count: Int, codebook: UnsafePointer<Float>,
        collectStatistics: Bool, workspace: UnsafeMutablePointer<Float>, activeCodes: Int? = nil
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
            batchStatistics.zero()
            let counts = batchStatistics.pointer, sums = batchStatistics.pointer + codes
            for p in 0..<count {
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
        count: Int, gradients: UnsafeMutablePointer<Float>
    ) {
        let d = dimension
        let scale = 2 / Float(count * d)
        let commitmentScale = commitment * scale
        if rotationTrick {
            rotateGradients(dz, dq, z: z, q: q, count: count, commitmentScale: commitmentScale)
            accumulateCodebookGradient(z: z, q: q, indices: indices, count: count, scale: scale, gradients: gradients)
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
        accumulateCodebookGradient(z: z, q: q, indices: indices, count: count, scale: scale, gradients: gradients)
    }

    /// `.grad`: the codebook loss's gradient `scale (q - z)` into each assigned row.
    private func accumulateCodebookGradient(z: UnsafePointer<Float>, q: UnsafePointer<Float>, indices: UnsafePointer<Int32>,
                                            count: Int, scale: Float, gradients: UnsafeMutablePointer<Float>) {
        guard let slot = codebookSlot else { return }
        let d = dimension, dE = gradients + slot.offset
        for p in 0..<count {
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
    /// `workspace` holds `count * K` floats. Returns `m`.
    @discardableResult
    public func initializeWithKMeans(vectors: UnsafePointer<Float>, count: Int, iterations: Int, seed: UInt64,
                                     parameters: ParameterStore, workspace: UnsafeMutablePointer<Float>) -> Int {
        let d = dimension
        let centres = codebook(parameters: parameters)
        guard count > 0 else {
            // No vector to start from: every code unused at the origin.
            centres.update(repeating: 0, count: codes * d)
            if kind == .ema { emaState.zero() }
            batchStatistics.zero()
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
                        codebook: centres, collectStatistics: true, workspace: workspace, activeCodes: placed)
            let counts = batchStatistics.pointer, sums = batchStatistics.pointer + codes
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
                    codebook: centres, collectStatistics: true, workspace: workspace, activeCodes: placed)
        if kind == .ema {
            let counts = batchStatistics.pointer
            for k in 0..<codes {
                emaCount[k] = counts[k]
                for j in 0..<d { emaSum[k * d + j] = counts[k] * centres[k * d + j] }
            }
        }
        batchStatistics.zero()
        return placed
    }

    /// Codes whose EMA count `N_k` is below `threshold` (`.ema` only; none for `.grad`).
    public func deadCodes(threshold: Float) -> [Int] {
        guard kind == .ema else { return [] }
        let count = emaCount
        return (0..<codes).filter { count[$0] < threshold }
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
    @discardableResult
    public func restart(codes dead: [Int], candidates: UnsafePointer<Float>, count: Int, weight: Float,
                        seed: UInt64, step: Int) -> Int {
        guard kind == .ema, count > 0, !dead.isEmpty else { return 0 }
        let d = dimension
        var random = SplitMix64(seed: seed, stream: 0x5245_5354_4152_54 &+ UInt64(step))
        var order = Array(0..<count)
        // The codes a candidate must differ from: those in use, then each one re-seeded here.
        let deadSet = Set(dead)
        var live = (0..<codes).filter { !deadSet.contains($0) }
        var slot = 0, reseeded = 0
        for k in dead {
            var chosen: UnsafePointer<Float>?
            while chosen == nil && slot < count {
                order.swapAt(slot, slot + random.below(count - slot))
                let v = candidates + order[slot] * d
                slot += 1
                if !Self.nearlyEqualsAny(v, codebook: emaState.pointer, codes: live, dimension: d) { chosen = v }
            }
            guard let v = chosen else { break }
            (emaState.pointer + k * d).update(from: v, count: d)
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

    /// The EMA update from `batchStatistics` (already summed over ranks):
    /// `N = g*N + (1-g)*n`, `M = g*M + (1-g)*s`, `Ntilde_k = (N_k + eps) / (sum N + K*eps) * sum N`,
    /// `E = M / Ntilde`.
    public func applyEMA() {
        guard kind == .ema else { return }
        let d = dimension
        let g = Float(decay), oneMinusG = Float(1 - decay)
        let counts = batchStatistics.pointer, sums = batchStatistics.pointer + codes
        let count = emaCount, sum = emaSum, e = emaState.pointer
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
