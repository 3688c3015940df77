import Model

// Loop-based double-precision references for the fast kernels, written from PyTorch's definitions
// (llm.c style): activations NHWC `[N, H, W, C]`, weights in PyTorch's layouts
// (`Conv2d` `[out, in, kh, kw]`, `ConvTranspose2d` `[in, out, kh, kw]`). They share no code with
// Sources/Model beyond the `Window` value that names the geometry.

/// An NHWC tensor in double precision.
public struct Tensor4: Equatable {
    public var batch: Int
    public var height: Int
    public var width: Int
    public var channels: Int
    public var values: [Double]

    public init(batch: Int, height: Int, width: Int, channels: Int, values: [Double]? = nil) {
        self.batch = batch
        self.height = height
        self.width = width
        self.channels = channels
        let count = batch * height * width * channels
        if let values { precondition(values.count == count, "tensor size") }
        self.values = values ?? [Double](repeating: 0, count: count)
    }

    public var count: Int { values.count }

    @inline(__always)
    public func index(_ n: Int, _ y: Int, _ x: Int, _ c: Int) -> Int {
        ((n * height + y) * width + x) * channels + c
    }

    public subscript(n: Int, y: Int, x: Int, c: Int) -> Double {
        get { values[index(n, y, x, c)] }
        set { values[index(n, y, x, c)] = newValue }
    }
}

/// Gradients of a (transposed) convolution: input `[N, H, W, in]`, weight in PyTorch's layout, bias.
public struct ConvolutionGradients {
    public var input: Tensor4
    public var weight: [Double]
    public var bias: [Double]
}

/// Nearest-neighbour upsampling by 2 (PyTorch's `nn.Upsample(scale_factor=2)`):
/// `y[n, oy, ox, c] = x[n, oy / 2, ox / 2, c]`.
public func naiveUpsampleNearest2x(_ x: Tensor4) -> Tensor4 {
    var y = Tensor4(batch: x.batch, height: 2 * x.height, width: 2 * x.width, channels: x.channels)
    for n in 0..<x.batch { for oy in 0..<y.height { for ox in 0..<y.width { for c in 0..<x.channels {
        y[n, oy, ox, c] = x[n, oy / 2, ox / 2, c]
    } } } }
    return y
}

/// The exact backward of `naiveUpsampleNearest2x`: each input gradient is the sum of its 2x2 block's.
public func naiveUpsampleNearest2xBackward(_ dy: Tensor4) -> Tensor4 {
    var dx = Tensor4(batch: dy.batch, height: dy.height / 2, width: dy.width / 2, channels: dy.channels)
    for n in 0..<dy.batch { for oy in 0..<dy.height { for ox in 0..<dy.width { for c in 0..<dy.channels {
        dx[n, oy / 2, ox / 2, c] += dy[n, oy, ox, c]
    } } } }
    return dx
}

/// `Ho = floor((H + 2p - k) / s) + 1`.
public func naiveConvolutionOutputSize(_ size: Int, kernel: Int, stride: Int, padding: Int) -> Int {
    (size + 2 * padding - kernel) / stride + 1
}

/// `y[n, oy, ox, o] = b[o] + sum_{i, ky, kx} x[n, oy*sh - ph + ky, ox*sw - pw + kx, i] * W[o, i, ky, kx]`,
/// positions outside the input reading zero. A direct 7-loop convolution.
public func naiveConv2d(_ x: Tensor4, weight: [Double], bias: [Double], outputChannels: Int, window w: Window) -> Tensor4 {
    let inC = x.channels, kh = w.kernelHeight, kw = w.kernelWidth
    precondition(weight.count == outputChannels * inC * kh * kw && bias.count == outputChannels)
    let oh = naiveConvolutionOutputSize(x.height, kernel: kh, stride: w.strideHeight, padding: w.paddingHeight)
    let ow = naiveConvolutionOutputSize(x.width, kernel: kw, stride: w.strideWidth, padding: w.paddingWidth)
    var y = Tensor4(batch: x.batch, height: oh, width: ow, channels: outputChannels)
    for n in 0..<x.batch {
        for oy in 0..<oh {
            for ox in 0..<ow {
                for o in 0..<outputChannels {
                    var sum = bias[o]
                    for i in 0..<inC {
                        for ky in 0..<kh {
                            for kx in 0..<kw {
                                let iy = oy * w.strideHeight - w.paddingHeight + ky
                                let ix = ox * w.strideWidth - w.paddingWidth + kx
                                if iy < 0 || iy >= x.height || ix < 0 || ix >= x.width { continue }
                                sum += x[n, iy, ix, i] * weight[((o * inC + i) * kh + ky) * kw + kx]
                            }
                        }
                    }
                    y[n, oy, ox, o] = sum
                }
            }
        }
    }
    return y
}

