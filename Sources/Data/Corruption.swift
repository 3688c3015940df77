import Model
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A corruption's parameter: one value, or a range `lower...upper` from which each image draws
/// its own value (from the image's keyed stream; see `CorruptionPipeline`): uniformly, or
/// log-uniformly (`isLogarithmic`: every octave of the range equally often; both ends > 0).
public struct ValueRange: Equatable, Sendable, ExpressibleByFloatLiteral, ExpressibleByIntegerLiteral {
    public let lower: Float
    public let upper: Float
    /// Draws `lower * (upper / lower)^u` instead of `lower + (upper - lower) u`.
    public let isLogarithmic: Bool

    public init(_ value: Float) { (lower, upper, isLogarithmic) = (value, value, false) }
    /// `lower <= upper`; equal ends are one value. A logarithmic range needs `lower > 0`.
    public init(_ lower: Float, _ upper: Float, logarithmic: Bool = false) {
        precondition(lower <= upper, "a range runs from low to high")
        precondition(!logarithmic || lower > 0, "a logarithmic range starts above 0")
        (self.lower, self.upper) = (lower, upper)
        isLogarithmic = logarithmic && lower < upper
    }
    public init(floatLiteral value: Float) { self.init(value) }
    public init(integerLiteral value: Int) { self.init(Float(value)) }

    /// One value: nothing is drawn for it.
    public var isFixed: Bool { lower == upper }

    /// The value for one image: `lower`, or with `u` uniform in `[0, 1)` from `random` (one draw,
    /// only for a range) `lower + (upper - lower) u`, or `lower * exp(u log(upper / lower))` (in
    /// double precision, then rounded to float) for a logarithmic range; never above `upper`.
    @inline(__always)
    func draw(_ random: inout SplitMix64) -> Float {
        if isFixed { return lower }
        let u = random.nextUnit()
        if isLogarithmic {
            return min(Float(Double(lower) * exp(u * log(Double(upper) / Double(lower)))), upper)
        }
        return min(lower + (upper - lower) * Float(u), upper)
    }
}

/// One corruption and its parameters. Every value is in pixel space `p` in `[0, 1]`.
public enum Corruption: Equatable, Sendable {
    /// Additive Gaussian noise `N(0, sigma^2)` per element, then clipped to `[0, 1]`.
    case noise(sigma: ValueRange)
    /// Each pixel, with probability `fraction`, becomes 0 or 1 (equal odds) in all channels.
    case saltAndPepper(fraction: ValueRange)
    /// One axis-aligned rectangle covering about `area` of the image, filled with `fill`.
    case mask(area: ValueRange, fill: MaskFill)
    /// Separable Gaussian blur, radius `ceil(3 sigma)`, normalised kernel, replicated edges.
    case blur(sigma: ValueRange)
    /// `p' = gain * p^gamma`, clipped to `[0, 1]` (low light with `gamma > 1`, `gain < 1`).
    case darken(gamma: ValueRange, gain: ValueRange)
    /// 1 to `count` holes per image (the number drawn), each a free-form brush stroke or a box of
    /// a size drawn from 1/16 to 1/2 of the image's sides, filled with `fill` (inpainting). `scale`
    /// multiplies every size (a stroke's radius and segment lengths, a box's sides; each clamped
    /// to the image): crops drawn with scale 2 hold the holes of images twice their size.
    case holes(count: Int, fill: MaskFill, scale: Float = 1)
    /// Each value clipped to `[0, 1]` and rounded (half to even) to the nearest of `steps + 1`
    /// evenly spaced levels, `p' = round(p * steps) / steps`: `quantize:255` is what saving an
    /// 8-bit image does, so a model meets the rounding its real inputs carry.
    case quantize(steps: Int)
}

extension Corruption {
    /// `mask` and `holes`: the items whose pixels `CorruptionPipeline.apply` marks as missing.
    public var fillsMissingPixels: Bool {
        switch self {
        case .mask, .holes: return true
        default: return false
        }
    }
}

/// What a mask is filled with: one value in `[0, 1]`, or uniform `[0, 1]` noise per element.
public enum MaskFill: Equatable, Sendable {
    case value(Float)
    case noise
}

