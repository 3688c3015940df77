/// Winograd's minimal filtering F(4x4, 3x3) for the 3x3, stride-1, padding-1 convolutions
/// (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016; interpolation
/// points 0, 1, -1, 2, -2 and infinity).
///
/// The output is cut into 4x4 tiles; tile `t` reads the 6x6 input patch `d` starting one pixel
/// above and left of it (zeros outside the image) and computes `Y = A^T [(G g G^T) . (B^T d B)] A`
/// for every channel pair. Each of the 36 positions `xi` of the 6x6 transformed domain is one GEMM
/// over all tiles, `M[xi] (T x out) = V[xi] (T x in) * U[xi]^T`: 36 multiplies per 4x4 outputs and
/// channel pair instead of 144, so the GEMMs do 4x fewer operations than im2col's.
///
/// Layouts: activations NHWC; weight `[out, 3, 3, in]`; transformed input `V[T, 36, in]` and
/// products `M[T, 36, out]` tile by tile (each tile's transform is written in one piece; the GEMM
/// of position `xi` reads every 36th row), transformed kernel `U[36, out, in]` (the weight's own
/// order); tiles `t = (n, ty, tx)` in row-major order with `ceil(H/4) x ceil(W/4)` tiles per image.
///
/// The backward pass is the adjoint: with `dM = A dY A^T` per tile, `dU[xi] = dM[xi]^T V[xi]`
/// gives `dL/dweight = G^T dU G`, and `dV[xi] = dM[xi] U[xi]`, scattered back through `B`
/// (`B dV B^T` added onto the 6x6 patch), gives `dL/dinput`. The transforms work on 16 channels
/// at a time (`Vector`), with a zero-padded tail.
enum Winograd {
    /// Positions of the transformed 6x6 domain.
    static let positions = 36

    static func tileCount(batch: Int, height: Int, width: Int) -> Int {
        batch * ((height + 3) / 4) * ((width + 3) / 4)
    }

    /// Whether a convolution with `window` runs as F(4x4, 3x3): 3x3, stride 1, padding 1.
    static func applies(to window: Window) -> Bool {
        window == Window(kernel: 3, stride: 1, padding: 1)
    }

    /// The workspace of a pass: 36 positions, tile rows of `in` channels.
    static func layout(batch: Int, height: Int, width: Int, inputChannels: Int, outputChannels: Int) -> WinogradWorkspace {
        WinogradWorkspace(positions: positions, tiles: tileCount(batch: batch, height: height, width: width),
                          rowWidth: inputChannels, outputChannels: outputChannels, zeroCount: max(inputChannels, outputChannels))
    }

    /// `output [N, H, W, out]` = the convolution of `input [N, H, W, in]` with `weight` `[out, 3, 3, in]`. No bias.
    static func convolve(
        output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        batch: Int, height: Int, width: Int, inputChannels: Int, outputChannels: Int,
        workspace: UnsafeMutablePointer<Float>
    ) {
        let layout = layout(batch: batch, height: height, width: width, inputChannels: inputChannels, outputChannels: outputChannels)
        let (v, m, u, zeros) = layout.regions(workspace)
        transformKernel(u, weight: weight, outputs: outputChannels, inputs: inputChannels)
        transformInput(v, image: input, zeros: zeros, batch: batch, height: height, width: width, channels: inputChannels)
        layout.multiply(tiles: v, kernel: u, into: m)
        transformOutput(output, products: m, batch: batch, height: height, width: width, channels: outputChannels)
    }

    /// Adds `dL/dweight` (`[out, 3, 3, in]`) of the convolution of `input [N, H, W, in]` given
    /// `outputGradient [N, H, W, out]` and, when `inputGradient` is given, WRITES `dL/dinput` there.
    static func backward(
        weightGradient: UnsafeMutablePointer<Float>, inputGradient: UnsafeMutablePointer<Float>?,
        input: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        batch: Int, height: Int, width: Int, inputChannels: Int, outputChannels: Int,
        workspace: UnsafeMutablePointer<Float>
    ) {
        let layout = layout(batch: batch, height: height, width: width, inputChannels: inputChannels, outputChannels: outputChannels)
        let (v, dm, u, zeros) = layout.regions(workspace)
        transformInput(v, image: input, zeros: zeros, batch: batch, height: height, width: width, channels: inputChannels)
        transformOutputGradient(dm, gradient: outputGradient, zeros: zeros, batch: batch, height: height, width: width,
                                channels: outputChannels)
        // dU in the kernel's region, then dV over V.
        layout.kernelGradient(products: dm, tiles: v, into: u)
        accumulateKernelGradient(weightGradient, transformed: u, outputs: outputChannels, inputs: inputChannels)
        guard let inputGradient else { return }
        transformKernel(u, weight: weight, outputs: outputChannels, inputs: inputChannels)
        layout.tileGradient(products: dm, kernel: u, into: v)
        scatterInputGradient(inputGradient, transformed: v, batch: batch, height: height, width: width, channels: inputChannels)
    }

    // MARK: - Transforms

    /// `B^T d` for one column `d0 ... d5` of a patch.
    @inline(__always)
    static func inputColumn(
        _ d0: Vector, _ d1: Vector, _ d2: Vector, _ d3: Vector, _ d4: Vector, _ d5: Vector
    ) -> (Vector, Vector, Vector, Vector, Vector, Vector) {
        let a = d4 - 4 * d2, b = d3 - 4 * d1
        let c = d4 - d2, e = 2 * (d3 - d1)
        return (4 * d0 - 5 * d2 + d4, a + b, a - b, c + e, c - e, 4 * d1 - 5 * d3 + d5)
    }

