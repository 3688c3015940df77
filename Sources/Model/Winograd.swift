/// Winograd's minimal filtering F(2x2, 3x3) for the 3x3, stride-1, padding-1 convolutions
/// (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016).
///
/// The output is cut into 2x2 tiles; tile `t` reads the 4x4 input patch `d` starting one pixel
/// above and left of it (zeros outside the image) and computes `Y = A^T [(G g G^T) . (B^T d B)] A`
/// for every channel pair. Each of the 16 positions `xi` of the 4x4 transformed domain is one GEMM
/// over all tiles, `M[xi] (T x out) = V[xi] (T x in) * U[xi] (in x out)`: 16 multiplies per 2x2
/// outputs and channel pair instead of 36, so the GEMMs do 2.25x fewer operations than im2col's.
///
/// Layouts: activations NHWC; weight `[out, 3, 3, in]`; transformed input `V[16, T, in]`,
/// transformed kernel `U[16, out, in]` (the weight's own order), products `M[16, T, out]`, tiles
/// `t = (n, ty, tx)` in row-major order with `ceil(H/2) x ceil(W/2)` tiles per image.
///
/// The backward pass uses the same machinery: `dL/dinput` is this convolution of `dy` with the
/// flipped, transposed kernel; `dL/dweight = G^T [sum_t V_t . (A dY_t A^T)] G`, again 16 GEMMs.
/// The transforms work on 16 channels at a time (`Vector`), with a zero-padded tail.
enum Winograd {
    static func tileCount(batch: Int, height: Int, width: Int) -> Int {
        batch * ((height + 1) / 2) * ((width + 1) / 2)
    }

    /// Calls `body(t, n, y, x)` for every tile in order: its index, its image and its top-left
    /// output pixel.
    @inline(__always)
    static func forEachTile(batch: Int, height: Int, width: Int, _ body: (Int, Int, Int, Int) -> Void) {
        var t = 0
        for n in 0..<batch {
            for y in stride(from: 0, to: height, by: 2) {
                for x in stride(from: 0, to: width, by: 2) {
                    body(t, n, y, x)
                    t += 1
                }
            }
        }
    }

    /// Whether a convolution with `window` runs as F(2x2, 3x3): 3x3, stride 1, padding 1.
    static func applies(to window: Window) -> Bool {
        window == Window(kernel: 3, stride: 1, padding: 1)
    }

    /// The workspace of a pass: 16 positions, tile rows of `in` channels.
    static func layout(batch: Int, height: Int, width: Int, inputChannels: Int, outputChannels: Int) -> WinogradWorkspace {
        WinogradWorkspace(positions: 16, tiles: tileCount(batch: batch, height: height, width: width),
                          rowWidth: inputChannels, outputChannels: outputChannels, zeroCount: max(inputChannels, outputChannels))
    }

    /// `output [N, H, W, out]` = the convolution of `input [N, H, W, in]` with `weight`
    /// (`[out, 3, 3, in]`, or with `flipped` the kernel of the input gradient: `weight` is then the
    /// forward layer's `[in, 3, 3, out]` and is read rotated by 180 degrees and transposed). No bias.
    static func convolve(
        output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        flipped: Bool, batch: Int, height: Int, width: Int, inputChannels: Int, outputChannels: Int,
        workspace: UnsafeMutablePointer<Float>
    ) {
        let tiles = tileCount(batch: batch, height: height, width: width)
        let (v, m, u, zeros) = layout(batch: batch, height: height, width: width, inputChannels: inputChannels,
                                      outputChannels: outputChannels).regions(workspace)
        // The forward kernel is [out, in] per position; the flipped one comes from the forward
        // layer's [in, out] weight, already in GEMM order.
        transformKernel(u, weight: weight, flipped: flipped,
                        outputs: flipped ? inputChannels : outputChannels, inputs: flipped ? outputChannels : inputChannels)
        transformInput(v, image: input, zeros: zeros, batch: batch, height: height, width: width, channels: inputChannels)
        gemmEach(count: 16, transposeA: false, transposeB: !flipped, m: tiles, n: outputChannels, k: inputChannels,
                 a: v, lda: inputChannels, b: u, ldb: flipped ? outputChannels : inputChannels, c: m, ldc: outputChannels)
        transformOutput(output, products: m, batch: batch, height: height, width: width, channels: outputChannels)
    }