/// The exact backward of `naiveConv2d` for an output gradient `dy`.
public func naiveConv2dBackward(_ dy: Tensor4, input x: Tensor4, weight: [Double], window w: Window) -> ConvolutionGradients {
    let inC = x.channels, outC = dy.channels, kh = w.kernelHeight, kw = w.kernelWidth
    var dx = Tensor4(batch: x.batch, height: x.height, width: x.width, channels: inC)
    var dW = [Double](repeating: 0, count: weight.count)
    var db = [Double](repeating: 0, count: outC)
    for n in 0..<x.batch {
        for oy in 0..<dy.height {
            for ox in 0..<dy.width {
                for o in 0..<outC {
                    let g = dy[n, oy, ox, o]
                    db[o] += g
                    for i in 0..<inC {
                        for ky in 0..<kh {
                            for kx in 0..<kw {
                                let iy = oy * w.strideHeight - w.paddingHeight + ky
                                let ix = ox * w.strideWidth - w.paddingWidth + kx
                                if iy < 0 || iy >= x.height || ix < 0 || ix >= x.width { continue }
                                let wi = ((o * inC + i) * kh + ky) * kw + kx
                                dW[wi] += g * x[n, iy, ix, i]
                                dx[n, iy, ix, i] += g * weight[wi]
                            }
                        }
                    }
                }
            }
        }
    }
    return ConvolutionGradients(input: dx, weight: dW, bias: db)
}

/// PyTorch's `ConvTranspose2d` (no output padding, no dilation) as a scatter:
/// `y[n, iy*sh - ph + ky, ix*sw - pw + kx, o] += x[n, iy, ix, i] * W[i, o, ky, kx]`, targets outside
/// `Ho = (H - 1)*sh - 2*ph + kh` (likewise `Wo`) dropped, then `+ b[o]`.
public func naiveConvTranspose2d(_ x: Tensor4, weight: [Double], bias: [Double], outputChannels: Int, window w: Window) -> Tensor4 {
    let inC = x.channels, outC = outputChannels, kh = w.kernelHeight, kw = w.kernelWidth
    precondition(weight.count == inC * outC * kh * kw && bias.count == outC)
    let oh = (x.height - 1) * w.strideHeight - 2 * w.paddingHeight + kh
    let ow = (x.width - 1) * w.strideWidth - 2 * w.paddingWidth + kw
    var y = Tensor4(batch: x.batch, height: oh, width: ow, channels: outC)
    for n in 0..<x.batch {
        for iy in 0..<x.height {
            for ix in 0..<x.width {
                for i in 0..<inC {
                    let v = x[n, iy, ix, i]
                    for ky in 0..<kh {
                        for kx in 0..<kw {
                            let oy = iy * w.strideHeight - w.paddingHeight + ky
                            let ox = ix * w.strideWidth - w.paddingWidth + kx
                            if oy < 0 || oy >= oh || ox < 0 || ox >= ow { continue }
                            for o in 0..<outC {
                                y[n, oy, ox, o] += v * weight[((i * outC + o) * kh + ky) * kw + kx]
                            }
                        }
                    }
                }
            }
        }
    }
    for n in 0..<x.batch { for oy in 0..<oh { for ox in 0..<ow { for o in 0..<outC { y[n, oy, ox, o] += bias[o] } } } }
    return y
}