    /// `B v` (the adjoint of `inputColumn`) for one column `v0 ... v5`.
    @inline(__always)
    static func inputColumnAdjoint(
        _ v0: Vector, _ v1: Vector, _ v2: Vector, _ v3: Vector, _ v4: Vector, _ v5: Vector
    ) -> (Vector, Vector, Vector, Vector, Vector, Vector) {
        let s12 = v1 + v2, d12 = v1 - v2, s34 = v3 + v4, d34 = v3 - v4
        return (4 * v0, 4 * (v5 - d12) - 2 * d34, -5 * v0 - 4 * s12 - s34, d12 + 2 * d34 - 5 * v5, v0 + s12 + s34, v5)
    }

    /// `A^T m` for one column `m(0) ... m(5)` of a tile's products.
    @inline(__always)
    static func outputColumn(_ m: (Int) -> Vector) -> (Vector, Vector, Vector, Vector) {
        let (m0, m1, m2, m3, m4, m5) = (m(0), m(1), m(2), m(3), m(4), m(5))
        let s12 = m1 + m2, d12 = m1 - m2, s34 = m3 + m4, d34 = m3 - m4
        return (m0 + s12 + s34, d12 + 2 * d34, s12 + 4 * s34, d12 + 8 * d34 + m5)
    }

    /// `A y` (the adjoint of `outputColumn`) for one column `y0 ... y3` of an output gradient:
    /// entry `k` of the six goes to `store(k, value)`.
    @inline(__always)
    static func outputColumnAdjoint(_ y0: Vector, _ y1: Vector, _ y2: Vector, _ y3: Vector, _ store: (Int, Vector) -> Void) {
        let e = y0 + y2, o = y1 + y3, e2 = y0 + 4 * y2, o2 = 2 * y1 + 8 * y3
        store(0, y0); store(1, e + o); store(2, e - o); store(3, e2 + o2); store(4, e2 - o2); store(5, y3)
    }