    /// Adds `dL/dweight` (`[out, 3, 3, in]`) of the convolution of `input [N, H, W, in]` given
    /// `outputGradient [N, H, W, out]`.
    static func accumulateWeightGradient(
        _ weightGradient: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
        batch: Int, height: Int, width: Int, inputChannels: Int, outputChannels: Int,
        workspace: UnsafeMutablePointer<Float>
    ) {
        let tiles = tileCount(batch: batch, height: height, width: width)
        let (v, dm, du, zeros) = layout(batch: batch, height: height, width: width, inputChannels: inputChannels,
                                        outputChannels: outputChannels).regions(workspace)
        transformInput(v, image: input, zeros: zeros, batch: batch, height: height, width: width, channels: inputChannels)
        transformOutputGradient(dm, gradient: outputGradient, zeros: zeros, batch: batch, height: height, width: width,
                                channels: outputChannels)
        // dU[xi] (out x in) = dM[xi]^T (out x T) * V[xi] (T x in)
        gemmEach(count: 16, transposeA: true, transposeB: false, m: outputChannels, n: inputChannels, k: tiles,
                 a: dm, lda: outputChannels, b: v, ldb: inputChannels, c: du, ldc: inputChannels)
        accumulateKernelGradient(weightGradient, transformed: du, outputs: outputChannels, inputs: inputChannels)
    }

    // MARK: - Transforms

