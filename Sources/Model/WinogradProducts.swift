/// The per-position matrix products of the Winograd passes, computed here rather than by BLAS.
///
/// Each pass multiplies, for every one of its 25 or 36 positions, matrices of a few hundred rows at
/// most (tiles of a batch, channels). Handed to `cblas_sgemm` one position at a time, a fifth of
/// BLAS's time went into packing both operands and zeroing the result before accumulating into it
/// (measured with `perf` on a Zen 3, default model). The products here read the operands where the
/// transforms put them: a block of 6 rows by 16 columns of the result is kept in registers
/// (12 AVX2 or 6 AVX-512 registers) while the reduction runs, each step broadcasting 6 entries of the
/// left operand and loading one 16-float row of the right one. The right operand is laid out by the
/// transforms so that this row is contiguous: the kernel in 16-column panels of `U^T` for the
/// forward products and of `U` for the tile gradient; the kernel gradient, a sum over tiles, copies
/// `reductionBlock` tiles at a time into blocks and panels first. Every output entry is one
/// sequential sum of fused multiply-adds over the reduction (partial sums of `unfusedRun` products
/// in builds without the instruction), so a tile's result does not depend on the others in the batch.
enum WinogradProducts {
    /// Rows of the result held in registers at once.
    static let rows = 6
    /// Tiles whose left-operand rows are reused across every block of output columns.
    static let tileBlock = 96
    /// Tiles summed in one run of the kernel gradient before the partial sums go to memory.
    static let reductionBlock = 128
    /// Without fused multiply-add (`VECTOR_FMA`), products summed into a partial sum before it is
    /// added to the total.
    static let unfusedRun = 8

    /// For `r < rows` and `l < lanes`: `c[r * ldc + l] (+)= sum over k < depth of
    /// a[k * aStep + r * aRow] * b[k * bStep + l]`, added to what `c` holds when `accumulate`;
    /// reads whole 16-float rows of `b`.
    @inline(__always)
    static func block(
        rows count: Int, lanes: Int, depth: Int,
        a: UnsafePointer<Float>, aStep: Int, aRow: Int, b: UnsafePointer<Float>, bStep: Int,
        c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool = false
    ) {
        if count == rows && lanes == vectorWidth {
            var c0 = Vector(), c1 = Vector(), c2 = Vector(), c3 = Vector(), c4 = Vector(), c5 = Vector()
            var pa = a, pb = b
            #if VECTOR_FMA
            for _ in 0..<depth {
                let row = load(pb)
                c0 = multiplyAdd(c0, Vector(repeating: pa[0]), row)
                c1 = multiplyAdd(c1, Vector(repeating: pa[aRow]), row)
                c2 = multiplyAdd(c2, Vector(repeating: pa[2 * aRow]), row)
                c3 = multiplyAdd(c3, Vector(repeating: pa[3 * aRow]), row)
                c4 = multiplyAdd(c4, Vector(repeating: pa[4 * aRow]), row)
                c5 = multiplyAdd(c5, Vector(repeating: pa[5 * aRow]), row)
                pa += aStep; pb += bStep
            }
            #else
            // Without a fused multiply-add every product is rounded before it is added; partial
            // sums over runs of `unfusedRun` keep a long reduction's rounding near the fused loop's.
            var k = 0
            while k < depth {
                var p0 = Vector(), p1 = Vector(), p2 = Vector(), p3 = Vector(), p4 = Vector(), p5 = Vector()
                for _ in 0..<min(unfusedRun, depth - k) {
                    let row = load(pb)
                    p0 += Vector(repeating: pa[0]) * row
                    p1 += Vector(repeating: pa[aRow]) * row
                    p2 += Vector(repeating: pa[2 * aRow]) * row
                    p3 += Vector(repeating: pa[3 * aRow]) * row
                    p4 += Vector(repeating: pa[4 * aRow]) * row
                    p5 += Vector(repeating: pa[5 * aRow]) * row
                    pa += aStep; pb += bStep
                }
                c0 += p0; c1 += p1; c2 += p2; c3 += p3; c4 += p4; c5 += p5
                k += unfusedRun
            }
            #endif
            if accumulate {
                c0 += load(c); c1 += load(c + ldc); c2 += load(c + 2 * ldc)
                c3 += load(c + 3 * ldc); c4 += load(c + 4 * ldc); c5 += load(c + 5 * ldc)
            }
            store(c0, c); store(c1, c + ldc); store(c2, c + 2 * ldc)
            store(c3, c + 3 * ldc); store(c4, c + 4 * ldc); store(c5, c + 5 * ldc)
            return
        }
        // Edges: fewer rows or a partial vector of columns, one row at a time.
        for r in 0..<count {
            var sum = Vector()
            var pa = a + r * aRow, pb = b
            #if VECTOR_FMA
            for _ in 0..<depth {
                sum = multiplyAdd(sum, Vector(repeating: pa[0]), load(pb))
                pa += aStep; pb += bStep
            }
            #else
            var k = 0
            while k < depth {
                var partial = Vector()
                for _ in 0..<min(unfusedRun, depth - k) {
                    partial += Vector(repeating: pa[0]) * load(pb)
                    pa += aStep; pb += bStep
                }
                sum += partial
                k += unfusedRun
            }
            #endif
            let target = c + r * ldc
            if accumulate { sum += loadLanes(target, lanes) }
            storeLanes(sum, target, lanes)
        }
    }