/// An ordered list of corruptions parsed from a spec string such as `noise:0.1,mask:0.25`, applied
/// on the fly to the input images of restoration training (the target stays clean).
///
/// Spec: comma-separated items `name:arg[:arg]`, whitespace tolerated, names case-insensitive:
///
/// | item | corruption |
/// | --- | --- |
/// | `noise:SIGMA` | additive Gaussian noise, `SIGMA >= 0` |
/// | `saltpepper:FRACTION` (or `sp:`) | salt-and-pepper pixels, `0 <= FRACTION <= 1` |
/// | `mask:AREA[:VALUE\|noise]` | one rectangle of about `AREA` of the image, `0 < AREA <= 1`, filled with `VALUE` in `[0, 1]` (default 0) or uniform noise |
/// | `blur:SIGMA` | Gaussian blur, `0 <= SIGMA <= 100` pixels |
/// | `dark:GAMMA[:GAIN]` | `p' = GAIN * p^GAMMA`, `GAMMA > 0`, `GAIN >= 0` (default 1) |
/// | `holes:COUNT[:VALUE\|noise[:SCALE]]` | 1 to `COUNT` (1...64) free-form strokes and boxes, filled like `mask`, their sizes times `SCALE` (0 < `SCALE` <= 8, default 1) |
/// | `quantize:STEPS` | each value rounded to `STEPS + 1` levels in `[0, 1]` (1...65535; 255: 8-bit) |
///
/// Every number except the mask's fill value may instead be a range `LOW..HIGH` (`noise:0.02..0.2`,
/// `blur:0.5..2`, `mask:0.05..0.5`, `dark:1.5..3:0.4..1`): each image draws its own value,
/// uniformly in the range, as the first draw(s) of its stream for that item (in argument order),
/// so blind restoration models see a spread of damage. `LOW~HIGH` (both ends > 0) draws
/// log-uniformly instead, every octave equally often (`noise:0.02~0.2` gives as many images below
/// sigma 0.063 as above it). A range with equal ends is that value.
///
/// The empty string is no corruption. `description` is the canonical spec (defaults left out),
/// which parses back to an equal pipeline.
///
/// Random numbers: corruption number `position` (0-based, in list order) of the sample with global
/// index `sampleIndex` in `epoch` draws from its own `SplitMix64`, whose starting state is a hash of
/// `(seed, epoch, sampleIndex, position)` (the three integers folded in one at a time with
/// `SplitMix64.mix`, then `SplitMix64(seed:stream:)`); see `randomStream`. In effect this is a
/// counter-based generator: a sample's corrupted image is a function of that key and its clean
/// pixels alone, whichever rank reads it, in whatever order, after however many resumes. Within one
/// stream the draws are taken in a fixed order (row-major over `[H, W, C]`).
public struct CorruptionPipeline: Equatable, Sendable, CustomStringConvertible {
    public let corruptions: [Corruption]
    /// For each position, the half kernel `w[0...r]` of a blur (`w[0]` the centre; the full kernel
    /// `w[r]...w[1], w[0], w[1]...w[r]` sums to 1), empty for other corruptions. Computed once here
    /// so that `apply` allocates nothing.
    private let blurKernels: [[Float]]

    /// The largest blur sigma accepted, in pixels (its kernel has 601 taps).
    public static let largestBlurSigma: Float = 100

    private static let usage =
        "use noise:SIGMA, saltpepper:FRACTION, mask:AREA[:VALUE|noise], blur:SIGMA, dark:GAMMA[:GAIN], holes:COUNT[:VALUE|noise[:SCALE]], quantize:STEPS"

    /// Parses `spec` (see the type's documentation). Throws a `DataError` of one line naming the
    /// offending item and showing a valid example.
    public init(spec: String) throws {
        var corruptions: [Corruption] = []
        let whole = Self.trimmed(Substring(spec))
        if !whole.isEmpty {
            for rawItem in whole.split(separator: ",", omittingEmptySubsequences: false) {
                let item = Self.trimmed(rawItem)
                guard !item.isEmpty else {
                    throw DataError("empty item in --corrupt '\(Self.oneLine(spec))'; separate corruptions with single commas, e.g. noise:0.1,mask:0.25")
                }
                corruptions.append(try Self.parse(item: item, spec: spec))
            }
        }
        self.init(validated: corruptions)
    }

    private init(validated corruptions: [Corruption]) {
        self.corruptions = corruptions
        blurKernels = corruptions.map { corruption in
            if case .blur(let sigma) = corruption, sigma.isFixed { return Self.halfKernel(sigma: sigma.lower) }
            return []
        }
    }

    public static func == (a: CorruptionPipeline, b: CorruptionPipeline) -> Bool {
        a.corruptions == b.corruptions
    }