    /// `V[t, xi, c] = (B^T d_t B)[xi]` for every tile's 6x6 input patch `d_t`.
    static func transformInput(
        _ v: UnsafeMutablePointer<Float>, image: UnsafePointer<Float>, zeros: UnsafePointer<Float>,
        batch: Int, height: Int, width: Int, channels: Int
    ) {
        withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: 36) { source in
          withUnsafeTemporaryAllocation(of: Vector.self, capacity: 36) { columnBuffer in
            let columns = columnBuffer.baseAddress!
            forEachTile(batch: batch, height: height, width: width, size: 4) { t, n, y0, x0 in
                let base = image + n * height * width * channels
                for i in 0..<6 {
                    let y = y0 - 1 + i
                    for j in 0..<6 {
                        let x = x0 - 1 + j
                        source[i * 6 + j] = (y >= 0 && y < height && x >= 0 && x < width)
                            ? base + (y * width + x) * channels : zeros
                    }
                }
                let destination = v + t * 36 * channels
                var c = 0
                while c < channels {
                    let lanes = min(vectorWidth, channels - c)
                    // Down the columns, B^T d, into columns[i * 6 + j].
                    for j in 0..<6 {
                        @inline(__always) func d(_ i: Int) -> Vector { loadLanes(source[i * 6 + j] + c, lanes) }
                        let r = inputColumn(d(0), d(1), d(2), d(3), d(4), d(5))
                        columns[j] = r.0; columns[6 + j] = r.1; columns[12 + j] = r.2
                        columns[18 + j] = r.3; columns[24 + j] = r.4; columns[30 + j] = r.5
                    }
                    // Along the rows, (B^T d) B.
                    for i in 0..<6 {
                        let e = columns + 6 * i
                        let r = inputColumn(e[0], e[1], e[2], e[3], e[4], e[5])
                        let row = destination + 6 * i * channels + c
                        storeLanes(r.0, row, lanes)
                        storeLanes(r.1, row + channels, lanes)
                        storeLanes(r.2, row + 2 * channels, lanes)
                        storeLanes(r.3, row + 3 * channels, lanes)
                        storeLanes(r.4, row + 4 * channels, lanes)
                        storeLanes(r.5, row + 5 * channels, lanes)
                    }
                    c += lanes
                }
            }
          }
        }
    }

    /// Adds `B dV_t B^T` of every tile onto the 6x6 input patch it came from (the adjoint of
    /// `transformInput`); pixels outside the image are dropped. Zeroes `image` first.
    static func scatterInputGradient(
        _ image: UnsafeMutablePointer<Float>, transformed dv: UnsafePointer<Float>,
        batch: Int, height: Int, width: Int, channels: Int
    ) {
        image.update(repeating: 0, count: batch * height * width * channels)
        withUnsafeTemporaryAllocation(of: Vector.self, capacity: 36) { columnBuffer in
            let columns = columnBuffer.baseAddress!
            forEachTile(batch: batch, height: height, width: width, size: 4) { t, n, y0, x0 in
                let base = image + n * height * width * channels
                let source = dv + t * 36 * channels
                let rows = max(0, min(6, height - y0 + 1)), cols = max(0, min(6, width - x0 + 1))
                let firstRow = y0 == 0 ? 1 : 0, firstColumn = x0 == 0 ? 1 : 0
                var c = 0
                while c < channels {
                    let lanes = min(vectorWidth, channels - c)
                    // Down the columns: B dV, into columns[i * 6 + j].
                    for j in 0..<6 {
                        @inline(__always) func e(_ i: Int) -> Vector { loadLanes(source + (i * 6 + j) * channels + c, lanes) }
                        let r = inputColumnAdjoint(e(0), e(1), e(2), e(3), e(4), e(5))
                        columns[j] = r.0; columns[6 + j] = r.1; columns[12 + j] = r.2
                        columns[18 + j] = r.3; columns[24 + j] = r.4; columns[30 + j] = r.5
                    }
                    // Along the rows, then onto the pixels inside the image.
                    for i in firstRow..<rows {
                        let e = columns + 6 * i
                        let r = inputColumnAdjoint(e[0], e[1], e[2], e[3], e[4], e[5])
                        let row = base + ((y0 - 1 + i) * width + x0 - 1) * channels + c
                        @inline(__always) func add(_ j: Int, _ value: Vector) {
                            guard j >= firstColumn, j < cols else { return }
                            let target = row + j * channels
                            storeLanes(loadLanes(target, lanes) + value, target, lanes)
                        }
                        add(0, r.0); add(1, r.1); add(2, r.2); add(3, r.3); add(4, r.4); add(5, r.5)
                    }
                    c += lanes
                }
            }
        }
    }

    /// `output` (4x4 per tile, clipped at the image's edge) `= A^T M_t A` from `M[t, xi, c]`.
    static func transformOutput(
        _ output: UnsafeMutablePointer<Float>, products m: UnsafePointer<Float>,
        batch: Int, height: Int, width: Int, channels: Int
    ) {
        storeOutputTiles(output, products: m, batch: batch, height: height, width: width, channels: channels,
                         points: 6, column: outputColumn)
    }

    /// `dM[t, xi, c] = (A dY_t A^T)[xi]` for every tile's 4x4 output gradient (zeros outside the image).
    static func transformOutputGradient(
        _ dm: UnsafeMutablePointer<Float>, gradient: UnsafePointer<Float>, zeros: UnsafePointer<Float>,
        batch: Int, height: Int, width: Int, channels: Int
    ) {
        transformGradientTiles(dm, gradient: gradient, zeros: zeros, batch: batch, height: height, width: width,
                               channels: channels, points: 6, column: outputColumnAdjoint)
    }

    /// `G g` for one column `g0, g1, g2` of a kernel.
    @inline(__always)
    static func kernelColumn(_ g0: Vector, _ g1: Vector, _ g2: Vector) -> (Vector, Vector, Vector, Vector, Vector, Vector) {
        let s = (-1 / 6 as Float) * (g0 + g2), t = (-1 / 6 as Float) * g1
        let p = (1 / 24 as Float) * g0 + (1 / 6 as Float) * g2, q = (1 / 12 as Float) * g1
        return (0.25 * g0, s + t, s - t, p + q, p - q, g2)
    }

    /// `G^T u` (the adjoint of `kernelColumn`) for one column `u0 ... u5`.
    @inline(__always)
    static func kernelColumnAdjoint(
        _ u0: Vector, _ u1: Vector, _ u2: Vector, _ u3: Vector, _ u4: Vector, _ u5: Vector
    ) -> (Vector, Vector, Vector) {
        let s12 = (-1 / 6 as Float) * (u1 + u2), d12 = (-1 / 6 as Float) * (u1 - u2)
        let s34 = u3 + u4, d34 = (1 / 12 as Float) * (u3 - u4)
        return (0.25 * u0 + s12 + (1 / 24 as Float) * s34, d12 + d34, s12 + (1 / 6 as Float) * s34 + u5)
    }

    /// `U[xi, o, i] = (G g G^T)[xi]` with `g[ky][kx] = weight[o, ky, kx, i]` for a weight `[outputs, 3, 3, inputs]`.
    static func transformKernel(_ u: UnsafeMutablePointer<Float>, weight: UnsafePointer<Float>, outputs: Int, inputs: Int) {
        let plane = outputs * inputs
        withUnsafeTemporaryAllocation(of: Vector.self, capacity: 18) { columnBuffer in
            let columns = columnBuffer.baseAddress!
            for o in 0..<outputs {
                let kernel = weight + o * 9 * inputs
                let destination = u + o * inputs
                var c = 0
                while c < inputs {
                    let lanes = min(vectorWidth, inputs - c)
                    // Down the columns, G g, into columns[i * 3 + kx].
                    for kx in 0..<3 {
                        @inline(__always) func g(_ ky: Int) -> Vector { loadLanes(kernel + (ky * 3 + kx) * inputs + c, lanes) }
                        let r = kernelColumn(g(0), g(1), g(2))
                        columns[kx] = r.0; columns[3 + kx] = r.1; columns[6 + kx] = r.2
                        columns[9 + kx] = r.3; columns[12 + kx] = r.4; columns[15 + kx] = r.5
                    }
                    // Along the rows, times G^T.
                    for i in 0..<6 {
                        let r = kernelColumn(columns[3 * i], columns[3 * i + 1], columns[3 * i + 2])
                        let row = destination + 6 * i * plane + c
                        storeLanes(r.0, row, lanes)
                        storeLanes(r.1, row + plane, lanes)
                        storeLanes(r.2, row + 2 * plane, lanes)
                        storeLanes(r.3, row + 3 * plane, lanes)
                        storeLanes(r.4, row + 4 * plane, lanes)
                        storeLanes(r.5, row + 5 * plane, lanes)
                    }
                    c += lanes
                }
            }
        }
    }

    /// `weightGradient[o, ky, kx, i] += (G^T dU G)[ky][kx]` with `dU[xi, o, i]`.
    static func accumulateKernelGradient(
        _ weightGradient: UnsafeMutablePointer<Float>, transformed du: UnsafePointer<Float>, outputs: Int, inputs: Int
    ) {
        let plane = outputs * inputs
        withUnsafeTemporaryAllocation(of: Vector.self, capacity: 18) { columnBuffer in
            let columns = columnBuffer.baseAddress!
            for o in 0..<outputs {
                let kernel = weightGradient + o * 9 * inputs
                let source = du + o * inputs
                var c = 0
                while c < inputs {
                    let lanes = min(vectorWidth, inputs - c)
                    // Down the columns, G^T dU, into columns[ky * 6 + j].
                    for j in 0..<6 {
                        @inline(__always) func e(_ i: Int) -> Vector { loadLanes(source + (6 * i + j) * plane + c, lanes) }
                        let r = kernelColumnAdjoint(e(0), e(1), e(2), e(3), e(4), e(5))
                        columns[j] = r.0; columns[6 + j] = r.1; columns[12 + j] = r.2
                    }
                    for ky in 0..<3 {
                        let e = columns + 6 * ky
                        let r = kernelColumnAdjoint(e[0], e[1], e[2], e[3], e[4], e[5])
                        let row = kernel + ky * 3 * inputs + c
                        storeLanes(loadLanes(row, lanes) + r.0, row, lanes)
                        storeLanes(loadLanes(row + inputs, lanes) + r.1, row + inputs, lanes)
                        storeLanes(loadLanes(row + 2 * inputs, lanes) + r.2, row + 2 * inputs, lanes)
                    }
                    c += lanes
                }
            }
        }
    }
}