    /// `V[xi, t, c] = (B^T d_t B)[xi]` for every tile's 4x4 input patch `d_t`.
    static func transformInput(
        _ v: UnsafeMutablePointer<Float>, image: UnsafePointer<Float>, zeros: UnsafePointer<Float>,
        batch: Int, height: Int, width: Int, channels: Int
    ) {
        let plane = tileCount(batch: batch, height: height, width: width) * channels
        withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: 16) { source in
          withUnsafeTemporaryAllocation(of: Vector.self, capacity: 16) { patch in
            forEachTile(batch: batch, height: height, width: width) { t, n, y0, x0 in
                let base = image + n * height * width * channels
                for i in 0..<4 {
                    let y = y0 - 1 + i
                    for j in 0..<4 {
                        let x = x0 - 1 + j
                        source[i * 4 + j] = (y >= 0 && y < height && x >= 0 && x < width)
                            ? base + (y * width + x) * channels : zeros
                    }
                }
                let destination = v + t * channels
                var c = 0
                while c < channels {
                    let lanes = min(vectorWidth, channels - c)
                    for k in 0..<16 { patch[k] = loadLanes(source[k] + c, lanes) }
                    // Down the columns: B^T d.
                    for j in 0..<4 {
                        let d0 = patch[j], d1 = patch[4 + j], d2 = patch[8 + j], d3 = patch[12 + j]
                        patch[j] = d0 - d2
                        patch[4 + j] = d1 + d2
                        patch[8 + j] = d2 - d1
                        patch[12 + j] = d1 - d3
                    }
                    // Along the rows: (B^T d) B.
                    for i in 0..<4 {
                        let e0 = patch[4 * i], e1 = patch[4 * i + 1], e2 = patch[4 * i + 2], e3 = patch[4 * i + 3]
                        let row = destination + 4 * i * plane + c
                        storeLanes(e0 - e2, row, lanes)
                        storeLanes(e1 + e2, row + plane, lanes)
                        storeLanes(e2 - e1, row + 2 * plane, lanes)
                        storeLanes(e1 - e3, row + 3 * plane, lanes)
                    }
                    c += lanes
                }
            }
          }
        }
    }

    /// `output` (2x2 per tile, clipped at the image's edge) `= A^T M_t A` from `M[xi, t, c]`.
    static func transformOutput(
        _ output: UnsafeMutablePointer<Float>, products m: UnsafePointer<Float>,
        batch: Int, height: Int, width: Int, channels: Int
    ) {
        let plane = tileCount(batch: batch, height: height, width: width) * channels
        storeOutputTiles(output, batch: batch, height: height, width: width, channels: channels) { t, c, lanes in
            let source = m + t * channels + c
            // Down each column j of M: A^T gives a top and a bottom row; then along the rows.
            @inline(__always) func column(_ j: Int) -> (Vector, Vector) {
                let m0 = loadLanes(source + j * plane, lanes), m1 = loadLanes(source + (4 + j) * plane, lanes)
                let m2 = loadLanes(source + (8 + j) * plane, lanes), m3 = loadLanes(source + (12 + j) * plane, lanes)
                return (m0 + m1 + m2, m1 - m2 - m3)
            }
            let a0 = column(0), a1 = column(1), a2 = column(2), a3 = column(3)
            return (a0.0 + a1.0 + a2.0, a1.0 - a2.0 - a3.0, a0.1 + a1.1 + a2.1, a1.1 - a2.1 - a3.1)
        }
    }

    /// `dM[xi, t, c] = (A dY_t A^T)[xi]` for every tile's 2x2 output gradient (zeros outside the image).
    static func transformOutputGradient(
        _ dm: UnsafeMutablePointer<Float>, gradient: UnsafePointer<Float>, zeros: UnsafePointer<Float>,
        batch: Int, height: Int, width: Int, channels: Int
    ) {
        let plane = tileCount(batch: batch, height: height, width: width) * channels
        loadGradientTiles(gradient, zeros: zeros, batch: batch, height: height, width: width, channels: channels) {
            t, c, lanes, g00, g01, g10, g11 in
            // Down the columns: A [g0; g1] = [g0, g0 + g1, g0 - g1, -g1]; then along the rows.
            @inline(__always) func row(_ i: Int, _ r0: Vector, _ r1: Vector) {
                let target = dm + t * channels + c + 4 * i * plane
                storeLanes(r0, target, lanes)
                storeLanes(r0 + r1, target + plane, lanes)
                storeLanes(r0 - r1, target + 2 * plane, lanes)
                storeLanes(-r1, target + 3 * plane, lanes)
            }
            row(0, g00, g01)
            row(1, g00 + g10, g01 + g11)
            row(2, g00 - g10, g01 - g11)
            row(3, -g10, -g11)
        }
    }

    /// For every 2x2 output tile `t` and slice of up to 16 channels from `c`, stores the four
    /// vectors `body(t, c, lanes)` returns (top-left, top-right, bottom-left, bottom-right pixel)
    /// where they fall inside the output.
    @inline(__always)
    static func storeOutputTiles(
        _ output: UnsafeMutablePointer<Float>, batch: Int, height: Int, width: Int, channels: Int,
        _ body: (Int, Int, Int) -> (Vector, Vector, Vector, Vector)
    ) {
        forEachTile(batch: batch, height: height, width: width) { t, n, y, x in
            let secondRow = y + 1 < height, secondColumn = x + 1 < width
            let topLeft = output + ((n * height + y) * width + x) * channels
            var c = 0
            while c < channels {
                let lanes = min(vectorWidth, channels - c)
                let (y00, y01, y10, y11) = body(t, c, lanes)
                storeLanes(y00, topLeft + c, lanes)
                if secondColumn { storeLanes(y01, topLeft + channels + c, lanes) }
                if secondRow {
                    let below = topLeft + width * channels
                    storeLanes(y10, below + c, lanes)
                    if secondColumn { storeLanes(y11, below + channels + c, lanes) }
                }
                c += lanes
            }
        }
    }

    /// For every 2x2 output tile `t` and slice of up to 16 channels from `c`, calls
    /// `body(t, c, lanes, g00, g01, g10, g11)` with the tile's four gradient vectors (zeros past the edge).
    @inline(__always)
    static func loadGradientTiles(
        _ gradient: UnsafePointer<Float>, zeros: UnsafePointer<Float>, batch: Int, height: Int, width: Int, channels: Int,
        _ body: (Int, Int, Int, Vector, Vector, Vector, Vector) -> Void
    ) {
        forEachTile(batch: batch, height: height, width: width) { t, n, y, x in
            let secondRow = y + 1 < height, secondColumn = x + 1 < width
            let p00 = gradient + ((n * height + y) * width + x) * channels
            let p01 = secondColumn ? p00 + channels : zeros
            let p10 = secondRow ? p00 + width * channels : zeros
            let p11 = secondRow && secondColumn ? p00 + (width + 1) * channels : zeros
            var c = 0
            while c < channels {
                let lanes = min(vectorWidth, channels - c)
                body(t, c, lanes, loadLanes(p00 + c, lanes), loadLanes(p01 + c, lanes),
                     loadLanes(p10 + c, lanes), loadLanes(p11 + c, lanes))
                c += lanes
            }
        }
    }

    /// `U[xi, o, i] = (G g G^T)[xi]` with `g[ky][kx] = weight[o, ky, kx, i]` for a weight
    /// `[outputs, 3, 3, inputs]`. With `flipped`, the transform of the kernel rotated by 180
    /// degrees: rotating `g` reverses the rows of `G g` to the order 3, 1, 2, 0 (the middle two
    /// are symmetric), so it is the same transform stored at permuted positions `xi`.
    static func transformKernel(
        _ u: UnsafeMutablePointer<Float>, weight: UnsafePointer<Float>, flipped: Bool, outputs: Int, inputs: Int
    ) {
        let plane = outputs * inputs
        let rows = flipped ? (3, 1, 2, 0) : (0, 1, 2, 3)
        for o in 0..<outputs {
            let kernel = weight + o * 9 * inputs
            var c = 0
            while c < inputs {
                let lanes = min(vectorWidth, inputs - c)
                @inline(__always) func g(_ ky: Int, _ kx: Int) -> Vector { loadLanes(kernel + (ky * 3 + kx) * inputs + c, lanes) }
                // Down the columns, G g: g0, (g0 + g1 + g2)/2, (g0 - g1 + g2)/2, g2.
                @inline(__always) func column(_ kx: Int) -> (Vector, Vector, Vector, Vector) {
                    let g0 = g(0, kx), g1 = g(1, kx), g2 = g(2, kx)
                    return (g0, 0.5 * (g0 + g1 + g2), 0.5 * (g0 - g1 + g2), g2)
                }
                let c0 = column(0), c1 = column(1), c2 = column(2)
                // Along the rows, times G^T.
                @inline(__always) func row(_ i: Int, _ g0: Vector, _ g1: Vector, _ g2: Vector) {
                    let destination = u + o * inputs + c
                    storeLanes(g0, destination + (4 * i + rows.0) * plane, lanes)
                    storeLanes(0.5 * (g0 + g1 + g2), destination + (4 * i + rows.1) * plane, lanes)
                    storeLanes(0.5 * (g0 - g1 + g2), destination + (4 * i + rows.2) * plane, lanes)
                    storeLanes(g2, destination + (4 * i + rows.3) * plane, lanes)
                }
                row(rows.0, c0.0, c1.0, c2.0)
                row(rows.1, c0.1, c1.1, c2.1)
                row(rows.2, c0.2, c1.2, c2.2)
                row(rows.3, c0.3, c1.3, c2.3)
                c += lanes
            }
        }
    }

    /// `weightGradient[o, ky, kx, i] += (G^T dU G)[ky][kx]` with `dU[xi, o, i]`.
    static func accumulateKernelGradient(
        _ weightGradient: UnsafeMutablePointer<Float>, transformed du: UnsafePointer<Float>, outputs: Int, inputs: Int
    ) {
        let plane = outputs * inputs
        for o in 0..<outputs {
            let kernel = weightGradient + o * 9 * inputs
            var c = 0
            while c < inputs {
                let lanes = min(vectorWidth, inputs - c)
                let source = du + o * inputs + c
                // G^T u = [u0 + (u1 + u2)/2, (u1 - u2)/2, (u1 + u2)/2 + u3]: down the columns, then along the rows.
                @inline(__always) func column(_ j: Int) -> (Vector, Vector, Vector) {
                    let u0 = loadLanes(source + j * plane, lanes), u1 = loadLanes(source + (4 + j) * plane, lanes)
                    let u2 = loadLanes(source + (8 + j) * plane, lanes), u3 = loadLanes(source + (12 + j) * plane, lanes)
                    return (u0 + 0.5 * (u1 + u2), 0.5 * (u1 - u2), 0.5 * (u1 + u2) + u3)
                }
                let c0 = column(0), c1 = column(1), c2 = column(2), c3 = column(3)
                @inline(__always) func row(_ ky: Int, _ u0: Vector, _ u1: Vector, _ u2: Vector, _ u3: Vector) {
                    let destination = kernel + ky * 3 * inputs + c
                    storeLanes(loadLanes(destination, lanes) + (u0 + 0.5 * (u1 + u2)), destination, lanes)
                    storeLanes(loadLanes(destination + inputs, lanes) + 0.5 * (u1 - u2), destination + inputs, lanes)
                    storeLanes(loadLanes(destination + 2 * inputs, lanes) + (0.5 * (u1 + u2) + u3),
                               destination + 2 * inputs, lanes)
                }
                row(0, c0.0, c1.0, c2.0, c3.0)
                row(1, c0.1, c1.1, c2.1, c3.1)
                row(2, c0.2, c1.2, c2.2, c3.2)
                c += lanes
            }
        }
    }
}