    public var isEmpty: Bool { corruptions.isEmpty }

    /// The canonical spec: `noise:0.1,mask:0.25:noise,dark:2.2:0.6,blur:0.5..2`; `""` when empty.
    public var description: String {
        corruptions.map { corruption -> String in
            switch corruption {
            case .noise(let sigma):
                return "noise:\(Self.format(sigma))"
            case .saltAndPepper(let fraction):
                return "saltpepper:\(Self.format(fraction))"
            case .mask(let area, .value(let value)):
                return value == 0 ? "mask:\(Self.format(area))" : "mask:\(Self.format(area)):\(Self.format(value))"
            case .mask(let area, .noise):
                return "mask:\(Self.format(area)):noise"
            case .blur(let sigma):
                return "blur:\(Self.format(sigma))"
            case .darken(let gamma, let gain):
                return gain == 1 ? "dark:\(Self.format(gamma))" : "dark:\(Self.format(gamma)):\(Self.format(gain))"
            case .holes(let count, let fill, let scale):
                let fillText: String
                switch fill {
                case .value(let value): fillText = Self.format(value)
                case .noise: fillText = "noise"
                }
                if scale != 1 { return "holes:\(count):\(fillText):\(Self.format(scale))" }
                return fill == .value(0) ? "holes:\(count)" : "holes:\(count):\(fillText)"
            case .quantize(let steps):
                return "quantize:\(steps)"
            }
        }.joined(separator: ",")
    }

    /// Whether some item fills pixels that `apply` marks as missing (`mask` and `holes`).
    public var fillsMissingPixels: Bool { corruptions.contains(where: \.fillsMissingPixels) }

    /// Whether every item fills pixels that `apply` marks as missing, and there is at least one:
    /// what a mask-aware model, which keeps every other pixel, is for.
    public var onlyFillsMissingPixels: Bool { !corruptions.isEmpty && corruptions.allSatisfy(\.fillsMissingPixels) }

    /// Whether it adds Gaussian noise and does nothing else but round to a number of steps: the
    /// damage `restore --noise-consistency` models.
    public var addsNoiseAlone: Bool {
        corruptions.contains { if case .noise = $0 { true } else { false } }
            && corruptions.allSatisfy {
                switch $0 {
                case .noise, .quantize: true
                default: false
                }
            }
    }

    /// The sigma of its noise when it adds noise once, of one fixed sigma above 0.
    public var fixedNoiseSigma: Float? {
        let sigmas = corruptions.compactMap { if case .noise(let sigma) = $0 { sigma } else { nil } }
        guard sigmas.count == 1, sigmas[0].isFixed, sigmas[0].lower > 0 else { return nil }
        return sigmas[0].lower
    }

    /// Whether any parameter is a range (a blind restoration spec).
    public var hasRanges: Bool {
        corruptions.contains { corruption in
            switch corruption {
            case .noise(let r), .saltAndPepper(let r), .mask(let r, _), .blur(let r): return !r.isFixed
            case .darken(let gamma, let gain): return !gamma.isFixed || !gain.isFixed
            case .holes, .quantize: return false
            }
        }
    }

    /// Floats of scratch space `apply` needs for one image (blur needs one image's worth).
    public static func scratchCount(height: Int, width: Int, channels: Int) -> Int {
        height * width * channels
    }