/// Calls `body(t, n, y, x)` for every `size x size` tile of `batch` images of `height x width`
/// in row-major order: its index, its image and its top-left pixel.
@inline(__always)
func forEachTile(batch: Int, height: Int, width: Int, size: Int, _ body: (Int, Int, Int, Int) -> Void) {
    var t = 0
    for n in 0..<batch {
        for y in stride(from: 0, to: height, by: size) {
            for x in stride(from: 0, to: width, by: size) {
                body(t, n, y, x)
                t += 1
            }
        }
    }
}

/// The output side of a Winograd F(4x4, r) with `points = 4 + r - 1` points per axis:
/// `output` (4x4 per tile, clipped at the image's edge) `= A^T M_t A` from `M[t, xi, c]`
/// (`points x points` positions per tile), where `column(m)` is `A^T` of the column `m(0) ...`.
@inline(__always)
func storeOutputTiles(
    _ output: UnsafeMutablePointer<Float>, products m: UnsafePointer<Float>,
    batch: Int, height: Int, width: Int, channels: Int, points: Int,
    column: ((Int) -> Vector) -> (Vector, Vector, Vector, Vector)
) {
    withUnsafeTemporaryAllocation(of: Vector.self, capacity: 4 * points) { columnBuffer in
        let columns = columnBuffer.baseAddress!
        forEachTile(batch: batch, height: height, width: width, size: 4) { t, n, y0, x0 in
            let source = m + t * points * points * channels
            let rows = min(4, height - y0), cols = min(4, width - x0)
            var c = 0
            while c < channels {
                let lanes = min(vectorWidth, channels - c)
                // Down the columns: A^T M, into columns[i * points + j].
                for j in 0..<points {
                    let r = column { i in loadLanes(source + (i * points + j) * channels + c, lanes) }
                    columns[j] = r.0; columns[points + j] = r.1; columns[2 * points + j] = r.2; columns[3 * points + j] = r.3
                }
                // Along the rows, onto the pixels inside the image.
                for i in 0..<rows {
                    let e = columns + points * i
                    let r = column { e[$0] }
                    let row = output + ((n * height + y0 + i) * width + x0) * channels + c
                    storeLanes(r.0, row, lanes)
                    if cols > 1 { storeLanes(r.1, row + channels, lanes) }
                    if cols > 2 { storeLanes(r.2, row + 2 * channels, lanes) }
                    if cols > 3 { storeLanes(r.3, row + 3 * channels, lanes) }
                }
                c += lanes
            }
        }
    }
}