/// The exact backward of `naiveConvTranspose2d` for an output gradient `dy`.
public func naiveConvTranspose2dBackward(_ dy: Tensor4, input x: Tensor4, weight: [Double], window w: Window) -> ConvolutionGradients {
    let inC = x.channels, outC = dy.channels, kh = w.kernelHeight, kw = w.kernelWidth
    var dx = Tensor4(batch: x.batch, height: x.height, width: x.width, channels: inC)
    var dW = [Double](repeating: 0, count: weight.count)
    var db = [Double](repeating: 0, count: outC)
    for n in 0..<dy.batch { for oy in 0..<dy.height { for ox in 0..<dy.width { for o in 0..<outC {
        db[o] += dy[n, oy, ox, o]
    } } } }
    for n in 0..<x.batch {
        for iy in 0..<x.height {
            for ix in 0..<x.width {
                for i in 0..<inC {
                    for ky in 0..<kh {
                        for kx in 0..<kw {
                            let oy = iy * w.strideHeight - w.paddingHeight + ky
                            let ox = ix * w.strideWidth - w.paddingWidth + kx
                            if oy < 0 || oy >= dy.height || ox < 0 || ox >= dy.width { continue }
                            for o in 0..<outC {
                                let wi = ((i * outC + o) * kh + ky) * kw + kx
                                dW[wi] += x[n, iy, ix, i] * dy[n, oy, ox, o]
                                dx[n, iy, ix, i] += weight[wi] * dy[n, oy, ox, o]
                            }
                        }
                    }
                }
            }
        }
    }
    return ConvolutionGradients(input: dx, weight: dW, bias: db)
}

public func naiveReLU(_ x: Tensor4) -> Tensor4 {
    var y = x
    for i in y.values.indices { y.values[i] = max(y.values[i], 0) }
    return y
}

/// `dx = dy * (x > 0)` (the derivative at 0 taken as 0, as `reluBackward` does from the output).
public func naiveReLUBackward(_ dy: Tensor4, input x: Tensor4) -> Tensor4 {
    var dx = dy
    for i in dx.values.indices where !(x.values[i] > 0) { dx.values[i] = 0 }
    return dx
}

public func naiveAdd(_ a: Tensor4, _ b: Tensor4) -> Tensor4 {
    precondition(a.count == b.count)
    var y = a
    for i in y.values.indices { y.values[i] += b.values[i] }
    return y
}

/// The residual block of spec/model.md: `y = x + conv1x1(relu(conv3x3(relu(x))))`, weights in
/// PyTorch's layout.
public struct NaiveResidualBlock {
    public var weight3: [Double], bias3: [Double], weight1: [Double], bias1: [Double]
    public var channels: Int, residualChannels: Int

    public init(weight3: [Double], bias3: [Double], weight1: [Double], bias1: [Double], channels: Int, residualChannels: Int) {
        self.weight3 = weight3; self.bias3 = bias3; self.weight1 = weight1; self.bias1 = bias1
        self.channels = channels; self.residualChannels = residualChannels
    }

    public static let window3 = Window(kernel: 3, stride: 1, padding: 1)
    public static let window1 = Window(kernel: 1)

    public func forward(_ x: Tensor4) -> Tensor4 {
        let a = naiveReLU(x)
        let h = naiveReLU(naiveConv2d(a, weight: weight3, bias: bias3, outputChannels: residualChannels, window: Self.window3))
        return naiveAdd(x, naiveConv2d(h, weight: weight1, bias: bias1, outputChannels: channels, window: Self.window1))
    }

    /// Gradients with respect to the input and the four tensors (PyTorch layouts).
    public func backward(_ dy: Tensor4, input x: Tensor4) -> (input: Tensor4, weight3: [Double], bias3: [Double], weight1: [Double], bias1: [Double]) {
        let a = naiveReLU(x)
        let preH = naiveConv2d(a, weight: weight3, bias: bias3, outputChannels: residualChannels, window: Self.window3)
        let h = naiveReLU(preH)
        let g1 = naiveConv2dBackward(dy, input: h, weight: weight1, window: Self.window1)
        let dPreH = naiveReLUBackward(g1.input, input: preH)
        let g3 = naiveConv2dBackward(dPreH, input: a, weight: weight3, window: Self.window3)
        let dx = naiveAdd(dy, naiveReLUBackward(g3.input, input: x))
        return (dx, g3.weight, g3.bias, g1.weight, g1.bias)
    }
}