    /// Applies the corruptions in order, in place, to ONE image `[H, W, C]` in the model's
    /// normalised space (pixel p in [0, 1] is stored as p - 0.5). Every random draw comes from a
    /// counter-based stream keyed by (seed, epoch, global sample index, position of the corruption
    /// in the list), so the result depends on nothing else (not on the number of ranks, prefetching
    /// or resume). No allocation.
    ///
    /// `scratch` holds at least `scratchCount(height:width:channels:)` floats; its contents on entry
    /// do not matter and on return are undefined. It must not overlap `image`.
    ///
    /// `missing` (`[H, W]`, optional) receives the mask of the pixels the `mask` and `holes` items
    /// filled: 1 there, 0 elsewhere (the input of mask-aware models). Other corruptions mark nothing.
    public func apply(to image: UnsafeMutablePointer<Float>, height: Int, width: Int, channels: Int,
                      seed: UInt64, epoch: Int, sampleIndex: Int, scratch: UnsafeMutablePointer<Float>,
                      missing: UnsafeMutablePointer<Float>? = nil) {
        precondition(height >= 1 && width >= 1 && channels >= 1, "an image needs at least one pixel and one channel")
        missing?.update(repeating: 0, count: height * width)
        for (position, corruption) in corruptions.enumerated() {
            var random = Self.randomStream(seed: seed, epoch: epoch, sampleIndex: sampleIndex, position: position)
            // A range's value is the first draw of the item's stream; a single value draws nothing,
            // so fixed specs damage exactly as they always have.
            switch corruption {
            case .noise(let sigma):
                Self.addNoise(image, count: height * width * channels, sigma: sigma.draw(&random), random: &random)
            case .saltAndPepper(let fraction):
                Self.saltAndPepper(image, pixels: height * width, channels: channels, fraction: fraction.draw(&random), random: &random)
            case .mask(let area, let fill):
                Self.mask(image, height: height, width: width, channels: channels, area: area.draw(&random), fill: fill,
                          random: &random, missing: missing)
            case .blur(let sigma) where sigma.isFixed:
                blurKernels[position].withUnsafeBufferPointer { kernel in
                    Self.blur(image, height: height, width: width, channels: channels, halfKernel: kernel, scratch: scratch)
                }
            case .blur(let sigma):
                // This image's kernel, on the stack (at most 301 taps).
                let value = sigma.draw(&random)
                withUnsafeTemporaryAllocation(of: Float.self, capacity: Self.halfKernelCount(sigma: value)) { kernel in
                    Self.fillHalfKernel(kernel, sigma: value)
                    Self.blur(image, height: height, width: width, channels: channels, halfKernel: UnsafeBufferPointer(kernel), scratch: scratch)
                }
            case .darken(let gamma, let gain):
                let g = gamma.draw(&random)
                Self.darken(image, count: height * width * channels, gamma: g, gain: gain.draw(&random))
            case .holes(let count, let fill, let scale):
                Self.holes(image, height: height, width: width, channels: channels, most: count, fill: fill,
                           scale: Double(scale), marks: scratch, random: &random, missing: missing)
            case .quantize(let steps):
                let levels = Float(steps)
                for i in 0..<(height * width * channels) {
                    image[i] = (Self.clipToUnit(image[i] + 0.5) * levels).rounded(.toNearestOrEven) / levels - 0.5
                }
            }
        }
    }

    /// The random stream of corruption `position` applied to sample `sampleIndex` in `epoch`:
    /// `SplitMix64(seed: seed, stream: k)` with
    /// `k = mix(mix(mix(tag ^ epoch) ^ sampleIndex) ^ position)` (`mix` = `SplitMix64.mix`, the
    /// integers as 64-bit two's complement, `tag` a constant that keeps these streams apart from
    /// the sampler's and the weights').
    static func randomStream(seed: UInt64, epoch: Int, sampleIndex: Int, position: Int) -> SplitMix64 {
        var key = SplitMix64.mix(0xC022_0F7E_0000_0000 ^ UInt64(bitPattern: Int64(epoch)))
        key = SplitMix64.mix(key ^ UInt64(bitPattern: Int64(sampleIndex)))
        key = SplitMix64.mix(key ^ UInt64(bitPattern: Int64(position)))
        return SplitMix64(seed: seed, stream: key)
    }

    // MARK: - The corruptions, on normalised values x = p - 0.5

    @inline(__always)
    private static func clipToUnit(_ p: Float) -> Float { p < 0 ? 0 : (p > 1 ? 1 : p) }

    /// `p' = clip(p + sigma * n)`, `n ~ N(0, 1)` per element; sigma 0 leaves the image unchanged.
    /// Box-Muller as in `SplitMix64.normal()`, but both of its values are used: elements `2i` and
    /// `2i + 1` take `r cos(t)` and `r sin(t)` of draw pair `i` (half the cost of one per call).
    private static func addNoise(_ image: UnsafeMutablePointer<Float>, count: Int, sigma: Float, random: inout SplitMix64) {
        guard sigma > 0 else { return }
        var i = 0
        while i < count {
            var u1 = random.nextUnit()
            while u1 <= Double.leastNormalMagnitude { u1 = random.nextUnit() }
            let radius = (-2 * log(u1)).squareRoot(), angle = 2 * Double.pi * random.nextUnit()
            image[i] = clipToUnit(image[i] + 0.5 + sigma * Float(radius * cos(angle))) - 0.5
            if i + 1 < count { image[i + 1] = clipToUnit(image[i + 1] + 0.5 + sigma * Float(radius * sin(angle))) - 0.5 }
            i += 2
        }
    }