    /// Whether `wideBlock` is used: 6 rows by two 16-column panels, 12 accumulators, which needs the
    /// 32 vector registers of AVX-512 (with AVX2's 16 a 16-float vector already takes two, so the
    /// 6 x 16 block holds 12). Each step loads two rows of `b` for six broadcasts of `a` instead of
    /// one, and twelve independent multiply-adds cover the latency of the two FMA pipes.
    #if VECTOR_WIDE_REGISTERS
    static let wide = true
    #else
    static let wide = false
    #endif

    /// `block` for a full block of `rows` rows and 32 columns, the second 16 read from `b2`: the
    /// same sequential fused multiply-adds per output entry, so the same results.
    @inline(__always)
    static func wideBlock(
        depth: Int, a: UnsafePointer<Float>, aStep: Int, aRow: Int,
        b: UnsafePointer<Float>, b2: UnsafePointer<Float>, bStep: Int,
        c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool = false
    ) {
        #if VECTOR_FMA && VECTOR_WIDE_REGISTERS
        var c0 = Vector(), c1 = Vector(), c2 = Vector(), c3 = Vector(), c4 = Vector(), c5 = Vector()
        var d0 = Vector(), d1 = Vector(), d2 = Vector(), d3 = Vector(), d4 = Vector(), d5 = Vector()
        var pa = a, pb = b, pb2 = b2
        for _ in 0..<depth {
            let row = load(pb), row2 = load(pb2)
            let a0 = Vector(repeating: pa[0]), a1 = Vector(repeating: pa[aRow]), a2 = Vector(repeating: pa[2 * aRow])
            c0 = multiplyAdd(c0, a0, row); d0 = multiplyAdd(d0, a0, row2)
            c1 = multiplyAdd(c1, a1, row); d1 = multiplyAdd(d1, a1, row2)
            c2 = multiplyAdd(c2, a2, row); d2 = multiplyAdd(d2, a2, row2)
            let a3 = Vector(repeating: pa[3 * aRow]), a4 = Vector(repeating: pa[4 * aRow]), a5 = Vector(repeating: pa[5 * aRow])
            c3 = multiplyAdd(c3, a3, row); d3 = multiplyAdd(d3, a3, row2)
            c4 = multiplyAdd(c4, a4, row); d4 = multiplyAdd(d4, a4, row2)
            c5 = multiplyAdd(c5, a5, row); d5 = multiplyAdd(d5, a5, row2)
            pa += aStep; pb += bStep; pb2 += bStep
        }
        if accumulate {
            c0 += load(c); c1 += load(c + ldc); c2 += load(c + 2 * ldc)
            c3 += load(c + 3 * ldc); c4 += load(c + 4 * ldc); c5 += load(c + 5 * ldc)
            let e = c + vectorWidth
            d0 += load(e); d1 += load(e + ldc); d2 += load(e + 2 * ldc)
            d3 += load(e + 3 * ldc); d4 += load(e + 4 * ldc); d5 += load(e + 5 * ldc)
        }
        store(c0, c); store(c1, c + ldc); store(c2, c + 2 * ldc)
        store(c3, c + 3 * ldc); store(c4, c + 4 * ldc); store(c5, c + 5 * ldc)
        let e = c + vectorWidth
        store(d0, e); store(d1, e + ldc); store(d2, e + 2 * ldc)
        store(d3, e + 3 * ldc); store(d4, e + 4 * ldc); store(d5, e + 5 * ldc)
        #else
        block(rows: rows, lanes: vectorWidth, depth: depth, a: a, aStep: aStep, aRow: aRow, b: b, bStep: bStep,
              c: c, ldc: ldc, accumulate: accumulate)
        block(rows: rows, lanes: vectorWidth, depth: depth, a: a, aStep: aStep, aRow: aRow, b: b2, bStep: bStep,
              c: c + vectorWidth, ldc: ldc, accumulate: accumulate)
        #endif
    }