/// `SmoothFill` written plainly in double precision for one image `[height, width, channels]`:
/// the pull-push pyramid with bilinear upsampling and Jacobi sweeps at every level, each value
/// computed from its definition (`missing`: 1 = missing, fractions blend).
public func naiveSmoothFill(_ image: [Double], missing: [Double], height: Int, width: Int, channels: Int,
                            iterations: Int = SmoothFill.iterationsPerLevel, plateSweeps: Int = 0) -> [Double] {
    guard missing.contains(where: { $0 > 0 }) else { return image }
    struct Level { var h: Int; var w: Int; var v: [Double]; var a: [Double] }
    var levels = [Level(h: height, w: width, v: image, a: missing.map { min(1, max(0, 1 - $0)) })]
    while let last = levels.last, last.h > 1 || last.w > 1, last.a.contains(where: { $0 < 1 }) {
        let (h, w) = ((last.h + 1) / 2, (last.w + 1) / 2)
        var next = Level(h: h, w: w, v: [Double](repeating: 0, count: h * w * channels), a: [Double](repeating: 0, count: h * w))
        for i in 0..<h { for j in 0..<w {
            var total = 0.0
            var sums = [Double](repeating: 0, count: channels)
            for (row, col) in [(2 * i, 2 * j), (2 * i, 2 * j + 1), (2 * i + 1, 2 * j), (2 * i + 1, 2 * j + 1)]
            where row < last.h && col < last.w {
                let q = row * last.w + col
                total += last.a[q]
                for k in 0..<channels { sums[k] += last.a[q] * last.v[q * channels + k] }
            }
            next.a[i * w + j] = min(1, total)
            for k in 0..<channels { next.v[(i * w + j) * channels + k] = total > 0 ? sums[k] / total : 0 }
        } }
        levels.append(next)
    }
    var result = levels.last!
    for q in 0..<(result.h * result.w) where result.a[q] == 0 { for k in 0..<channels { result.v[q * channels + k] = 0 } }
    for l in stride(from: levels.count - 2, through: 0, by: -1) {
        let own = levels[l]
        // Fine index i sits at coarse coordinate i / 2 - 1/4; clamp the two taps to the level.
        func taps(_ i: Int, _ n: Int) -> (Int, Int, Double) {
            let x = Double(i) / 2 - 0.25, first = Int(x.rounded(.down))
            return (min(max(first, 0), n - 1), min(max(first + 1, 0), n - 1), x - Double(first))
        }
        var v = own.v
        for row in 0..<own.h { for col in 0..<own.w {
            let (r0, r1, fr) = taps(row, result.h), (c0, c1, fc) = taps(col, result.w)
            let a = own.a[row * own.w + col]
            for k in 0..<channels {
                func at(_ r: Int, _ c: Int) -> Double { result.v[(r * result.w + c) * channels + k] }
                let up = (1 - fr) * ((1 - fc) * at(r0, c0) + fc * at(r0, c1)) + fr * ((1 - fc) * at(r1, c0) + fc * at(r1, c1))
                v[(row * own.w + col) * channels + k] = a * own.v[(row * own.w + col) * channels + k] + (1 - a) * up
            }
        } }
        for _ in 0..<iterations {
            var next = v
            for row in 0..<own.h { for col in 0..<own.w {
                let a = own.a[row * own.w + col]
                let neighbours = [(max(row - 1, 0), col), (min(row + 1, own.h - 1), col), (row, max(col - 1, 0)), (row, min(col + 1, own.w - 1))]
                for k in 0..<channels {
                    let mean = neighbours.map { v[($0.0 * own.w + $0.1) * channels + k] }.reduce(0, +) / 4
                    next[(row * own.w + col) * channels + k] = a * own.v[(row * own.w + col) * channels + k] + (1 - a) * mean
                }
            } }
            v = next
        }
        // Thin plate sweeps on the coarse levels: u - (1/2) L(L(u)) / 20, blended like the above.
        func laplacian(_ u: [Double]) -> [Double] {
            var out = u
            for row in 0..<own.h { for col in 0..<own.w { for k in 0..<channels {
                func at(_ r: Int, _ c: Int) -> Double { u[(min(max(r, 0), own.h - 1) * own.w + min(max(c, 0), own.w - 1)) * channels + k] }
                out[(row * own.w + col) * channels + k] = at(row - 1, col) + at(row + 1, col) + at(row, col - 1) + at(row, col + 1) - 4 * at(row, col)
            } } }
            return out
        }
        for _ in 0..<(l > 0 ? plateSweeps : 0) {
            let bending = laplacian(laplacian(v))
            for q in 0..<(own.h * own.w) {
                let a = own.a[q]
                for k in 0..<channels {
                    let i = q * channels + k
                    v[i] = a * own.v[i] + (1 - a) * (v[i] - 0.5 * bending[i] / 20)
                }
            }
        }
        result = Level(h: own.h, w: own.w, v: v, a: own.a)
    }
    return result.v
}
