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
        transformKernel(u, weight: weight, outputs: outputChannels, inputs: inputChannels, plane: layout.kernelPlane,
                        order: .inputsByOutputs)
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
        accumulateKernelGradient(weightGradient, transformed: u, outputs: outputChannels, inputs: inputChannels, plane: layout.kernelPlane)
        guard let inputGradient else { return }
        transformKernel(u, weight: weight, outputs: outputChannels, inputs: inputChannels, plane: layout.kernelPlane,
                        order: .outputsByInputs)
        layout.tileGradient(products: dm, kernel: u, into: v)
        scatterInputGradient(inputGradient, transformed: v, batch: batch, height: height, width: width, channels: inputChannels)
    }

    // MARK: - Transforms

    /// `B^T d` for one column `d0 ... d5` of a patch.
    @inline(__always)
    static func inputColumn(
        _ d0: Vector, _ d1: Vector, _ d2: Vector, _ d3: Vector, _ d4: Vector, _ d5: Vector
    ) -> (Vector, Vector, Vector, Vector, Vector, Vector) {
        let a = muladd(d4, -4, d2), b = muladd(d3, -4, d1)
        let c = d4 - d2, e = d3 - d1
        return (muladd(muladd(d4, -5, d2), 4, d0), a + b, a - b, muladd(c, 2, e), muladd(c, -2, e), muladd(muladd(d5, -5, d3), 4, d1))
    }

    /// `B v` (the adjoint of `inputColumn`) for one column `v0 ... v5`.
    @inline(__always)
    static func inputColumnAdjoint(
        _ v0: Vector, _ v1: Vector, _ v2: Vector, _ v3: Vector, _ v4: Vector, _ v5: Vector
    ) -> (Vector, Vector, Vector, Vector, Vector, Vector) {
        let s12 = v1 + v2, d12 = v1 - v2, s34 = v3 + v4, d34 = v3 - v4
        return (4 * v0, 2 * muladd(-d34, 2, v5 - d12), muladd(muladd(-s34, -4, s12), -5, v0),
                muladd(muladd(d12, 2, d34), -5, v5), v0 + s12 + s34, v5)
    }

    /// `A^T m` for one column `m(0) ... m(5)` of a tile's products.
    @inline(__always)
    static func outputColumn(_ m: (Int) -> Vector) -> (Vector, Vector, Vector, Vector) {
        let (m0, m1, m2, m3, m4, m5) = (m(0), m(1), m(2), m(3), m(4), m(5))
        let s12 = m1 + m2, d12 = m1 - m2, s34 = m3 + m4, d34 = m3 - m4
        return (m0 + s12 + s34, muladd(d12, 2, d34), muladd(s12, 4, s34), muladd(d12 + m5, 8, d34))
    }

    /// `A y` (the adjoint of `outputColumn`) for one column `y0 ... y3` of an output gradient:
    /// entry `k` of the six goes to `store(k, value)`.
    @inline(__always)
    static func outputColumnAdjoint(_ y0: Vector, _ y1: Vector, _ y2: Vector, _ y3: Vector, _ store: (Int, Vector) -> Void) {
        let e = y0 + y2, o = y1 + y3, e2 = muladd(y0, 4, y2), o2 = 2 * muladd(y1, 4, y3)
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

    /// `U[xi, o, i] = (G g G^T)[xi]` with `g[ky][kx] = weight[o, ky, kx, i]` for a weight
    /// `[outputs, 3, 3, inputs]`, planes `plane` floats apart, each the `outputs x inputs` matrix
    /// or, for `.inputsByOutputs`, its transpose, in `Panels` (16 input or output channels at a time).
    static func transformKernel(
        _ u: UnsafeMutablePointer<Float>, weight: UnsafePointer<Float>, outputs: Int, inputs: Int, plane: Int,
        order: KernelOrder
    ) {
        withUnsafeTemporaryAllocation(of: Vector.self, capacity: 18) { columnBuffer in
            let columns = columnBuffer.baseAddress!
            /// `G g G^T` of the nine vectors `g(ky, kx)`, stored through `store(xi, value)`.
            @inline(__always) func transform(_ g: (Int, Int) -> Vector, _ store: (Int, Vector) -> Void) {
                // Down the columns, G g, into columns[i * 3 + kx].
                for kx in 0..<3 {
                    let r = kernelColumn(g(0, kx), g(1, kx), g(2, kx))
                    columns[kx] = r.0; columns[3 + kx] = r.1; columns[6 + kx] = r.2
                    columns[9 + kx] = r.3; columns[12 + kx] = r.4; columns[15 + kx] = r.5
                }
                // Along the rows, times G^T.
                for i in 0..<6 {
                    let r = kernelColumn(columns[3 * i], columns[3 * i + 1], columns[3 * i + 2])
                    store(6 * i, r.0); store(6 * i + 1, r.1); store(6 * i + 2, r.2)
                    store(6 * i + 3, r.3); store(6 * i + 4, r.4); store(6 * i + 5, r.5)
                }
            }
            let (rows, width) = order == .outputsByInputs ? (outputs, inputs) : (inputs, outputs)
            let planes = KernelPlanes(base: u, count: positions, plane: plane, rows: rows, columns: width)
            planes.zeroPadding()
            switch order {
            case .outputsByInputs:
                for o in 0..<outputs {
                    let kernel = weight + o * 9 * inputs
                    var c = 0
                    while c < inputs {
                        let lanes = min(vectorWidth, inputs - c)
                        planes.storing(row: o, column: c, lanes: lanes) { store in
                            transform({ ky, kx in loadLanes(kernel + (ky * 3 + kx) * inputs + c, lanes) }, store)
                        }
                        c += lanes
                    }
                }
            case .inputsByOutputs:
                for i in 0..<inputs {
                    var o = 0
                    while o < outputs {
                        let lanes = min(vectorWidth, outputs - o)
                        let kernel = weight + o * 9 * inputs + i
                        planes.storing(row: i, column: o, lanes: lanes) { store in
                            transform({ ky, kx in gatherLanes(kernel + (ky * 3 + kx) * inputs, stride: 9 * inputs, lanes) }, store)
                        }
                        o += lanes
                    }
                }
            }
        }
    }

    /// `weightGradient[o, ky, kx, i] += (G^T dU G)[ky][kx]` with `dU[xi, o, i]`.
    static func accumulateKernelGradient(
        _ weightGradient: UnsafeMutablePointer<Float>, transformed du: UnsafePointer<Float>, outputs: Int, inputs: Int, plane: Int
    ) {
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
