/// Geometry of a 2-D sliding window over an NHWC tensor: kernel, stride and zero padding.
/// A convolution maps `[N, H, W, C]` to `[N, Ho, Wo, *]` with
/// `Ho = (H + 2*padH - kernelH) / strideH + 1` (likewise `Wo`).
public struct Window: Equatable, Sendable {
    public var kernelHeight: Int
    public var kernelWidth: Int
    public var strideHeight: Int
    public var strideWidth: Int
    public var paddingHeight: Int
    public var paddingWidth: Int

    public init(kernel: Int, stride: Int = 1, padding: Int = 0) {
        self.init(kernelHeight: kernel, kernelWidth: kernel, strideHeight: stride, strideWidth: stride,
                  paddingHeight: padding, paddingWidth: padding)
    }

    public init(kernelHeight: Int, kernelWidth: Int, strideHeight: Int, strideWidth: Int,
                paddingHeight: Int, paddingWidth: Int) {
        self.kernelHeight = kernelHeight
        self.kernelWidth = kernelWidth
        self.strideHeight = strideHeight
        self.strideWidth = strideWidth
        self.paddingHeight = paddingHeight
        self.paddingWidth = paddingWidth
    }

    public var isPointwise: Bool {
        kernelHeight == 1 && kernelWidth == 1 && strideHeight == 1 && strideWidth == 1
            && paddingHeight == 0 && paddingWidth == 0
    }

    public var area: Int { kernelHeight * kernelWidth }

    /// Output size of a convolution over an input of `height x width`.
    public func convolutionOutput(height: Int, width: Int) -> (height: Int, width: Int) {
        ((height + 2 * paddingHeight - kernelHeight) / strideHeight + 1,
         (width + 2 * paddingWidth - kernelWidth) / strideWidth + 1)
    }

    /// Output size of a transposed convolution: `Ho = (H - 1)*strideH - 2*padH + kernelH`.
    public func transposedOutput(height: Int, width: Int) -> (height: Int, width: Int) {
        ((height - 1) * strideHeight - 2 * paddingHeight + kernelHeight,
         (width - 1) * strideWidth - 2 * paddingWidth + kernelWidth)
    }
}

/// Gathers sliding windows of `image` `[N, H, W, C]` into `columns` `[N*Ho*Wo, kh*kw*C]`, each row
/// ordered `(ky, kx, c)`; positions in the padding read as zero. `(Ho, Wo)` are the window's
/// convolution output size.
public func im2col(
    columns: UnsafeMutablePointer<Float>, image: UnsafePointer<Float>,
    batch: Int, height: Int, width: Int, channels: Int, window: Window
) {
    let (outH, outW) = window.convolutionOutput(height: height, width: width)
    let rowLength = window.area * channels
    for n in 0..<batch {
        let imageBase = image + n * height * width * channels
        for oy in 0..<outH {
            for ox in 0..<outW {
                var destination = columns + ((n * outH + oy) * outW + ox) * rowLength
                let y0 = oy * window.strideHeight - window.paddingHeight
                let x0 = ox * window.strideWidth - window.paddingWidth
                for ky in 0..<window.kernelHeight {
                    let y = y0 + ky
                    if y < 0 || y >= height {
                        destination.update(repeating: 0, count: window.kernelWidth * channels)
                        destination += window.kernelWidth * channels
                        continue
                    }
                    let rowBase = imageBase + y * width * channels
                    for kx in 0..<window.kernelWidth {
                        let x = x0 + kx
                        if x < 0 || x >= width {
                            destination.update(repeating: 0, count: channels)
                        } else {
                            destination.update(from: rowBase + x * channels, count: channels)
                        }
                        destination += channels
                    }
                }
            }
        }
    }
}

/// The adjoint of `im2col`: adds every window row of `columns` `[N*Ho*Wo, kh*kw*C]` back into
/// `image` `[N, H, W, C]` (which the caller zeroes first when it wants a plain sum); values that
/// fall in the padding are dropped.
public func col2im(
    image: UnsafeMutablePointer<Float>, columns: UnsafePointer<Float>,
    batch: Int, height: Int, width: Int, channels: Int, window: Window
) {
    let (outH, outW) = window.convolutionOutput(height: height, width: width)
    let rowLength = window.area * channels
    for n in 0..<batch {
        let imageBase = image + n * height * width * channels
        for oy in 0..<outH {
            for ox in 0..<outW {
                var source = columns + ((n * outH + oy) * outW + ox) * rowLength
                let y0 = oy * window.strideHeight - window.paddingHeight
                let x0 = ox * window.strideWidth - window.paddingWidth
                for ky in 0..<window.kernelHeight {
                    let y = y0 + ky
                    if y < 0 || y >= height {
                        source += window.kernelWidth * channels
                        continue
                    }
                    let rowBase = imageBase + y * width * channels
                    for kx in 0..<window.kernelWidth {
                        let x = x0 + kx
                        if x >= 0 && x < width {
                            add(rowBase + x * channels, source, count: channels)
                        }
                        source += channels
                    }
                }
            }
        }
    }
}