    /// `C[t, xi, 0..<n] = sum over k < depth of A[t, xi, k] * B[xi][k, 0..<n]` for every position
    /// `xi` and tile `t`, with `A` rows `[tiles, positions, depth]`, `B[xi]` a `depth x n` matrix in
    /// `Panels` starting `plane` floats after `B[xi - 1]`, and `C` rows `[tiles, positions, n]`: the
    /// forward products (`A = V`, `B = U^T`) and the tile gradient (`A = dM`, `B = U`).
    static func tileProducts(
        positions: Int, tiles: Int, depth: Int, n: Int,
        a: UnsafePointer<Float>, panels: UnsafePointer<Float>, plane: Int, c: UnsafeMutablePointer<Float>
    ) {
        let aRow = positions * depth, cRow = positions * n
        for xi in 0..<positions {
            var t0 = 0
            while t0 < tiles {
                let end = min(t0 + tileBlock, tiles)
                var j = 0
                while j < n {
                    let lanes = min(vectorWidth, n - j)
                    let panel = panels + xi * plane + j * depth
                    // Two full panels at once where the registers allow.
                    let pair = wide && n - j >= 2 * vectorWidth
                    var t = t0
                    while t < end {
                        if pair && end - t >= rows {
                            wideBlock(depth: depth, a: a + t * aRow + xi * depth, aStep: 1, aRow: aRow,
                                      b: panel, b2: panel + vectorWidth * depth, bStep: vectorWidth,
                                      c: c + t * cRow + xi * n + j, ldc: cRow)
                        } else {
                            for p in 0..<(pair ? 2 : 1) {
                                block(rows: min(rows, end - t), lanes: lanes, depth: depth,
                                      a: a + t * aRow + xi * depth, aStep: 1, aRow: aRow,
                                      b: panel + p * vectorWidth * depth, bStep: vectorWidth,
                                      c: c + t * cRow + xi * n + j + p * vectorWidth, ldc: cRow)
                            }
                        }
                        t += rows
                    }
                    j += pair ? 2 * vectorWidth : lanes
                }
                t0 = end
            }
        }
    }

    /// `dU[xi, o, i] = sum over tiles t of dM[t, xi, o] * V[t, xi, i]`, with `dM` rows
    /// `[tiles, positions, outputs]`, `V` rows `[tiles, positions, inputs]` and `dU[xi]` the
    /// `outputs x inputs` matrix (rows `inputs` floats apart) starting `plane` floats after
    /// `dU[xi - 1]`: the transformed kernel's gradient. Both operands run over tiles, a column of
    /// each position's matrix, so `reductionBlock` tiles at a time are first copied into blocks of
    /// 6 output channels and panels of 16 input channels.
    static func kernelGradient(
        positions: Int, tiles: Int, outputs: Int, inputs: Int,
        dm: UnsafePointer<Float>, v: UnsafePointer<Float>, du: UnsafeMutablePointer<Float>, plane: Int
    ) {
        let mRow = positions * outputs, vRow = positions * inputs
        let outputBlocks = (outputs + rows - 1) / rows, inputPanels = (inputs + vectorWidth - 1) / vectorWidth
        let most = min(reductionBlock, max(tiles, 1))
        withUnsafeTemporaryAllocation(of: Float.self, capacity: most * (outputBlocks * rows + inputPanels * vectorWidth)) { buffer in
            let packedM = buffer.baseAddress!, packedV = packedM + most * outputBlocks * rows
            for xi in 0..<positions {
                let target = du + xi * plane
                if tiles == 0 {
                    for o in 0..<outputs { (target + o * inputs).update(repeating: 0, count: inputs) }
                    continue
                }
                var k0 = 0
                while k0 < tiles {
                    let depth = min(most, tiles - k0)
                    for t in 0..<depth {
                        let m = dm + (k0 + t) * mRow + xi * outputs
                        for block in 0..<outputBlocks {
                            let source = m + block * rows, destination = packedM + (block * depth + t) * rows
                            if block * rows + rows <= outputs {
                                destination[0] = source[0]; destination[1] = source[1]; destination[2] = source[2]
                                destination[3] = source[3]; destination[4] = source[4]; destination[5] = source[5]
                            } else {
                                for r in 0..<rows { destination[r] = block * rows + r < outputs ? source[r] : 0 }
                            }
                        }
                        let row = v + (k0 + t) * vRow + xi * inputs
                        var i = 0
                        while i < inputs {
                            let lanes = min(vectorWidth, inputs - i)
                            store(loadLanes(row + i, lanes), packedV + ((i / vectorWidth) * depth + t) * vectorWidth)
                            i += lanes
                        }
                    }
                    var panel = 0
                    while panel < inputPanels {
                        let lanes = min(vectorWidth, inputs - panel * vectorWidth)
                        // Two full panels at once where the registers allow.
                        let pair = wide && inputs - panel * vectorWidth >= 2 * vectorWidth
                        for block in 0..<outputBlocks {
                            let count = min(rows, outputs - block * rows)
                            if pair && count == rows {
                                wideBlock(depth: depth, a: packedM + block * depth * rows, aStep: rows, aRow: 1,
                                          b: packedV + panel * depth * vectorWidth,
                                          b2: packedV + (panel + 1) * depth * vectorWidth, bStep: vectorWidth,
                                          c: target + block * rows * inputs + panel * vectorWidth, ldc: inputs,
                                          accumulate: k0 > 0)
                                continue
                            }
                            for p in panel..<(pair ? panel + 2 : panel + 1) {
                                self.block(rows: count, lanes: p == panel ? lanes : vectorWidth, depth: depth,
                                           a: packedM + block * depth * rows, aStep: rows, aRow: 1,
                                           b: packedV + p * depth * vectorWidth, bStep: vectorWidth,
                                           c: target + block * rows * inputs + p * vectorWidth, ldc: inputs,
                                           accumulate: k0 > 0)
                            }
                        }
                        panel += pair ? 2 : 1
                    }
                    k0 += depth
                }
            }
        }
    }
}