    /// Per pixel in row-major order: one uniform draw `u`; if `u < fraction`, one more draw whose
    /// top bit picks 0 (pepper) or 1 (salt) for all channels. Other pixels are untouched.
    private static func saltAndPepper(_ image: UnsafeMutablePointer<Float>, pixels: Int, channels: Int,
                                      fraction: Float, random: inout SplitMix64) {
        guard fraction > 0 else { return }
        let threshold = Double(fraction)
        for pixel in 0..<pixels {
            guard random.nextUnit() < threshold else { continue }
            let value: Float = random.next() >> 63 == 0 ? -0.5 : 0.5
            let base = image + pixel * channels
            for c in 0..<channels { base[c] = value }
        }
    }

    /// The mask's rectangle `(top, left, height, width)` for an `imageHeight x imageWidth` image.
    ///
    /// Draws the aspect ratio `height / width` log-uniformly in `[1/2, 2]`, takes
    /// `height = sqrt(A * aspect)`, `width = A / height` with `A = area * imageHeight * imageWidth`;
    /// a side clamped to the image gives the rest of the area to the other side, so the area is
    /// kept whenever it fits; both sides are then rounded (at least 1). Then the top and left
    /// corner are uniform over all positions that keep the rectangle inside the image.
    static func maskRectangle(imageHeight: Int, imageWidth: Int, area: Float,
                              random: inout SplitMix64) -> (top: Int, left: Int, height: Int, width: Int) {
        let target = Double(area) * Double(imageHeight) * Double(imageWidth)
        let aspect = exp(log(0.5) + (log(2.0) - log(0.5)) * random.nextUnit())
        var height = min(max((target * aspect).squareRoot(), 1), Double(imageHeight))
        let width = min(max(target / height, 1), Double(imageWidth))
        height = min(max(target / width, 1), Double(imageHeight))
        let rows = min(max(Int(height.rounded()), 1), imageHeight)
        let columns = min(max(Int(width.rounded()), 1), imageWidth)
        let top = random.below(imageHeight - rows + 1)
        let left = random.below(imageWidth - columns + 1)
        return (top, left, rows, columns)
    }

    /// Fills the rectangle of `maskRectangle` with the value, or with uniform `[0, 1)` noise drawn
    /// per element in row-major order.
    private static func mask(_ image: UnsafeMutablePointer<Float>, height: Int, width: Int, channels: Int,
                             area: Float, fill: MaskFill, random: inout SplitMix64, missing: UnsafeMutablePointer<Float>?) {
        let box = maskRectangle(imageHeight: height, imageWidth: width, area: area, random: &random)
        for y in box.top..<(box.top + box.height) {
            (missing.map { $0 + y * width + box.left })?.update(repeating: 1, count: box.width)
            let row = image + (y * width + box.left) * channels
            let count = box.width * channels
            switch fill {
            case .value(let value):
                row.update(repeating: value - 0.5, count: count)
            case .noise:
                for i in 0..<count { row[i] = random.uniform(0, 1) - 0.5 }
            }
        }
    }

