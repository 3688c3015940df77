// The tile loops and the workspace shared by `Winograd` (F(4x4, 3x3)) and `StridedWinograd`
// (F(4x4, 2x2)), and the partial-vector loads and stores of their transforms.

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

/// `a + s * b`: one fused multiply-add per lane (one rounding) where the build's CPU has the
/// instruction (`VECTOR_FMA`, set by Package.swift), a multiply and an add where it does not.
@inline(__always)
func muladd(_ a: Vector, _ s: Float, _ b: Vector) -> Vector {
    multiplyAdd(a, Vector(repeating: s), b)
}

/// `c + a * b` per lane, fused where the build's CPU has the instruction (see `muladd`).
@inline(__always)
func multiplyAdd(_ c: Vector, _ a: Vector, _ b: Vector) -> Vector {
    #if VECTOR_FMA
    c.addingProduct(a, b)
    #else
    c + a * b
    #endif
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

/// The workspace of one Winograd pass over `tiles` tiles with `positions` transformed positions:
/// the transformed tiles `[tiles, positions, rowWidth]`, the products `[tiles, positions, out]`,
/// the transformed kernel `[positions, out, rowWidth]` (planes `kernelPlane` floats apart) and a
/// row of zeros that stands for pixels outside the image.
struct WinogradWorkspace {
    let positions: Int, tiles: Int, rowWidth: Int, outputChannels: Int, zeroCount: Int

    /// Floats from one position's kernel plane to the next: room for the transformed kernel in
    /// 16-column panels (`KernelOrder`) or for its gradient `[out, rowWidth]`, and one cache line
    /// more. The kernel transforms write (and their adjoints read) all positions' planes for each
    /// channel; planes of a power-of-two size would all fall into the same cache set and evict one
    /// another, and the extra line spreads them over the sets.
    var kernelPlane: Int {
        max(panelColumns(outputChannels) * rowWidth, panelColumns(rowWidth) * outputChannels) + vectorWidth
    }

    var count: Int {
        positions * tiles * (rowWidth + outputChannels) + positions * kernelPlane + zeroCount
    }

    /// `workspace` cut into the tiles, the products, the kernel and the zeros (which this sets).
    func regions(
        _ workspace: UnsafeMutablePointer<Float>
    ) -> (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) {
        let products = workspace + positions * tiles * rowWidth
        let kernel = products + positions * tiles * outputChannels
        let zeros = kernel + positions * kernelPlane
        zeros.update(repeating: 0, count: zeroCount)
        return (workspace, products, kernel, zeros)
    }

    /// The forward products, every position: `M[:, xi] (T x out) = V[:, xi] (T x rowWidth) * U[xi]^T`,
    /// with the kernel in `.inputsByOutputs` panels.
    func multiply(tiles v: UnsafePointer<Float>, kernel ut: UnsafePointer<Float>, into m: UnsafeMutablePointer<Float>) {
        WinogradProducts.tileProducts(positions: positions, tiles: tiles, depth: rowWidth, n: outputChannels,
                                      a: v, panels: ut, plane: kernelPlane, c: m)
    }

    /// The transformed kernel's gradient: `dU[xi] (out x rowWidth) = dM[:, xi]^T (out x T) * V[:, xi]`,
    /// planes `[out, rowWidth]` `kernelPlane` floats apart.
    func kernelGradient(products dm: UnsafePointer<Float>, tiles v: UnsafePointer<Float>, into du: UnsafeMutablePointer<Float>) {
        WinogradProducts.kernelGradient(positions: positions, tiles: tiles, outputs: outputChannels, inputs: rowWidth,
                                        dm: dm, v: v, du: du, plane: kernelPlane)
    }

    /// The transformed tiles' gradient: `dV[:, xi] (T x rowWidth) = dM[:, xi] (T x out) * U[xi]`,
    /// with the kernel in `.outputsByInputs` panels.
    func tileGradient(products dm: UnsafePointer<Float>, kernel u: UnsafePointer<Float>, into dv: UnsafeMutablePointer<Float>) {
        WinogradProducts.tileProducts(positions: positions, tiles: tiles, depth: outputChannels, n: rowWidth,
                                      a: dm, panels: u, plane: kernelPlane, c: dv)
    }
}

/// Columns of a matrix `columns` wide stored in 16-column panels: rounded up to a whole panel.
@inline(__always)
func panelColumns(_ columns: Int) -> Int { (columns + vectorWidth - 1) / vectorWidth * vectorWidth }

/// A `rows x columns` matrix stored as 16-column panels, one after another, each `rows x 16`
/// row-major: entry `(r, c)` at `(c / 16) * rows * 16 + r * 16 + c % 16`. The columns past
/// `columns` in the last panel are zero, so that a product can read whole 16-float rows.
struct Panels {
    let base: UnsafeMutablePointer<Float>, rows: Int, columns: Int

    /// Sets the padding columns of the last panel to zero.
    func zeroPadding() {
        let used = columns % vectorWidth
        guard used != 0 else { return }
        let last = base + (columns / vectorWidth) * rows * vectorWidth
        for r in 0..<rows { (last + r * vectorWidth + used).update(repeating: 0, count: vectorWidth - used) }
    }

    /// Stores the first `lanes` lanes of `v` at `(row, column ..< column + lanes)`.
    @inline(__always)
    func store(_ v: Vector, row: Int, column: Int, lanes: Int) {
        if column % vectorWidth == 0 && lanes == vectorWidth {
            Model.store(v, base + column * rows + row * vectorWidth)
            return
        }
        for l in 0..<lanes {
            let c = column + l
            base[(c / vectorWidth) * rows * vectorWidth + row * vectorWidth + c % vectorWidth] = v[l]
        }
    }
}

/// The transformed kernel of every position: `count` planes `plane` floats apart from `base`, each
/// a `rows x columns` matrix in `Panels`.
struct KernelPlanes {
    let base: UnsafeMutablePointer<Float>, count: Int, plane: Int, rows: Int, columns: Int

    func panels(_ xi: Int) -> Panels { Panels(base: base + xi * plane, rows: rows, columns: columns) }

    /// Sets every plane's padding columns to zero.
    func zeroPadding() {
        for xi in 0..<count { panels(xi).zeroPadding() }
    }

    /// Calls `body` with a store of position `xi`'s value at `(row, column ..< column + lanes)`:
    /// one vector at the same offset of every plane when the lanes fill a panel's row.
    @inline(__always)
    func storing(row: Int, column: Int, lanes: Int, _ body: ((Int, Vector) -> Void) -> Void) {
        if column % vectorWidth == 0 && lanes == vectorWidth {
            let start = base + column * rows + row * vectorWidth
            body { xi, value in store(value, start + xi * plane) }
        } else {
            body { xi, value in panels(xi).store(value, row: row, column: column, lanes: lanes) }
        }
    }
}

/// How a transformed kernel's planes are laid out, as `Panels`: `U[xi]` as `out x in` (what the tile
/// gradient multiplies by) or `U[xi]^T` as `in x out` (what the forward products multiply by).
enum KernelOrder {
    case outputsByInputs, inputsByOutputs
}

/// `lanes` floats `stride` apart from `p` (the rest zero).
@inline(__always)
func gatherLanes(_ p: UnsafePointer<Float>, stride: Int, _ lanes: Int) -> Vector {
    var v = Vector()
    for l in 0..<lanes { v[l] = p[l * stride] }
    return v
}
