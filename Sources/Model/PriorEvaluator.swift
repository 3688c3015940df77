/// A `CodePrior` applied to one code grid of any size in a FIXED order of floating-point
/// operations, for entropy coding: the encoder and the decoder of a file must see the same
/// probabilities to the last bit, on any machine and in any build.
///
/// Every output is its bias followed by one fused multiply-add per input, in ascending input order
/// (`fixedOrderProducts`); fused multiply-add is exactly rounded by IEEE 754, so the result does
/// not depend on the CPU, the vector width, the blocking or whether the instruction exists (without
/// it the standard library computes the same value in software). No BLAS, no threads, no library
/// `exp`. The results differ from `CodePrior.forward`'s (BLAS, Winograd) by rounding only.
public final class PriorEvaluator {
    public let configuration: PriorConfiguration
    public let height: Int
    public let width: Int
    /// Floats between consecutive rows of `logits(level:codes:)`: `K` rounded up to 16.
    public let logitStride: Int

    let channels: Int
    let embed: [Float], embedBias: [Float], same: [Float], headBias: [Float]
    let convWeights: [[Float]]   // [9C, C] each: row (tap * C + i), column o
    let convBias: [[Float]]
    let headWeights: [Float]     // [4L, C, logitStride]
    let headOutput: [Float]      // [4L, logitStride]

    let h0: FloatBuffer, h1: FloatBuffer
    let trunk: FloatBuffer       // [M, C] at the phase's positions
    let rows: FloatBuffer        // u [M, C]
    let output: FloatBuffer      // [M, logitStride]
    let lowered: FloatBuffer     // im2col of a block of positions
    static let block = 256

    public private(set) var phase = 0
    public private(set) var levelsInUse = 1
    /// The positions of the prepared phase, in raster order (`CodeOrder`).
    public private(set) var positions: [Int] = []

    /// The evaluator of `prior`'s current parameters for grids of `height x width`.
    public init(prior: CodePrior, height: Int, width: Int) throws {
        guard height >= 1, width >= 1 else { throw ModelError("an empty code grid (\(height)x\(width))") }
        let cfg = prior.configuration
        configuration = cfg
        self.height = height
        self.width = width
        let (k, c) = (cfg.codes, cfg.channels)
        channels = c
        logitStride = (k + 15) / 16 * 16
        let p = prior.parameters.values.pointer
        func copy(_ slot: ParameterSlot) -> [Float] { Array(UnsafeBufferPointer(start: p + slot.offset, count: slot.count)) }
        embed = copy(prior.embed)
        embedBias = copy(prior.embedBias)
        same = prior.same.map(copy) ?? []
        headBias = copy(prior.headBias)
        convWeights = prior.convs.map { conv in
            // [out, 3, 3, in] -> [(tap * in + i), out]
            var t = [Float](repeating: 0, count: 9 * c * c)
            let w = p + conv.weight.offset
            for o in 0..<c { for tap in 0..<9 { for i in 0..<c { t[(tap * c + i) * c + o] = w[(o * 9 + tap) * c + i] } } }
            return t
        }
        convBias = prior.convs.map { Array(UnsafeBufferPointer(start: p + $0.bias.offset, count: c)) }
        var hw = [Float](repeating: 0, count: cfg.heads * c * logitStride)
        var ho = [Float](repeating: 0, count: cfg.heads * logitStride)
        let w = p + prior.headWeight.offset, b = p + prior.headOutput.offset
        for head in 0..<cfg.heads {
            for j in 0..<k {
                for i in 0..<c { hw[(head * c + i) * logitStride + j] = w[(head * k + j) * c + i] }
                ho[head * logitStride + j] = b[head * k + j]
            }
        }
        headWeights = hw
        headOutput = ho
        let grid = height * width, largest = (height + 1) / 2 * ((width + 1) / 2)
        h0 = FloatBuffer(count: grid * c)
        h1 = FloatBuffer(count: grid * c)
        trunk = FloatBuffer(count: largest * c)
        rows = FloatBuffer(count: largest * c)
        output = FloatBuffer(count: largest * logitStride)
        lowered = FloatBuffer(count: Self.block * 9 * c)
    }

    /// Runs the embedding and the trunk for `phase` with the first `levels` codebooks in use, from
    /// `codes` `[h, w, L]`: only the codes of the positions of earlier phases are read.
    public func prepare(phase: Int, levels: Int, codes: UnsafePointer<Int32>) {
        precondition((0..<PriorConfiguration.phases).contains(phase) && (1...configuration.levels).contains(levels))
        self.phase = phase
        levelsInUse = levels
        positions = CodeOrder.positions(phase: phase, height: height, width: width)
        let (k, l, c) = (configuration.codes, configuration.levels, channels)
        embed.withUnsafeBufferPointer { e in
            for y in 0..<height {
                for x in 0..<width {
                    let q = y * width + x
                    let known = CodeOrder.phase(y: y, x: x) < phase
                    let out = h0.pointer + q * c
                    for j in 0..<c { out[j] = embedBias[j] }
                    for level in 0..<l {
                        var index = k
                        // -1: a level the position does not code (a level map's), read as unknown.
                        if known && level < levels && codes[q * l + level] >= 0 {
                            index = Int(codes[q * l + level])
                            precondition(index < k, "code \(index) is outside the codebook")
                        }
                        let row = e.baseAddress! + (level * (k + 1) + index) * c
                        for j in 0..<c { out[j] = out[j] + row[j] }
                    }
                    for j in 0..<c { out[j] = max(out[j], 0) }
                }
            }
        }
        convolve(0, input: h0.pointer, at: Array(0..<(height * width)), into: h1.pointer)
        convolve(1, input: h1.pointer, at: positions, into: trunk.pointer)
    }