    /// Marks in `marks` (`[H, W]`, 1 = hole) the holes of one image: the number is `1 + below(most)`;
    /// each hole is, on one draw's top bit, a box or a stroke. `scale` multiplies the sizes below
    /// (`s`, 1 by default); the draws are the same whatever it is.
    /// - A box's sides are `round(s * f * side)` (from 1 to the side) with `f` log-uniform in
    ///   [1/16, 1/2], drawn for the rows then the columns; its corner is uniform over the positions
    ///   inside the image.
    /// - A stroke is a brush of radius `0.5 + u * max(1, s * min(H, W) / 12)` dragged from a uniform
    ///   start through 1 to 6 segments, each in a uniform direction and `s (0.1 + 0.3 u) min(H, W)`
    ///   long (its end clamped to the image), stamped every half pixel.
    static func markHoles(_ marks: UnsafeMutablePointer<Float>, height: Int, width: Int, most: Int, scale: Double = 1,
                          random: inout SplitMix64) {
        marks.update(repeating: 0, count: height * width)
        let shortest = Double(min(height, width))
        func side(_ length: Int) -> Int {
            let f = exp(log(1.0 / 16) + (log(0.5) - log(1.0 / 16)) * random.nextUnit())
            return min(max(Int((scale * f * Double(length)).rounded()), 1), length)
        }
        for _ in 0..<(1 + random.below(most)) {
            if random.next() >> 63 == 0 {
                let rows = side(height), columns = side(width)
                let top = random.below(height - rows + 1), left = random.below(width - columns + 1)
                for y in top..<(top + rows) { (marks + y * width + left).update(repeating: 1, count: columns) }
            } else {
                let radius = 0.5 + random.nextUnit() * max(1, scale * shortest / 12)
                var (y, x) = (random.nextUnit() * Double(height), random.nextUnit() * Double(width))
                for _ in 0..<(1 + random.below(6)) {
                    let angle = 2 * Double.pi * random.nextUnit(), length = scale * (0.1 + 0.3 * random.nextUnit()) * shortest
                    let endY = min(max(y + length * sin(angle), 0), Double(height - 1))
                    let endX = min(max(x + length * cos(angle), 0), Double(width - 1))
                    let steps = max(Int((2 * max(abs(endY - y), abs(endX - x))).rounded(.up)), 1)
                    for step in 0...steps {
                        let t = Double(step) / Double(steps)
                        let (cy, cx) = (y + t * (endY - y), x + t * (endX - x))
                        let y0 = max(Int((cy - radius).rounded(.up)), 0), y1 = min(Int((cy + radius).rounded(.down)), height - 1)
                        let x0 = max(Int((cx - radius).rounded(.up)), 0), x1 = min(Int((cx + radius).rounded(.down)), width - 1)
                        guard y0 <= y1, x0 <= x1 else { continue }
                        for py in y0...y1 {
                            for px in x0...x1 where (Double(py) - cy) * (Double(py) - cy) + (Double(px) - cx) * (Double(px) - cx) <= radius * radius {
                                marks[py * width + px] = 1
                            }
                        }
                    }
                    (y, x) = (endY, endX)
                }
            }
        }
    }

    /// Fills the holes of `markHoles` (marked in `marks`, which is overwritten) with the value, or
    /// with uniform `[0, 1)` noise drawn per element of the holes in row-major order.
    private static func holes(_ image: UnsafeMutablePointer<Float>, height: Int, width: Int, channels: Int, most: Int,
                              fill: MaskFill, scale: Double, marks: UnsafeMutablePointer<Float>, random: inout SplitMix64,
                              missing: UnsafeMutablePointer<Float>?) {
        markHoles(marks, height: height, width: width, most: most, scale: scale, random: &random)
        for pixel in 0..<(height * width) where marks[pixel] != 0 {
            missing?[pixel] = 1
            let base = image + pixel * channels
            switch fill {
            case .value(let value): base.update(repeating: value - 0.5, count: channels)
            case .noise: for c in 0..<channels { base[c] = random.uniform(0, 1) - 0.5 }
            }
        }
    }

    /// `w[k] = exp(-k^2 / (2 sigma^2))` for `k` in `0...ceil(3 sigma)`, divided by the sum over
    /// `-r...r`. Sigma 0 gives `[1]`.
    static func halfKernel(sigma: Float) -> [Float] {
        var kernel = [Float](repeating: 0, count: halfKernelCount(sigma: sigma))
        kernel.withUnsafeMutableBufferPointer { fillHalfKernel($0, sigma: sigma) }
        return kernel
    }

    /// Taps of the half kernel: `ceil(3 sigma) + 1`.
    static func halfKernelCount(sigma: Float) -> Int { Int((3 * Double(sigma)).rounded(.up)) + 1 }

    /// Writes `halfKernel(sigma:)` into `kernel` (`halfKernelCount(sigma:)` floats), allocating nothing.
    static func fillHalfKernel(_ kernel: UnsafeMutableBufferPointer<Float>, sigma: Float) {
        let s = Double(sigma)
        let radius = kernel.count - 1
        guard radius > 0 else { kernel[0] = 1; return }
        var tail = 0.0  // summed in the order the first version summed it, so fixed blurs keep their bits
        for k in 1...radius { tail += exp(-Double(k * k) / (2 * s * s)) }
        let total = 1 + 2 * tail
        for k in 0...radius { kernel[k] = Float(exp(-Double(k * k) / (2 * s * s)) / total) }
    }