/// The adjoint of `storeOutputTiles`: `dM[t, xi, c] = (A dY_t A^T)[xi]` for every tile's 4x4
/// output gradient (zeros outside the image), where `column(y0, y1, y2, y3, store)` is `A` of one
/// column, handing entry `k` of the `points` to `store(k, value)`.
@inline(__always)
func transformGradientTiles(
    _ dm: UnsafeMutablePointer<Float>, gradient: UnsafePointer<Float>, zeros: UnsafePointer<Float>,
    batch: Int, height: Int, width: Int, channels: Int, points: Int,
    column: (Vector, Vector, Vector, Vector, (Int, Vector) -> Void) -> Void
) {
    withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: 16) { source in
      withUnsafeTemporaryAllocation(of: Vector.self, capacity: 4 * points) { columnBuffer in
        let columns = columnBuffer.baseAddress!
        forEachTile(batch: batch, height: height, width: width, size: 4) { t, n, y0, x0 in
            for i in 0..<4 {
                for j in 0..<4 {
                    let (y, x) = (y0 + i, x0 + j)
                    source[i * 4 + j] = (y < height && x < width) ? gradient + ((n * height + y) * width + x) * channels : zeros
                }
            }
            let destination = dm + t * points * points * channels
            var c = 0
            while c < channels {
                let lanes = min(vectorWidth, channels - c)
                // Down the columns: A dY, into columns[k * 4 + j].
                for j in 0..<4 {
                    @inline(__always) func g(_ i: Int) -> Vector { loadLanes(source[i * 4 + j] + c, lanes) }
                    column(g(0), g(1), g(2), g(3)) { k, value in columns[k * 4 + j] = value }
                }
                // Along the rows, into position k * points + l.
                for k in 0..<points {
                    let e = columns + 4 * k
                    let row = destination + k * points * channels + c
                    column(e[0], e[1], e[2], e[3]) { l, value in storeLanes(value, row + l * channels, lanes) }
                }
                c += lanes
            }
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

/// Winograd F(4x4, 2x2) for the 4x4, stride-2, padding-1 convolutions (the encoder's downsampling
/// layers, and through their adjoint the decoder's transposed convolutions).
///
/// Per axis, output `y[i] = sum_k x[2i - 1 + k] g[k]` reads pixels `2i - 1 .. 2i + 2`. Pairing pixels
/// `2I - 1` and `2I` into block `I` makes it `y[i] = z[i] . h[0] + z[i + 1] . h[1]` with
/// `h[a] = (g[2a], g[2a + 1])`: a 2-tap, stride-1 convolution over blocks of `4 * in` channels
/// (phase `p, q` and channel). F(4, 2) computes four outputs from five blocks with five products
/// (interpolation points 0, 1, -1, -2 and infinity; `inputColumn`, `kernelColumn` and
/// `outputColumn` are `B^T`, `G` and `A^T`), so a 4x4 output tile costs 25 products over `4 * in`
/// channels instead of 256 over `in`: 2.56x fewer multiply-adds than im2col. Layouts as in
/// `Winograd`: `V[T, 25, 4 * in]` (block channel `(p * 2 + q) * in + c`), `M[T, 25, out]`,
/// `U[25, out, 4 * in]`; tiles of 4x4 outputs.
enum StridedWinograd {
    /// Positions of the transformed 5x5 domain.
    static let positions = 25

    /// Tiles of an output `outputHeight x outputWidth`, for `batch` images.
    static func tileCount(batch: Int, outputHeight: Int, outputWidth: Int) -> Int {
        Winograd.tileCount(batch: batch, height: outputHeight, width: outputWidth)
    }

    /// Whether a convolution with `window` between these channel counts runs as F(4x4, 2x2): 4x4,
    /// stride 2, padding 1, and both counts fill a 16-float vector (with 3 image channels im2col
    /// measured faster: the default model trains at 455 instead of 402 images/s).
    static func applies(to window: Window, channels: Int, _ otherChannels: Int) -> Bool {
        window == Window(kernel: 4, stride: 2, padding: 1) && min(channels, otherChannels) >= vectorWidth
    }

    /// The workspace of a pass: 25 positions, block rows of `4 * in` channels.
    static func layout(batch: Int, outputHeight: Int, outputWidth: Int, inputChannels: Int, outputChannels: Int) -> WinogradWorkspace {
        WinogradWorkspace(positions: positions, tiles: tileCount(batch: batch, outputHeight: outputHeight, outputWidth: outputWidth),
                          rowWidth: 4 * inputChannels, outputChannels: outputChannels,
                          zeroCount: max(inputChannels, outputChannels))
    }

    /// `output [N, Ho, Wo, out]` = the convolution of `input [N, H, W, in]` with `weight` `[out, 4, 4, in]`. No bias.
    static func convolve(
        output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        batch: Int, height: Int, width: Int, outputHeight: Int, outputWidth: Int,
        inputChannels: Int, outputChannels: Int, workspace: UnsafeMutablePointer<Float>
    ) {
        let layout = layout(batch: batch, outputHeight: outputHeight, outputWidth: outputWidth,
                            inputChannels: inputChannels, outputChannels: outputChannels)
        let (v, m, u, zeros) = layout.regions(workspace)
        transformKernel(u, weight: weight, outputs: outputChannels, inputs: inputChannels)
        transformInput(v, image: input, zeros: zeros, batch: batch, height: height, width: width,
                       outputHeight: outputHeight, outputWidth: outputWidth, channels: inputChannels)
        layout.multiply(tiles: v, kernel: u, into: m)
        transformOutput(output, products: m, batch: batch, height: outputHeight, width: outputWidth, channels: outputChannels)
    }

    /// WRITES `dL/dinput [N, H, W, in]` given `outputGradient [N, Ho, Wo, out]`: the adjoint of
    /// `convolve`, `dV[xi] = dM[xi] U[xi]` scattered back through `B`.
    static func inputGradient(
        _ inputGradient: UnsafeMutablePointer<Float>, outputGradient: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        batch: Int, height: Int, width: Int, outputHeight: Int, outputWidth: Int,
        inputChannels: Int, outputChannels: Int, workspace: UnsafeMutablePointer<Float>
    ) {
        let layout = layout(batch: batch, outputHeight: outputHeight, outputWidth: outputWidth,
                            inputChannels: inputChannels, outputChannels: outputChannels)
        let (dv, dm, u, zeros) = layout.regions(workspace)
        transformKernel(u, weight: weight, outputs: outputChannels, inputs: inputChannels)
        transformOutputGradient(dm, gradient: outputGradient, zeros: zeros, batch: batch,
                                height: outputHeight, width: outputWidth, channels: outputChannels)
        layout.tileGradient(products: dm, kernel: u, into: dv)
        scatterInputGradient(inputGradient, transformed: dv, batch: batch, height: height, width: width,
                             outputHeight: outputHeight, outputWidth: outputWidth, channels: inputChannels)
    }

    /// The convolution's backward pass: adds `dL/dweight` (`[out, 4, 4, in]`) given
    /// `input [N, H, W, in]` and `outputGradient [N, Ho, Wo, out]` and, when `inputGradient` is
    /// given, WRITES `dL/dinput` there (`inputGradient(...)`), transforming `outputGradient` once for both.
    static func backward(
        weightGradient: UnsafeMutablePointer<Float>, inputGradient: UnsafeMutablePointer<Float>?,
        input: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        batch: Int, height: Int, width: Int, outputHeight: Int, outputWidth: Int,
        inputChannels: Int, outputChannels: Int, workspace: UnsafeMutablePointer<Float>
    ) {
        let (layout, v, dm, u) = weightGradientPass(
            weightGradient, input: input, outputGradient: outputGradient, weight: weight, transformsKernel: inputGradient != nil,
            batch: batch, height: height, width: width, outputHeight: outputHeight, outputWidth: outputWidth,
            inputChannels: inputChannels, outputChannels: outputChannels, workspace: workspace)
        guard let inputGradient else { return }
        layout.tileGradient(products: dm, kernel: u, into: v)
        scatterInputGradient(inputGradient, transformed: v, batch: batch, height: height, width: width,
                             outputHeight: outputHeight, outputWidth: outputWidth, channels: inputChannels)
    }

    /// The backward pass of the transposed convolution that is this convolution's adjoint (its
    /// forward pass is `inputGradient(...)`): with the transposed layer's output gradient as
    /// `input [N, H, W, in]` and its input as `outputGradient [N, Ho, Wo, out]`, adds `dL/dweight`
    /// and, when `output` is given, WRITES the transposed layer's input gradient there (`convolve(...)`),
    /// transforming `input` once for both.
    static func transposedBackward(
        weightGradient: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>?,
        input: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        batch: Int, height: Int, width: Int, outputHeight: Int, outputWidth: Int,
        inputChannels: Int, outputChannels: Int, workspace: UnsafeMutablePointer<Float>
    ) {
        let (layout, v, dm, u) = weightGradientPass(
            weightGradient, input: input, outputGradient: outputGradient, weight: weight, transformsKernel: output != nil,
            batch: batch, height: height, width: width, outputHeight: outputHeight, outputWidth: outputWidth,
            inputChannels: inputChannels, outputChannels: outputChannels, workspace: workspace)
        guard let output else { return }
        layout.multiply(tiles: v, kernel: u, into: dm)
        transformOutput(output, products: dm, batch: batch, height: outputHeight, width: outputWidth, channels: outputChannels)
    }

    /// The first half of `backward` and `transposedBackward`: transforms `input` (V) and
    /// `outputGradient` (dM) into `workspace`, adds `dL/dweight` through `dU = dM^T V`, and when
    /// `transformsKernel` then writes the transformed `weight` (U) over dU for the second half.
    /// Returns the layout, V, dM and the kernel region.
    private static func weightGradientPass(
        _ weightGradient: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
        weight: UnsafePointer<Float>, transformsKernel: Bool,
        batch: Int, height: Int, width: Int, outputHeight: Int, outputWidth: Int,
        inputChannels: Int, outputChannels: Int, workspace: UnsafeMutablePointer<Float>
    ) -> (WinogradWorkspace, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) {
        let layout = layout(batch: batch, outputHeight: outputHeight, outputWidth: outputWidth,
                            inputChannels: inputChannels, outputChannels: outputChannels)
        let (v, dm, u, zeros) = layout.regions(workspace)
        transformInput(v, image: input, zeros: zeros, batch: batch, height: height, width: width,
                       outputHeight: outputHeight, outputWidth: outputWidth, channels: inputChannels)
        transformOutputGradient(dm, gradient: outputGradient, zeros: zeros, batch: batch,
                                height: outputHeight, width: outputWidth, channels: outputChannels)
        layout.kernelGradient(products: dm, tiles: v, into: u)
        accumulateKernelGradient(weightGradient, transformed: u, outputs: outputChannels, inputs: inputChannels)
        if transformsKernel { transformKernel(u, weight: weight, outputs: outputChannels, inputs: inputChannels) }
        return (layout, v, dm, u)
    }

    // MARK: - Transforms (checked against the matrices: B^T, G and A^T of points 0, 1, -1, -2, infinity)

    /// `B^T d` for one column `d0 ... d4` of blocks.
    @inline(__always)
    static func inputColumn(
        _ d0: Vector, _ d1: Vector, _ d2: Vector, _ d3: Vector, _ d4: Vector
    ) -> (Vector, Vector, Vector, Vector, Vector) {
        let a = d3 - d1
        return (2 * (d2 - d0) + a, 2 * d1 + 3 * d2 + d3, d2 + d3 - 2 * d1, a, 2 * a - d2 + d4)
    }

    /// `B v` (the adjoint of `inputColumn`).
    @inline(__always)
    static func inputColumnAdjoint(
        _ v0: Vector, _ v1: Vector, _ v2: Vector, _ v3: Vector, _ v4: Vector
    ) -> (Vector, Vector, Vector, Vector, Vector) {
        (-2 * v0, 2 * (v1 - v2 - v4) - v0 - v3, 2 * v0 + 3 * v1 + v2 - v4, v0 + v1 + v2 + v3 + 2 * v4, v4)
    }

    /// `A^T m` for one column `m(0) ... m(4)` of a tile's products.
    @inline(__always)
    static func outputColumn(_ m: (Int) -> Vector) -> (Vector, Vector, Vector, Vector) {
        let (m0, m1, m2, m3, m4) = (m(0), m(1), m(2), m(3), m(4))
        let s = m1 + m2, d = m1 - m2
        return (m0 + s + m3, d - 2 * m3, s + 4 * m3, d - 8 * m3 + m4)
    }

    /// `A y` (the adjoint of `outputColumn`) for one column `y0 ... y3` of an output gradient:
    /// entry `k` of the five goes to `store(k, value)`.
    @inline(__always)
    static func outputColumnAdjoint(_ y0: Vector, _ y1: Vector, _ y2: Vector, _ y3: Vector, _ store: (Int, Vector) -> Void) {
        let e = y0 + y2, o = y1 + y3
        store(0, y0); store(1, e + o); store(2, e - o); store(3, y0 - 2 * y1 + 4 * y2 - 8 * y3); store(4, y3)
    }

    /// `G h` for one column `h0, h1` of a block kernel.
    @inline(__always)
    static func kernelColumn(_ h0: Vector, _ h1: Vector) -> (Vector, Vector, Vector, Vector, Vector) {
        ((-0.5 as Float) * h0, (1 / 6 as Float) * (h0 + h1), 0.5 * (h0 - h1), (1 / 3 as Float) * h1 - (1 / 6 as Float) * h0, h1)
    }

    /// `G^T u` (the adjoint of `kernelColumn`) for one column `u0 ... u4`.
    @inline(__always)
    static func kernelColumnAdjoint(
        _ u0: Vector, _ u1: Vector, _ u2: Vector, _ u3: Vector, _ u4: Vector
    ) -> (Vector, Vector) {
        let sixth = (1 / 6 as Float) * (u1 - u3)
        return (0.5 * (u2 - u0) + sixth, sixth + 0.5 * (u3 - u2) + u4)
    }

    /// The pixel of block `(bi, bj)` (0...4 within the tile), phase `(p, q)`, of the tile whose top-left
    /// output is `(y, x)`: row `2 * (y + bi) - 1 + p`, column `2 * (x + bj) - 1 + q`; nil outside the image.
    @inline(__always)
    static func pixelOffset(y: Int, x: Int, bi: Int, bj: Int, p: Int, q: Int, height: Int, width: Int) -> Int? {
        let row = 2 * (y + bi) - 1 + p, column = 2 * (x + bj) - 1 + q
        guard row >= 0, row < height, column >= 0, column < width else { return nil }
        return row * width + column
    }

    /// `V[t, xi, (p, q, c)] = (B^T d B)[xi]` over the tile's 5x5 blocks, for each phase and channel.
    static func transformInput(
        _ v: UnsafeMutablePointer<Float>, image: UnsafePointer<Float>, zeros: UnsafePointer<Float>,
        batch: Int, height: Int, width: Int, outputHeight: Int, outputWidth: Int, channels: Int
    ) {
        let blockChannels = 4 * channels
        withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: 25) { source in
          withUnsafeTemporaryAllocation(of: Vector.self, capacity: 25) { columnBuffer in
            let columns = columnBuffer.baseAddress!
            forEachTile(batch: batch, height: outputHeight, width: outputWidth, size: 4) { t, n, y, x in
                let base = image + n * height * width * channels
                for phase in 0..<4 {
                    let (p, q) = (phase / 2, phase % 2)
                    for bi in 0..<5 {
                        for bj in 0..<5 {
                            source[bi * 5 + bj] = pixelOffset(y: y, x: x, bi: bi, bj: bj, p: p, q: q, height: height, width: width)
                                .map { base + $0 * channels } ?? zeros
                        }
                    }
                    let destination = v + t * positions * blockChannels + phase * channels
                    var c = 0
                    while c < channels {
                        let lanes = min(vectorWidth, channels - c)
                        for j in 0..<5 {
                            @inline(__always) func d(_ i: Int) -> Vector { loadLanes(source[i * 5 + j] + c, lanes) }
                            let r = inputColumn(d(0), d(1), d(2), d(3), d(4))
                            columns[j] = r.0; columns[5 + j] = r.1; columns[10 + j] = r.2; columns[15 + j] = r.3; columns[20 + j] = r.4
                        }
                        for i in 0..<5 {
                            let e = columns + 5 * i
                            let r = inputColumn(e[0], e[1], e[2], e[3], e[4])
                            let row = destination + 5 * i * blockChannels + c
                            storeLanes(r.0, row, lanes)
                            storeLanes(r.1, row + blockChannels, lanes)
                            storeLanes(r.2, row + 2 * blockChannels, lanes)
                            storeLanes(r.3, row + 3 * blockChannels, lanes)
                            storeLanes(r.4, row + 4 * blockChannels, lanes)
                        }
                        c += lanes
                    }
                }
            }
          }
        }
    }

    /// Zeroes `image` and adds `B dV_t B^T` of every tile back into the pixels its blocks came
    /// from (the adjoint of `transformInput`); pixels outside the image are dropped.
    static func scatterInputGradient(
        _ image: UnsafeMutablePointer<Float>, transformed dv: UnsafePointer<Float>,
        batch: Int, height: Int, width: Int, outputHeight: Int, outputWidth: Int, channels: Int
    ) {
        image.update(repeating: 0, count: batch * height * width * channels)
        let blockChannels = 4 * channels
        withUnsafeTemporaryAllocation(of: Vector.self, capacity: 25) { columnBuffer in
            let columns = columnBuffer.baseAddress!
            forEachTile(batch: batch, height: outputHeight, width: outputWidth, size: 4) { t, n, y, x in
                let base = image + n * height * width * channels
                for phase in 0..<4 {
                    let (p, q) = (phase / 2, phase % 2)
                    let source = dv + t * positions * blockChannels + phase * channels
                    var c = 0
                    while c < channels {
                        let lanes = min(vectorWidth, channels - c)
                        for j in 0..<5 {
                            @inline(__always) func e(_ i: Int) -> Vector { loadLanes(source + (i * 5 + j) * blockChannels + c, lanes) }
                            let r = inputColumnAdjoint(e(0), e(1), e(2), e(3), e(4))
                            columns[j] = r.0; columns[5 + j] = r.1; columns[10 + j] = r.2; columns[15 + j] = r.3; columns[20 + j] = r.4
                        }
                        for bi in 0..<5 {
                            let e = columns + 5 * bi
                            let r = inputColumnAdjoint(e[0], e[1], e[2], e[3], e[4])
                            @inline(__always) func add(_ bj: Int, _ value: Vector) {
                                guard let offset = pixelOffset(y: y, x: x, bi: bi, bj: bj, p: p, q: q, height: height, width: width)
                                else { return }
                                let target = base + offset * channels + c
                                storeLanes(loadLanes(target, lanes) + value, target, lanes)
                            }
                            add(0, r.0); add(1, r.1); add(2, r.2); add(3, r.3); add(4, r.4)
                        }
                        c += lanes
                    }
                }
            }
        }
    }

    /// `output` (4x4 per tile, clipped at the edge) `= A^T M_t A` from `M[t, xi, c]`.
    static func transformOutput(
        _ output: UnsafeMutablePointer<Float>, products m: UnsafePointer<Float>,
        batch: Int, height: Int, width: Int, channels: Int
    ) {
        storeOutputTiles(output, products: m, batch: batch, height: height, width: width, channels: channels,
                         points: 5, column: outputColumn)
    }

    /// `dM[t, xi, c] = (A dY_t A^T)[xi]` for every tile's 4x4 output gradient (zeros outside the output).
    static func transformOutputGradient(
        _ dm: UnsafeMutablePointer<Float>, gradient: UnsafePointer<Float>, zeros: UnsafePointer<Float>,
        batch: Int, height: Int, width: Int, channels: Int
    ) {
        transformGradientTiles(dm, gradient: gradient, zeros: zeros, batch: batch, height: height, width: width,
                               channels: channels, points: 5, column: outputColumnAdjoint)
    }

    /// `U[xi, o, (p, q, c)] = (G h G^T)[xi]` with `h[a][b] = weight[o, 2a + p, 2b + q, c]`.
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
                    // Down the two columns, G h; then along each of the five rows.
                    let c0 = kernelColumn(h(0, 0), h(1, 0)), c1 = kernelColumn(h(0, 1), h(1, 1))
                    @inline(__always) func row(_ i: Int, _ h0: Vector, _ h1: Vector) {
                        let r = kernelColumn(h0, h1)
                        let target = destination + 5 * i * plane + c
                        storeLanes(r.0, target, lanes)
                        storeLanes(r.1, target + plane, lanes)
                        storeLanes(r.2, target + 2 * plane, lanes)
                        storeLanes(r.3, target + 3 * plane, lanes)
                        storeLanes(r.4, target + 4 * plane, lanes)
                    }
                    row(0, c0.0, c1.0); row(1, c0.1, c1.1); row(2, c0.2, c1.2); row(3, c0.3, c1.3); row(4, c0.4, c1.4)
                    c += lanes
                }
            }
        }
    }

    /// `weightGradient[o, 2a + p, 2b + q, c] += (G^T dU G)[a][b]`.
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
                    // Along each of the five rows, G^T; then down the two columns.
                    @inline(__always) func row(_ i: Int) -> (Vector, Vector) {
                        @inline(__always) func e(_ j: Int) -> Vector { loadLanes(source + (5 * i + j) * plane + c, lanes) }
                        return kernelColumnAdjoint(e(0), e(1), e(2), e(3), e(4))
                    }
                    let r0 = row(0), r1 = row(1), r2 = row(2), r3 = row(3), r4 = row(4)
                    let left = kernelColumnAdjoint(r0.0, r1.0, r2.0, r3.0, r4.0)
                    let right = kernelColumnAdjoint(r0.1, r1.1, r2.1, r3.1, r4.1)
                    @inline(__always) func add(_ a: Int, _ b: Int, _ value: Vector) {
                        let target = kernel + ((2 * a + p) * 4 + 2 * b + q) * inputs + c
                        storeLanes(loadLanes(target, lanes) + value, target, lanes)
                    }
                    add(0, 0, left.0); add(1, 0, left.1); add(0, 1, right.0); add(1, 1, right.1)
                    c += lanes
                }
            }
        }
    }
}