/// The first `lanes` floats at `p` (all 16 when `lanes == vectorWidth`), the rest zero.
@inline(__always)
func loadLanes(_ p: UnsafePointer<Float>, _ lanes: Int) -> Vector {
    if lanes == vectorWidth { return load(p) }
    var v = Vector()
    for i in 0..<lanes { v[i] = p[i] }
    return v
}

/// Stores the first `lanes` lanes of `v` at `p`.
@inline(__always)
func storeLanes(_ v: Vector, _ p: UnsafeMutablePointer<Float>, _ lanes: Int) {
    if lanes == vectorWidth { store(v, p); return }
    for i in 0..<lanes { p[i] = v[i] }
}

/// Winograd F(2x2, 2x2) for the 4x4, stride-2, padding-1 convolutions (the encoder's downsampling
/// layers, and through their adjoint the decoder's transposed convolutions).
///
/// Per axis, output `y[i] = sum_k x[2i - 1 + k] g[k]` reads pixels `2i - 1 .. 2i + 2`. Pairing pixels
/// `2I - 1` and `2I` into block `I` makes it `y[i] = z[i] . h[0] + z[i + 1] . h[1]` with
/// `h[a] = (g[2a], g[2a + 1])`: a 2-tap, stride-1 convolution over blocks of `4 * in` channels
/// (phase `p, q` and channel). F(2, 2) computes two outputs from three blocks with three products
/// (`B^T = [1 -1 0; 0 1 0; 0 -1 1]`, `G = [1 0; 1 1; 0 1]`, `A^T = [1 1 0; 0 1 1]`), so a 2x2
/// output tile costs 9 products over `4 * in` channels instead of 64 over `in`: 1.78x fewer
/// multiply-adds than im2col. Layouts: `V[9, T, 4 * in]` (block channel `(p * 2 + q) * in + c`),
/// `U[9, out, 4 * in]`, `M[9, T, out]`; tiles as in `Winograd`, over the output.
enum StridedWinograd {
    /// Tiles of an output `outputHeight x outputWidth`, for `batch` images.
    static func tileCount(batch: Int, outputHeight: Int, outputWidth: Int) -> Int {
        Winograd.tileCount(batch: batch, height: outputHeight, width: outputWidth)
    }