    /// Rows then columns, each `out[i] = w[0] in[i] + sum_k w[k] (in[i-k] + in[i+k])` with indices
    /// clamped to the image (replicated edges). Rows go image -> scratch, columns scratch -> image.
    /// A weighted mean of values in `[0, 1]` stays there, so no clipping.
    private static func blur(_ image: UnsafeMutablePointer<Float>, height: Int, width: Int, channels: Int,
                             halfKernel w: UnsafeBufferPointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        guard w.count > 1 else { return }
        let rowLength = width * channels
        for y in 0..<height {
            let source = image + y * rowLength, target = scratch + y * rowLength
            for x in 0..<width {
                let out = target + x * channels, centre = source + x * channels
                for c in 0..<channels { out[c] = w[0] * centre[c] }
                for k in 1..<w.count {
                    let left = source + max(x - k, 0) * channels
                    let right = source + min(x + k, width - 1) * channels
                    let weight = w[k]
                    for c in 0..<channels { out[c] += weight * (left[c] + right[c]) }
                }
            }
        }
        for y in 0..<height {
            let out = image + y * rowLength, centre = scratch + y * rowLength
            for i in 0..<rowLength { out[i] = w[0] * centre[i] }
            for k in 1..<w.count {
                let up = scratch + max(y - k, 0) * rowLength
                let down = scratch + min(y + k, height - 1) * rowLength
                let weight = w[k]
                for i in 0..<rowLength { out[i] += weight * (up[i] + down[i]) }
            }
        }
    }

    /// `p' = clip(gain * clip(p)^gamma)`.
    private static func darken(_ image: UnsafeMutablePointer<Float>, count: Int, gamma: Float, gain: Float) {
        for i in 0..<count {
            let p = clipToUnit(image[i] + 0.5)
            image[i] = clipToUnit(gain * powf(p, gamma)) - 0.5
        }
    }

    // MARK: - Parsing