    /// 3x3 convolution `layer` of `input` `[h, w, C]` at `at` (flat positions), with ReLU, into
    /// `into` `[at.count, C]`.
    func convolve(_ layer: Int, input: UnsafePointer<Float>, at: [Int], into: UnsafeMutablePointer<Float>) {
        let c = channels, reduction = 9 * c
        var start = 0
        while start < at.count {
            let count = min(Self.block, at.count - start)
            let columns = lowered.pointer
            for r in 0..<count {
                let q = at[start + r], y = q / width, x = q % width
                for tap in 0..<9 {
                    let (yy, xx) = (y + tap / 3 - 1, x + tap % 3 - 1)
                    let target = columns + r * reduction + tap * c
                    if yy >= 0 && yy < height && xx >= 0 && xx < width {
                        target.update(from: input + (yy * width + xx) * c, count: c)
                    } else {
                        target.update(repeating: 0, count: c)
                    }
                }
            }
            convWeights[layer].withUnsafeBufferPointer { w in
                convBias[layer].withUnsafeBufferPointer { b in
                    fixedOrderProducts(rows: count, input: columns, inputs: reduction, weights: w.baseAddress!, bias: b.baseAddress!,
                                       outputs: c, output: into + start * c, relu: true)
                }
            }
            start += count
        }
    }

    /// The logits of `level` (`< levels` of `prepare`) at the prepared phase's positions,
    /// `[positions.count, logitStride]` (the first `K` of each row are the codes'), given the
    /// position's own codes of the levels before `level` in `codes` `[h, w, L]`.
    public func logits(level: Int, codes: UnsafePointer<Int32>) -> UnsafePointer<Float> {
        precondition(level >= 0 && level < levelsInUse, "level \(level) is not in use")
        let (k, l, c) = (configuration.codes, configuration.levels, channels)
        let head = phase * l + level
        let m = positions.count
        for (r, q) in positions.enumerated() {
            let u = rows.pointer + r * c, t = trunk.pointer + r * c
            for j in 0..<c { u[j] = t[j] + headBias[head * c + j] }
            for earlier in 0..<level {
                let index = Int(codes[q * l + earlier])
                // -1: the position stops before `level` (its logits go unused).
                if index < 0 { continue }
                precondition(index < k, "code \(index) is outside the codebook")
                let base = (earlier * k + index) * c
                for j in 0..<c { u[j] = u[j] + same[base + j] }
            }
            for j in 0..<c { u[j] = max(u[j], 0) }
        }
        headWeights.withUnsafeBufferPointer { w in
            headOutput.withUnsafeBufferPointer { b in
                fixedOrderProducts(rows: m, input: rows.pointer, inputs: c, weights: w.baseAddress! + head * c * logitStride,
                                   bias: b.baseAddress! + head * logitStride, outputs: logitStride, output: output.pointer, relu: false)
            }
        }
        return UnsafePointer(output.pointer)
    }
}

/// `output[r, o] = bias[o] + sum_i input[r, i] * weights[i, o]` (then ReLU if asked), each output
/// accumulated by fused multiply-adds in ascending `i`: the same bits whatever the blocking, the
/// vector width or the CPU. `outputs` must be a multiple of 16; rows are `inputs` and `outputs`
/// floats apart.
func fixedOrderProducts(rows m: Int, input: UnsafePointer<Float>, inputs: Int, weights: UnsafePointer<Float>,
                        bias: UnsafePointer<Float>, outputs: Int, output: UnsafeMutablePointer<Float>, relu: Bool) {
    precondition(outputs % 16 == 0)
    typealias V = SIMD8<Float>
    @inline(__always) func load8(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
    @inline(__always) func store8(_ v: V, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: relu ? v.replacing(with: 0, where: v .< 0) : v, as: V.self)
    }
    var r = 0
    while r < m {
        let count = min(4, m - r)
        let x0 = input + r * inputs
        let x1 = input + (r + min(1, count - 1)) * inputs
        let x2 = input + (r + min(2, count - 1)) * inputs
        let x3 = input + (r + min(3, count - 1)) * inputs
        var o = 0
        while o < outputs {
            let b0 = load8(bias + o), b1 = load8(bias + o + 8)
            var a00 = b0, a01 = b1, a10 = b0, a11 = b1, a20 = b0, a21 = b1, a30 = b0, a31 = b1
            var w = weights + o
            for i in 0..<inputs {
                let w0 = load8(w), w1 = load8(w + 8)
                let v0 = V(repeating: x0[i]), v1 = V(repeating: x1[i]), v2 = V(repeating: x2[i]), v3 = V(repeating: x3[i])
                a00 = a00.addingProduct(v0, w0)
                a01 = a01.addingProduct(v0, w1)
                a10 = a10.addingProduct(v1, w0)
                a11 = a11.addingProduct(v1, w1)
                a20 = a20.addingProduct(v2, w0)
                a21 = a21.addingProduct(v2, w1)
                a30 = a30.addingProduct(v3, w0)
                a31 = a31.addingProduct(v3, w1)
                w += outputs
            }
            let out = output + r * outputs + o
            store8(a00, out)
            store8(a01, out + 8)
            if count > 1 { store8(a10, out + outputs); store8(a11, out + outputs + 8) }
            if count > 2 { store8(a20, out + 2 * outputs); store8(a21, out + 2 * outputs + 8) }
            if count > 3 { store8(a30, out + 3 * outputs); store8(a31, out + 3 * outputs + 8) }
            o += 16
        }
        r += 4
    }
}