/// The workspace of one Winograd pass over `tiles` tiles with `positions` transformed positions:
/// the transformed tiles `[tiles, positions, rowWidth]`, the products `[tiles, positions, out]`,
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

    /// The forward products, every position: `M[:, xi] (T x out) = V[:, xi] (T x rowWidth) * U[xi]^T`.
    func multiply(tiles v: UnsafePointer<Float>, kernel u: UnsafePointer<Float>, into m: UnsafeMutablePointer<Float>) {
        gemmEach(count: positions, transposeA: false, transposeB: true, m: tiles, n: outputChannels, k: rowWidth,
                 a: v, lda: positions * rowWidth, aStride: rowWidth,
                 b: u, ldb: rowWidth, bStride: outputChannels * rowWidth,
                 c: m, ldc: positions * outputChannels, cStride: outputChannels)
    }

    /// The transformed kernel's gradient: `dU[xi] (out x rowWidth) = dM[:, xi]^T (out x T) * V[:, xi]`.
    func kernelGradient(products dm: UnsafePointer<Float>, tiles v: UnsafePointer<Float>, into du: UnsafeMutablePointer<Float>) {
        gemmEach(count: positions, transposeA: true, transposeB: false, m: outputChannels, n: rowWidth, k: tiles,
                 a: dm, lda: positions * outputChannels, aStride: outputChannels,
                 b: v, ldb: positions * rowWidth, bStride: rowWidth,
                 c: du, ldc: rowWidth, cStride: outputChannels * rowWidth)
    }

    /// The transformed tiles' gradient: `dV[:, xi] (T x rowWidth) = dM[:, xi] (T x out) * U[xi]`.
    func tileGradient(products dm: UnsafePointer<Float>, kernel u: UnsafePointer<Float>, into dv: UnsafeMutablePointer<Float>) {
        gemmEach(count: positions, transposeA: false, transposeB: false, m: tiles, n: rowWidth, k: outputChannels,
                 a: dm, lda: positions * outputChannels, aStride: outputChannels,
                 b: u, ldb: rowWidth, bStride: outputChannels * rowWidth,
                 c: dv, ldc: positions * rowWidth, cStride: rowWidth)
    }
}