    /// Whether a convolution with `window` between these channel counts runs as F(2x2, 2x2): 4x4,
    /// stride 2, padding 1, and both counts fill a 16-float vector (with 3 image channels im2col
    /// measured faster: the default model trains at 455 instead of 402 images/s).
    static func applies(to window: Window, channels: Int, _ otherChannels: Int) -> Bool {
        window == Window(kernel: 4, stride: 2, padding: 1) && min(channels, otherChannels) >= vectorWidth
    }

    /// The workspace of a pass: 9 positions, block rows of `4 * in` channels.
    static func layout(batch: Int, outputHeight: Int, outputWidth: Int, inputChannels: Int, outputChannels: Int) -> WinogradWorkspace {
        WinogradWorkspace(positions: 9, tiles: tileCount(batch: batch, outputHeight: outputHeight, outputWidth: outputWidth),
                          rowWidth: 4 * inputChannels, outputChannels: outputChannels,
                          zeroCount: max(inputChannels, outputChannels))
    }

    /// `output [N, Ho, Wo, out]` = the convolution of `input [N, H, W, in]` with `weight` `[out, 4, 4, in]`. No bias.
    static func convolve(
        output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        batch: Int, height: Int, width: Int, outputHeight: Int, outputWidth: Int,
        inputChannels: Int, outputChannels: Int, workspace: UnsafeMutablePointer<Float>
    ) {
        let tiles = tileCount(batch: batch, outputHeight: outputHeight, outputWidth: outputWidth)
        let (v, m, u, zeros) = layout(batch: batch, outputHeight: outputHeight, outputWidth: outputWidth,
                                      inputChannels: inputChannels, outputChannels: outputChannels).regions(workspace)
        let blockChannels = 4 * inputChannels
        transformKernel(u, weight: weight, outputs: outputChannels, inputs: inputChannels)
        transformInput(v, image: input, zeros: zeros, batch: batch, height: height, width: width,
                       outputHeight: outputHeight, outputWidth: outputWidth, channels: inputChannels)
        gemmEach(count: 9, transposeA: false, transposeB: true, m: tiles, n: outputChannels, k: blockChannels,
                 a: v, lda: blockChannels, b: u, ldb: blockChannels, c: m, ldc: outputChannels)
        transformOutput(output, products: m, batch: batch, height: outputHeight, width: outputWidth, channels: outputChannels)
    }

    /// Adds `dL/dweight` (`[out, 4, 4, in]`) given `input [N, H, W, in]` and `outputGradient [N, Ho, Wo, out]`.
    static func accumulateWeightGradient(
        _ weightGradient: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
        batch: Int, height: Int, width: Int, outputHeight: Int, outputWidth: Int,
        inputChannels: Int, outputChannels: Int, workspace: UnsafeMutablePointer<Float>
    ) {
        let tiles = tileCount(batch: batch, outputHeight: outputHeight, outputWidth: outputWidth)
        let (v, dm, du, zeros) = layout(batch: batch, outputHeight: outputHeight, outputWidth: outputWidth,
                                      inputChannels: inputChannels, outputChannels: outputChannels).regions(workspace)
        let blockChannels = 4 * inputChannels
        transformInput(v, image: input, zeros: zeros, batch: batch, height: height, width: width,
                       outputHeight: outputHeight, outputWidth: outputWidth, channels: inputChannels)
        transformOutputGradient(dm, gradient: outputGradient, zeros: zeros, batch: batch,
                                height: outputHeight, width: outputWidth, channels: outputChannels)
        // dU[xi] (out x 4in) = dM[xi]^T (out x T) * V[xi] (T x 4in)
        gemmEach(count: 9, transposeA: true, transposeB: false, m: outputChannels, n: blockChannels, k: tiles,
                 a: dm, lda: outputChannels, b: v, ldb: blockChannels, c: du, ldc: blockChannels)
        accumulateKernelGradient(weightGradient, transformed: du, outputs: outputChannels, inputs: inputChannels)
    }

