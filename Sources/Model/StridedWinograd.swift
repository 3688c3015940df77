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
    /// stride 2, padding 1, and both counts fill a 16-float vector (with fewer, such as the 3 image
    /// channels, the transforms fill only part of each vector and im2col is the faster path).
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
        transformKernel(u, weight: weight, outputs: outputChannels, inputs: inputChannels, plane: layout.kernelPlane,
                        order: .inputsByOutputs)
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
        transformKernel(u, weight: weight, outputs: outputChannels, inputs: inputChannels, plane: layout.kernelPlane,
                        order: .outputsByInputs)
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
            weightGradient, input: input, outputGradient: outputGradient, weight: weight,
            kernelOrder: inputGradient != nil ? .outputsByInputs : nil,
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
            weightGradient, input: input, outputGradient: outputGradient, weight: weight,
            kernelOrder: output != nil ? .inputsByOutputs : nil,
            batch: batch, height: height, width: width, outputHeight: outputHeight, outputWidth: outputWidth,
            inputChannels: inputChannels, outputChannels: outputChannels, workspace: workspace)
        guard let output else { return }
        layout.multiply(tiles: v, kernel: u, into: dm)
        transformOutput(output, products: dm, batch: batch, height: outputHeight, width: outputWidth, channels: outputChannels)
    }

    /// The first half of `backward` and `transposedBackward`: transforms `input` (V) and
    /// `outputGradient` (dM) into `workspace`, adds `dL/dweight` through `dU = dM^T V`, and when given a
    /// `kernelOrder` then writes the transformed `weight` (U) in that order over dU for the second half.
    /// Returns the layout, V, dM and the kernel region.
    private static func weightGradientPass(
        _ weightGradient: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
        weight: UnsafePointer<Float>, kernelOrder: KernelOrder?,
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
        accumulateKernelGradient(weightGradient, transformed: u, outputs: outputChannels, inputs: inputChannels, plane: layout.kernelPlane)
        if let kernelOrder {
            transformKernel(u, weight: weight, outputs: outputChannels, inputs: inputChannels, plane: layout.kernelPlane,
                            order: kernelOrder)
        }
        return (layout, v, dm, u)
    }

    // MARK: - Transforms (checked against the matrices: B^T, G and A^T of points 0, 1, -1, -2, infinity)

    /// `B^T d` for one column `d0 ... d4` of blocks.
    @inline(__always)
    static func inputColumn(
        _ d0: Vector, _ d1: Vector, _ d2: Vector, _ d3: Vector, _ d4: Vector
    ) -> (Vector, Vector, Vector, Vector, Vector) {
        let a = d3 - d1
        return (muladd(a, 2, d2 - d0), muladd(muladd(d3, 3, d2), 2, d1), muladd(d2 + d3, -2, d1), a, muladd(d4 - d2, 2, a))
    }

    /// `B v` (the adjoint of `inputColumn`).
    @inline(__always)
    static func inputColumnAdjoint(
        _ v0: Vector, _ v1: Vector, _ v2: Vector, _ v3: Vector, _ v4: Vector
    ) -> (Vector, Vector, Vector, Vector, Vector) {
        (-2 * v0, muladd(-(v0 + v3), 2, v1 - v2 - v4), muladd(muladd(v2 - v4, 3, v1), 2, v0),
         muladd(v0 + v1 + v2 + v3, 2, v4), v4)
    }

    /// `A^T m` for one column `m(0) ... m(4)` of a tile's products.
    @inline(__always)
    static func outputColumn(_ m: (Int) -> Vector) -> (Vector, Vector, Vector, Vector) {
        let (m0, m1, m2, m3, m4) = (m(0), m(1), m(2), m(3), m(4))
        let s = m1 + m2, d = m1 - m2
        return (m0 + s + m3, muladd(d, -2, m3), muladd(s, 4, m3), muladd(d + m4, -8, m3))
    }

    /// `A y` (the adjoint of `outputColumn`) for one column `y0 ... y3` of an output gradient:
    /// entry `k` of the five goes to `store(k, value)`.
    @inline(__always)
    static func outputColumnAdjoint(_ y0: Vector, _ y1: Vector, _ y2: Vector, _ y3: Vector, _ store: (Int, Vector) -> Void) {
        let e = y0 + y2, o = y1 + y3
        store(0, y0); store(1, e + o); store(2, e - o); store(3, muladd(muladd(muladd(y0, -2, y1), 4, y2), -8, y3)); store(4, y3)
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

    /// `U[xi, o, (p, q, c)] = (G h G^T)[xi]` with `h[a][b] = weight[o, 2a + p, 2b + q, c]`, planes
    /// `plane` floats apart, each the `outputs x 4 * inputs` matrix or, for `.inputsByOutputs`, its
    /// transpose, in `Panels` (16 input or output channels at a time).
    static func transformKernel(
        _ u: UnsafeMutablePointer<Float>, weight: UnsafePointer<Float>, outputs: Int, inputs: Int, plane: Int,
        order: KernelOrder
    ) {
        /// `G h G^T` of the four vectors `h(a, b)`, stored through `store(xi, value)`.
        @inline(__always) func transform(_ h: (Int, Int) -> Vector, _ store: (Int, Vector) -> Void) {
            // Down the two columns, G h; then along each of the five rows.
            let c0 = kernelColumn(h(0, 0), h(1, 0)), c1 = kernelColumn(h(0, 1), h(1, 1))
            @inline(__always) func row(_ i: Int, _ h0: Vector, _ h1: Vector) {
                let r = kernelColumn(h0, h1)
                store(5 * i, r.0); store(5 * i + 1, r.1); store(5 * i + 2, r.2); store(5 * i + 3, r.3); store(5 * i + 4, r.4)
            }
            row(0, c0.0, c1.0); row(1, c0.1, c1.1); row(2, c0.2, c1.2); row(3, c0.3, c1.3); row(4, c0.4, c1.4)
        }
        let (rows, columns) = order == .outputsByInputs ? (outputs, 4 * inputs) : (4 * inputs, outputs)
        let planes = KernelPlanes(base: u, count: positions, plane: plane, rows: rows, columns: columns)
        planes.zeroPadding()
        switch order {
        case .outputsByInputs:
            for o in 0..<outputs {
                let kernel = weight + o * 16 * inputs
                for phase in 0..<4 {
                    let (p, q) = (phase / 2, phase % 2)
                    var c = 0
                    while c < inputs {
                        let lanes = min(vectorWidth, inputs - c)
                        planes.storing(row: o, column: phase * inputs + c, lanes: lanes) { store in
                            transform({ a, b in loadLanes(kernel + ((2 * a + p) * 4 + 2 * b + q) * inputs + c, lanes) }, store)
                        }
                        c += lanes
                    }
                }
            }
        case .inputsByOutputs:
            for phase in 0..<4 {
                let (p, q) = (phase / 2, phase % 2)
                for c in 0..<inputs {
                    var o = 0
                    while o < outputs {
                        let lanes = min(vectorWidth, outputs - o)
                        let kernel = weight + o * 16 * inputs + c
                        planes.storing(row: phase * inputs + c, column: o, lanes: lanes) { store in
                            transform({ a, b in gatherLanes(kernel + ((2 * a + p) * 4 + 2 * b + q) * inputs, stride: 16 * inputs, lanes) }, store)
                        }
                        o += lanes
                    }
                }
            }
        }
    }

    /// `weightGradient[o, 2a + p, 2b + q, c] += (G^T dU G)[a][b]`.
    static func accumulateKernelGradient(
        _ weightGradient: UnsafeMutablePointer<Float>, transformed du: UnsafePointer<Float>, outputs: Int, inputs: Int, plane: Int
    ) {
        let blockChannels = 4 * inputs
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