    private static func parse(item: Substring, spec: String) throws -> Corruption {
        let parts = item.split(separator: ":", omittingEmptySubsequences: false).map { trimmed($0) }
        let name = parts[0].lowercased()
        let arguments = Array(parts.dropFirst())
        let got = " (got '\(oneLine(String(item)))')"

        /// The argument at `index` as a finite number satisfying `valid`, or nil.
        func number(_ index: Int, _ valid: (Float) -> Bool) -> Float? {
            guard index < arguments.count, let value = Float(String(arguments[index])), value.isFinite, valid(value) else { return nil }
            return value
        }
        /// The argument at `index` as one value, a range `LOW..HIGH` or a logarithmic range
        /// `LOW~HIGH` (ends > 0) whose ends both satisfy `valid`: `single` is the error for a bad
        /// value, `range` (then `e.g. example`) for a bad range.
        func amount(_ index: Int, _ valid: (Float) -> Bool, single: String, range: String, example: String) throws -> ValueRange {
            let separator = index < arguments.count ? (arguments[index].range(of: "..") ?? arguments[index].range(of: "~")) : nil
            guard let separator else {
                guard let value = number(index, valid) else { throw DataError(single + got) }
                return ValueRange(value)
            }
            let text = arguments[index]
            let logarithmic = text[separator] == "~"
            let low = trimmed(text[..<separator.lowerBound]), high = trimmed(text[separator.upperBound...])
            guard let lower = Float(String(low)), let upper = Float(String(high)), lower.isFinite, upper.isFinite,
                  valid(lower), valid(upper) else {
                throw DataError("--corrupt \(name) \(range) LOW..HIGH, e.g. \(example)\(got)")
            }
            guard lower <= upper else {
                throw DataError("--corrupt \(name) range \(low)\(text[separator])\(high) runs from high to low; write LOW..HIGH, e.g. \(example)\(got)")
            }
            guard !logarithmic || lower > 0 else {
                throw DataError("--corrupt \(name) logarithmic range \(low)~\(high) must start above 0, e.g. \(example.replacingOccurrences(of: "..", with: "~"))\(got)")
            }
            return ValueRange(lower, upper, logarithmic: logarithmic)
        }
        /// The fill of `mask` and `holes` (their second argument, if given): a value in [0, 1] or `noise`.
        func fill(examples: String) throws -> MaskFill {
            guard arguments.count >= 2 else { return .value(0) }
            if arguments[1].lowercased() == "noise" { return .noise }
            if let value = number(1, { $0 >= 0 && $0 <= 1 }) { return .value(value) }
            throw DataError("--corrupt \(name) fill must be a value in [0, 1] or 'noise', e.g. \(examples)\(got)")
        }
        func limit(_ most: Int, example: String) throws {
            guard arguments.count <= most else {
                throw DataError("--corrupt \(name) takes \(most == 1 ? "one argument" : "at most \(most) arguments"), e.g. \(example)\(got)")
            }
        }

        switch name {
        case "noise":
            let sigma = try amount(0, { $0 >= 0 }, single: "--corrupt noise needs a sigma >= 0, e.g. noise:0.1",
                                   range: "range needs two sigmas >= 0,", example: "noise:0.02..0.2")
            try limit(1, example: "noise:0.1")
            return .noise(sigma: sigma)
        case "saltpepper", "sp":
            let fraction = try amount(0, { $0 >= 0 && $0 <= 1 }, single: "--corrupt \(name) needs a fraction in [0, 1], e.g. \(name):0.05",
                                      range: "range needs two fractions in [0, 1],", example: "\(name):0.01..0.1")
            try limit(1, example: "\(name):0.05")
            return .saltAndPepper(fraction: fraction)
        case "mask":
            let area = try amount(0, { $0 > 0 && $0 <= 1 }, single: "--corrupt mask needs an area in (0, 1], e.g. mask:0.25",
                                  range: "range needs two areas in (0, 1],", example: "mask:0.05..0.5")
            try limit(2, example: "mask:0.25:noise")
            return .mask(area: area, fill: try fill(examples: "mask:0.25:0.5 or mask:0.25:noise"))
        case "blur":
            let sigma = try amount(0, { $0 >= 0 && $0 <= largestBlurSigma },
                                   single: "--corrupt blur needs a sigma in [0, \(format(largestBlurSigma))] pixels, e.g. blur:1",
                                   range: "range needs two sigmas in [0, \(format(largestBlurSigma))] pixels,", example: "blur:0.5..2")
            try limit(1, example: "blur:1")
            return .blur(sigma: sigma)
        case "dark":
            let gamma = try amount(0, { $0 > 0 }, single: "--corrupt dark needs a gamma > 0, e.g. dark:2.2 or dark:2.2:0.6",
                                   range: "range needs two gammas > 0,", example: "dark:1.5..3")
            try limit(2, example: "dark:2.2:0.6")
            var gain: ValueRange = 1
            if arguments.count == 2 {
                gain = try amount(1, { $0 >= 0 }, single: "--corrupt dark gain must be >= 0, e.g. dark:2.2:0.6",
                                  range: "gain range needs two gains >= 0,", example: "dark:2.2:0.4..1")
            }
            return .darken(gamma: gamma, gain: gain)
        case "quantize":
            guard arguments.count == 1, let steps = Int(String(arguments[0])), (1...65535).contains(steps) else {
                throw DataError("--corrupt quantize needs a number of steps from 1 to 65535, e.g. quantize:255 (8-bit)\(got)")
            }
            return .quantize(steps: steps)
        case "holes":
            guard arguments.count >= 1, let count = Int(String(arguments[0])), (1...64).contains(count) else {
                throw DataError("--corrupt holes needs a largest number of holes from 1 to 64, e.g. holes:4\(got)")
            }
            try limit(3, example: "holes:8:0:2")
            var scale: Float = 1
            if arguments.count == 3 {
                guard let value = number(2, { $0 > 0 && $0 <= 8 }) else {
                    throw DataError("--corrupt holes scale must be a number in (0, 8], e.g. holes:8:0:2 (holes twice as large)\(got)")
                }
                scale = value
            }
            return .holes(count: count, fill: try fill(examples: "holes:4:0.5 or holes:4:noise"), scale: scale)
        default:
            throw DataError("unknown corruption '\(oneLine(name))' in --corrupt '\(oneLine(spec))'; \(usage)")
        }
    }

    private static func trimmed(_ text: Substring) -> Substring {
        guard let first = text.firstIndex(where: { !$0.isWhitespace }),
              let last = text.lastIndex(where: { !$0.isWhitespace }) else { return text[text.endIndex...] }
        return text[first...last]
    }

    /// `text` with every whitespace character (line breaks included) shown as a space, so that
    /// error messages stay on one line.
    private static func oneLine(_ text: String) -> String {
        String(text.map { $0.isWhitespace ? " " : $0 })
    }

    /// Shortest text that parses back to `value`, without a trailing `.0` (`1`, `0.1`, `1e-05`).
    private static func format(_ value: Float) -> String {
        let text = "\(value)"
        return text.hasSuffix(".0") ? String(text.dropLast(2)) : text
    }

    /// `LOW..HIGH`, `LOW~HIGH` (logarithmic), or the one value of a range with equal ends.
    private static func format(_ range: ValueRange) -> String {
        range.isFixed ? format(range.lower) : "\(format(range.lower))\(range.isLogarithmic ? "~" : "..")\(format(range.upper))"
    }
}