    /// WRITES `dL/dinput [N, H, W, in]` given `outputGradient [N, Ho, Wo, out]`: the adjoint of
    /// `convolve`, `dV[xi] = dM[xi] U[xi]` scattered back through `B`.
    static func inputGradient(
        _ inputGradient: UnsafeMutablePointer<Float>, outputGradient: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        batch: Int, height: Int, width: Int, outputHeight: Int, outputWidth: Int,
        inputChannels: Int, outputChannels: Int, workspace: UnsafeMutablePointer<Float>
    ) {
        let tiles = tileCount(batch: batch, outputHeight: outputHeight, outputWidth: outputWidth)
        let (dv, dm, u, zeros) = layout(batch: batch, outputHeight: outputHeight, outputWidth: outputWidth,
                                      inputChannels: inputChannels, outputChannels: outputChannels).regions(workspace)
        let blockChannels = 4 * inputChannels
        transformKernel(u, weight: weight, outputs: outputChannels, inputs: inputChannels)
        transformOutputGradient(dm, gradient: outputGradient, zeros: zeros, batch: batch,
                                height: outputHeight, width: outputWidth, channels: outputChannels)
        // dV[xi] (T x 4in) = dM[xi] (T x out) * U[xi] (out x 4in)
        gemmEach(count: 9, transposeA: false, transposeB: false, m: tiles, n: blockChannels, k: outputChannels,
                 a: dm, lda: outputChannels, b: u, ldb: blockChannels, c: dv, ldc: blockChannels)
        inputGradient.update(repeating: 0, count: batch * height * width * inputChannels)
        scatterInputGradient(inputGradient, transformed: dv, batch: batch, height: height, width: width,
                             outputHeight: outputHeight, outputWidth: outputWidth, channels: inputChannels)
    }

    // MARK: - Transforms

    /// The pixel of block `(bi, bj)` (0...2 within the tile), phase `(p, q)`, of the tile whose top-left
    /// output is `(y, x)`: row `2 * (y + bi) - 1 + p`, column `2 * (x + bj) - 1 + q`; nil outside the image.
    @inline(__always)
    static func pixelOffset(y: Int, x: Int, bi: Int, bj: Int, p: Int, q: Int, height: Int, width: Int) -> Int? {
        let row = 2 * (y + bi) - 1 + p, column = 2 * (x + bj) - 1 + q
        guard row >= 0, row < height, column >= 0, column < width else { return nil }
        return row * width + column
    }

    /// `V[xi, t, (p, q, c)] = (B^T d B)[xi]` over the tile's 3x3 blocks, for each phase and channel.
    static func transformInput(
        _ v: UnsafeMutablePointer<Float>, image: UnsafePointer<Float>, zeros: UnsafePointer<Float>,
        batch: Int, height: Int, width: Int, outputHeight: Int, outputWidth: Int, channels: Int
    ) {
        let blockChannels = 4 * channels
        let plane = tileCount(batch: batch, outputHeight: outputHeight, outputWidth: outputWidth) * blockChannels
        withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: 9) { source in
            Winograd.forEachTile(batch: batch, height: outputHeight, width: outputWidth) { t, n, y, x in
                let base = image + n * height * width * channels
                for phase in 0..<4 {
                    let (p, q) = (phase / 2, phase % 2)
                    for bi in 0..<3 {
                        for bj in 0..<3 {
                            source[bi * 3 + bj] = pixelOffset(y: y, x: x, bi: bi, bj: bj, p: p, q: q, height: height, width: width)
                                .map { base + $0 * channels } ?? zeros
                        }
                    }
                    let destination = v + t * blockChannels + phase * channels
                    var c = 0
                    while c < channels {
                        let lanes = min(vectorWidth, channels - c)
                        // Down the columns, B^T: d0 - d1, d1, d2 - d1.
                        @inline(__always) func column(_ j: Int) -> (Vector, Vector, Vector) {
                            let d0 = loadLanes(source[j] + c, lanes), d1 = loadLanes(source[3 + j] + c, lanes)
                            let d2 = loadLanes(source[6 + j] + c, lanes)
                            return (d0 - d1, d1, d2 - d1)
                        }
                        let c0 = column(0), c1 = column(1), c2 = column(2)
                        // Along the rows, B.
                        @inline(__always) func row(_ i: Int, _ e0: Vector, _ e1: Vector, _ e2: Vector) {
                            let target = destination + 3 * i * plane + c
                            storeLanes(e0 - e1, target, lanes)
                            storeLanes(e1, target + plane, lanes)
                            storeLanes(e2 - e1, target + 2 * plane, lanes)
                        }
                        row(0, c0.0, c1.0, c2.0)
                        row(1, c0.1, c1.1, c2.1)
                        row(2, c0.2, c1.2, c2.2)
                        c += lanes
                    }
                }
            }
        }
    }

    /// Adds `B dV_t B^T` of every tile back into the pixels its blocks came from (the adjoint of
    /// `transformInput`); pixels outside the image are dropped.
    static func scatterInputGradient(
        _ image: UnsafeMutablePointer<Float>, transformed dv: UnsafePointer<Float>,
        batch: Int, height: Int, width: Int, outputHeight: Int, outputWidth: Int, channels: Int
    ) {
        let blockChannels = 4 * channels
        let plane = tileCount(batch: batch, outputHeight: outputHeight, outputWidth: outputWidth) * blockChannels
        Winograd.forEachTile(batch: batch, height: outputHeight, width: outputWidth) { t, n, y, x in
            let base = image + n * height * width * channels
            for phase in 0..<4 {
                let (p, q) = (phase / 2, phase % 2)
                let source = dv + t * blockChannels + phase * channels
                var c = 0
                while c < channels {
                    let lanes = min(vectorWidth, channels - c)
                    // B v = (v0, -v0 + v1 - v2, v2), down the columns and then along the rows.
                    @inline(__always) func column(_ j: Int) -> (Vector, Vector, Vector) {
                        let v0 = loadLanes(source + j * plane + c, lanes), v1 = loadLanes(source + (3 + j) * plane + c, lanes)
                        let v2 = loadLanes(source + (6 + j) * plane + c, lanes)
                        return (v0, v1 - v0 - v2, v2)
                    }
                    let c0 = column(0), c1 = column(1), c2 = column(2)
                    @inline(__always) func add(_ bi: Int, _ bj: Int, _ value: Vector) {
                        guard let offset = pixelOffset(y: y, x: x, bi: bi, bj: bj, p: p, q: q, height: height, width: width)
                        else { return }
                        let target = base + offset * channels + c
                        storeLanes(loadLanes(target, lanes) + value, target, lanes)
                    }
                    @inline(__always) func row(_ bi: Int, _ e0: Vector, _ e1: Vector, _ e2: Vector) {
                        add(bi, 0, e0)
                        add(bi, 1, e1 - e0 - e2)
                        add(bi, 2, e2)
                    }
                    row(0, c0.0, c1.0, c2.0)
                    row(1, c0.1, c1.1, c2.1)
                    row(2, c0.2, c1.2, c2.2)
                    c += lanes
                }
            }
        }
    }

    /// `output` (2x2 per tile, clipped at the edge) `= A^T M_t A` from `M[xi, t, c]`.
    static func transformOutput(
        _ output: UnsafeMutablePointer<Float>, products m: UnsafePointer<Float>,
        batch: Int, height: Int, width: Int, channels: Int
    ) {
        let plane = Winograd.tileCount(batch: batch, height: height, width: width) * channels
        Winograd.storeOutputTiles(output, batch: batch, height: height, width: width, channels: channels) { t, c, lanes in
            let source = m + t * channels + c
            // Down each column: A^T = (m0 + m1, m1 + m2); then along the rows.
            @inline(__always) func column(_ j: Int) -> (Vector, Vector) {
                let m0 = loadLanes(source + j * plane, lanes), m1 = loadLanes(source + (3 + j) * plane, lanes)
                let m2 = loadLanes(source + (6 + j) * plane, lanes)
                return (m0 + m1, m1 + m2)
            }
            let a0 = column(0), a1 = column(1), a2 = column(2)
            return (a0.0 + a1.0, a1.0 + a2.0, a0.1 + a1.1, a1.1 + a2.1)
        }
    }

    /// `dM[xi, t, c] = (A dY_t A^T)[xi]`, `A y = (y0, y0 + y1, y1)`, zeros outside the output.
    static func transformOutputGradient(
        _ dm: UnsafeMutablePointer<Float>, gradient: UnsafePointer<Float>, zeros: UnsafePointer<Float>,
        batch: Int, height: Int, width: Int, channels: Int
    ) {
        let plane = Winograd.tileCount(batch: batch, height: height, width: width) * channels
        Winograd.loadGradientTiles(gradient, zeros: zeros, batch: batch, height: height, width: width, channels: channels) {
            t, c, lanes, g00, g01, g10, g11 in
            @inline(__always) func row(_ i: Int, _ r0: Vector, _ r1: Vector) {
                let target = dm + t * channels + c + 3 * i * plane
                storeLanes(r0, target, lanes)
                storeLanes(r0 + r1, target + plane, lanes)
                storeLanes(r1, target + 2 * plane, lanes)
            }
            row(0, g00, g01)
            row(1, g00 + g10, g01 + g11)
            row(2, g10, g11)
        }
    }

    /// `U[xi, o, (p, q, c)] = (G h G^T)[xi]` with `h[a][b] = weight[o, 2a + p, 2b + q, c]`, `G h = (h0, h0 + h1, h1)`.
    static func transformKernel(_ u: UnsafeMutablePointer<Float>, weight: UnsafePointer<Float>, outputs: Int, inputs: Int) {
        let blockChannels = 4 * inputs
        let plane = outputs * blockChannels
        for o in 0..<outputs {
            for phase in 0..<4 {
                let (p, q) = (phase / 2, phase % 2)
                let kernel = weight + o * 16 * inputs
                let destination = u + o * blockChannels + phase * inputs
                var c = 0
                while c < inputs {
                    let lanes = min(vectorWidth, inputs - c)
                    @inline(__always) func h(_ a: Int, _ b: Int) -> Vector {
                        loadLanes(kernel + ((2 * a + p) * 4 + 2 * b + q) * inputs + c, lanes)
                    }
                    @inline(__always) func row(_ i: Int, _ h0: Vector, _ h1: Vector) {
                        let target = destination + 3 * i * plane + c
                        storeLanes(h0, target, lanes)
                        storeLanes(h0 + h1, target + plane, lanes)
                        storeLanes(h1, target + 2 * plane, lanes)
                    }
                    let h00 = h(0, 0), h01 = h(0, 1), h10 = h(1, 0), h11 = h(1, 1)
                    row(0, h00, h01)
                    row(1, h00 + h10, h01 + h11)
                    row(2, h10, h11)
                    c += lanes
                }
            }
        }
    }

    /// `weightGradient[o, 2a + p, 2b + q, c] += (G^T dU G)[a][b]` with `G^T u = (u0 + u1, u1 + u2)`.
    static func accumulateKernelGradient(
        _ weightGradient: UnsafeMutablePointer<Float>, transformed du: UnsafePointer<Float>, outputs: Int, inputs: Int
    ) {
        let blockChannels = 4 * inputs
        let plane = outputs * blockChannels
        for o in 0..<outputs {
            for phase in 0..<4 {
                let (p, q) = (phase / 2, phase % 2)
                let kernel = weightGradient + o * 16 * inputs
                let source = du + o * blockChannels + phase * inputs
                var c = 0
                while c < inputs {
                    let lanes = min(vectorWidth, inputs - c)
                    @inline(__always) func column(_ j: Int) -> (Vector, Vector) {
                        let u0 = loadLanes(source + j * plane + c, lanes), u1 = loadLanes(source + (3 + j) * plane + c, lanes)
                        let u2 = loadLanes(source + (6 + j) * plane + c, lanes)
                        return (u0 + u1, u1 + u2)
                    }
                    let c0 = column(0), c1 = column(1), c2 = column(2)
                    @inline(__always) func add(_ a: Int, _ b: Int, _ value: Vector) {
                        let target = kernel + ((2 * a + p) * 4 + 2 * b + q) * inputs + c
                        storeLanes(loadLanes(target, lanes) + value, target, lanes)
                    }
                    add(0, 0, c0.0 + c1.0)
                    add(0, 1, c1.0 + c2.0)
                    add(1, 0, c0.1 + c1.1)
                    add(1, 1, c1.1 + c2.1)
                    c += lanes
                }
            }
        }
    }
}

/// The workspace of one Winograd pass over `tiles` tiles with `positions` transformed positions:
/// the transformed tiles `[positions, tiles, rowWidth]`, the products `[positions, tiles, out]`,
/// the transformed kernel `[positions, out, rowWidth]` and a row of zeros that stands for pixels
/// outside the image.
struct WinogradWorkspace {
    let positions: Int, tiles: Int, rowWidth: Int, outputChannels: Int, zeroCount: Int

    var count: Int {
        positions * tiles * (rowWidth + outputChannels) + positions * outputChannels * rowWidth + zeroCount
    }

    /// `workspace` cut into the tiles, the products, the kernel and the zeros (which this sets).
    func regions(
        _ workspace: UnsafeMutablePointer<Float>
    ) -> (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) {
        let products = workspace + positions * tiles * rowWidth
        let kernel = products + positions * tiles * outputChannels
        let zeros = kernel + positions * outputChannels * rowWidth
        zeros.update(repeating: 0, count: zeroCount)
        return (workspace, products, kernel, zeros)
    }
}
