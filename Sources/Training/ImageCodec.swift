import Codec
import Data
import Foundation
import Model

/// What went wrong compressing, decompressing or sampling, as one line.
public struct CodecCommandError: UserFacingError {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A VQ-VAE and (optionally) its prior, applied to whole images of any size: the codes of an image
/// (padded by repeating its edges to a multiple of `2^down`, cropped back after decoding), their
/// entropy coding under the prior in `CodeOrder`, and the image decoded from codes. No tiles: the
/// fully convolutional model runs once over the whole padded image.
public final class ImageCodec {
    public let trained: TrainedModel
    public let prior: CodePrior?
    public let modelFingerprint: UInt64
    public let priorFingerprint: UInt64
    var models: [String: VQVAE] = [:]

    public var configuration: ModelConfiguration { trained.configuration }

    public init(checkpoint: String, prior priorPath: String?, rawWeights: Bool = false) throws {
        trained = try TrainedModel(checkpoint: checkpoint, batch: 1, weights: TrainedModel.weights(raw: rawWeights))
        let c = trained.configuration
        guard c.model == .vqvae, c.hasCodebook else {
            throw CodecCommandError("--checkpoint \(checkpoint) holds a '\(c.model.rawValue)\(c.model == .vqvae ? " --quantizer \(c.quantizer.rawValue)" : "")' model; the codec codes a VQ-VAE's codebook indices (--quantizer vq or cosine)")
        }
        guard !c.residual, !c.skips, !c.maskChannel else {
            throw CodecCommandError("--checkpoint \(checkpoint) is a restoration model (residual, skips or mask channel): its output needs its input, so its codes alone do not make an image")
        }
        modelFingerprint = ModelFingerprint.of(trained.model)
        if let priorPath {
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: priorPath, isDirectory: &isFolder), !isFolder.boolValue else {
                throw CodecCommandError("--prior \(priorPath): no such file")
            }
            let settings = try PriorRunConfiguration.decode(try PriorCheckpoint.configuration(path: priorPath), path: priorPath)
            guard settings.vqFingerprint == ModelFingerprint.hex(modelFingerprint) else {
                throw CodecCommandError("--prior \(priorPath) was trained on the codes of another model (fingerprint \(settings.vqFingerprint)); --checkpoint \(checkpoint) has \(ModelFingerprint.hex(modelFingerprint))")
            }
            let loaded = try CodePrior(configuration: settings.prior, maxBatch: 1, height: 2, width: 2)
            try PriorCheckpoint.load(path: priorPath, into: loaded, optimizer: nil)
            prior = loaded
            priorFingerprint = ModelFingerprint.of(loaded)
        } else {
            prior = nil
            priorFingerprint = 0
        }
    }

    /// The model built for padded images of `height x width`, with the checkpoint's state.
    func model(height: Int, width: Int) throws -> VQVAE {
        let key = "\(height)x\(width)"
        if let cached = models[key] { return cached }
        var c = trained.configuration
        c.height = height
        c.width = width
        let model = try VQVAE(configuration: c, maxBatch: 1)
        model.copyState(from: trained.model)
        models[key] = model
        return model
    }

    /// `size` rounded up to a multiple of `2^down`.
    public func padded(_ size: Int) -> Int {
        let factor = 1 << configuration.downsamplings
        return (size + factor - 1) / factor * factor
    }

    /// The codes `[h, w, L]` of an image `[H, W, C]` in [0, 1] with its first `levels` codebooks
    /// (the others -1), the image padded by repeating its last row and column.
    public func codes(of pixels: [Float], height: Int, width: Int, levels: Int) throws -> [Int32] {
        let c = configuration
        guard pixels.count == height * width * c.channels else {
            throw CodecCommandError("an image of \(height)x\(width)x\(c.channels) needs \(height * width * c.channels) samples")
        }
        let (ph, pw) = (padded(height), padded(width))
        let model = try self.model(height: ph, width: pw)
        var input = [Float](repeating: 0, count: ph * pw * c.channels)
        for y in 0..<ph {
            for x in 0..<pw {
                let source = (min(y, height - 1) * width + min(x, width - 1)) * c.channels
                for k in 0..<c.channels { input[(y * pw + x) * c.channels + k] = pixels[source + k] - 0.5 }
            }
        }
        model.evaluationCodebooks = levels
        _ = input.withUnsafeBufferPointer { model.forward(images: $0.baseAddress!, batch: 1, training: false) }
        return Array(UnsafeBufferPointer(start: model.codeIndices.baseAddress!, count: model.latentCount * c.codesPerPosition))
    }

    /// The image `[H, W, C]` in [0, 1] (unclipped) that `codes` `[h, w, L]` decode to, cropped to
    /// `height x width`.
    public func image(codes: [Int32], height: Int, width: Int) throws -> [Float] {
        let c = configuration
        let (ph, pw) = (padded(height), padded(width))
        let model = try self.model(height: ph, width: pw)
        codes.withUnsafeBufferPointer { model.decode(codes: $0.baseAddress!, batch: 1) }
        let out = model.reconstruction.pointer
        var pixels = [Float](repeating: 0, count: height * width * c.channels)
        for y in 0..<height {
            for x in 0..<width {
                for k in 0..<c.channels { pixels[(y * width + x) * c.channels + k] = out[(y * pw + x) * c.channels + k] + 0.5 }
            }
        }
        return pixels
    }

    /// Visits every coded symbol in `CodeOrder` (phase, then level, then position) with its
    /// frequency table, computed from `codes` as known so far; `visit` codes or decodes the symbol
    /// and returns it, and it is stored at `index` of `codes`.
    /// With a level map (`positionLevels`, one value in `1...levels` per position), a position codes
    /// only its first `positionLevels[q]` codebooks, and the codes it does not code stay -1 (the
    /// prior reads them as unknown).
    func walk(codes: inout [Int32], gridHeight h: Int, gridWidth w: Int, levels: Int, positionLevels: [Int]? = nil,
              visit: (_ index: Int, _ table: FrequencyTable) throws -> Int32) throws {
        let c = configuration
        let l = c.codesPerPosition
        func coded(_ q: Int, _ level: Int) -> Bool { positionLevels.map { $0[q] > level } ?? true }
        if let prior {
            let evaluator = try PriorEvaluator(prior: prior, height: h, width: w)
            let stride = evaluator.logitStride
            for phase in 0..<PriorConfiguration.phases {
                codes.withUnsafeBufferPointer { evaluator.prepare(phase: phase, levels: levels, codes: $0.baseAddress!) }
                for level in 0..<levels {
                    let logits = codes.withUnsafeBufferPointer { evaluator.logits(level: level, codes: $0.baseAddress!) }
                    for (r, q) in evaluator.positions.enumerated() where coded(q, level) {
                        codes[q * l + level] = try visit(q * l + level, try FrequencyTable(logits: logits + r * stride, count: c.codes))
                    }
                }
            }
        } else {
            let uniform = try FrequencyTable(weights: [Double](repeating: 1, count: c.codes))
            for phase in 0..<PriorConfiguration.phases {
                for level in 0..<levels {
                    for q in CodeOrder.positions(phase: phase, height: h, width: w) where coded(q, level) {
                        codes[q * l + level] = try visit(q * l + level, uniform)
                    }
                }
            }
        }
    }

    /// The `.vqz` file of an image `[H, W, C]` in [0, 1] at `levels` codebooks, and its codes
    /// (`[h, w, L]`, -1 where not coded). With `positionLevels` (one value in `1...levels` per
    /// position of the code grid, raster order), a version-2 file whose positions code their own
    /// number of codebooks.
    /// With `refine` rounds, the codes are chosen for the decoded image (`refined(pixels:...)`).
    public func compress(_ pixels: [Float], height: Int, width: Int, levels: Int,
                         positionLevels: [Int]? = nil, refine: Int = 0) throws -> (file: VQZFile, codes: [Int32]) {
        try checkCompression(height: height, width: width, levels: levels)
        let codes = refine > 0
            ? try refined(pixels: pixels, height: height, width: width, levels: levels, positionLevels: positionLevels,
                          rounds: refine).codes
            : try self.codes(of: pixels, height: height, width: width, levels: levels)
        return try file(codes: codes, height: height, width: width, levels: levels, positionLevels: positionLevels)
    }

    func checkCompression(height: Int, width: Int, levels: Int) throws {
        guard (1...configuration.codesPerPosition).contains(levels) else {
            throw CodecCommandError("--levels \(levels) is outside 1...\(configuration.codesPerPosition) (the model's codebooks)")
        }
        guard height <= VQZFile.largestSide, width <= VQZFile.largestSide else {
            throw CodecCommandError("the image is \(height)x\(width); a .vqz file holds at most \(VQZFile.largestSide) pixels per side")
        }
    }

    /// The file of `codes` (an image's `codes(of:)` at `levels`), with an optional level map.
    func file(codes allCodes: [Int32], height: Int, width: Int, levels: Int,
              positionLevels: [Int]?) throws -> (file: VQZFile, codes: [Int32]) {
        let c = configuration
        let l = c.codesPerPosition
        let (h, w) = (padded(height) >> c.downsamplings, padded(width) >> c.downsamplings)
        var ranges: [(start: UInt32, frequency: UInt32)] = []
        var symbols = allCodes
        if let positionLevels {
            ranges = try LevelMapModel.ranges(of: positionLevels, height: h, width: w, levels: levels)
            for q in 0..<(h * w) { for level in positionLevels[q]..<l { symbols[q * l + level] = -1 } }
        }
        ranges.reserveCapacity(ranges.count + h * w * levels)
        var codes = symbols
        try walk(codes: &codes, gridHeight: h, gridWidth: w, levels: levels, positionLevels: positionLevels) { index, table in
            let s = Int(symbols[index])
            ranges.append((table.cumulative[s], table.frequencies[s]))
            return symbols[index]
        }
        let stream = try RANSEncoder.encode(ranges: ranges, scaleBits: RANS.largestScaleBits)
        let file = try VQZFile(modelFingerprint: modelFingerprint, priorFingerprint: priorFingerprint, height: height, width: width,
                               channels: c.channels, downsamplings: c.downsamplings, levels: levels, modelLevels: c.codesPerPosition,
                               codes: c.codes, perPositionLevels: positionLevels != nil, stream: stream)
        return (file, codes)
    }

    /// What `compress(_:height:width:levels:aim:)` aims at: a PSNR, or a fixed multiplier
    /// `lambda` of the bits (squared 8-bit error per bit), the same for every image (what a
    /// rate-distortion curve over several images needs: equal slopes, not equal PSNRs).
    public enum Aim: Sendable { case psnr(Double), lambda(Double) }

    /// The `.vqz` file of an image whose positions code their own number of codebooks,
    /// `1...levels` (a version-2 file), and its codes and its decoded image's PSNR (8-bit pixels,
    /// as `decompress` writes them). Each position takes the number `n` that minimises
    /// `SSE_n + lambda * bits_n`, where `SSE_n` is the squared error of its pixels when the whole
    /// image is decoded at `n` codebooks and `bits_n` what its first `n` codes cost under the prior
    /// (with all `levels` coded around it).
    /// - `.lambda`: that choice at the given `lambda`, with no search.
    /// - `.psnr`: the fewest bits that reach the PSNR, when the first `levels` codebooks everywhere
    ///   reach it. `lambda` is searched for the target on these estimates, then checked on the
    ///   decoded image and raised until it reaches the target (4 rounds at most). Of these mixes
    ///   and the uniform numbers of codebooks, the one with the fewest estimated bits that reaches
    ///   the target is coded (the best one when none does).
    /// With `refine` rounds, the chosen mix's codes are then chosen for the decoded image
    /// (`refined(pixels:...)`): for `.psnr` by the error alone (the PSNR only rises), for
    /// `.lambda` by the error + lambda x the bits.
    public func compress(_ pixels: [Float], height: Int, width: Int, levels: Int,
                         aim: Aim, refine: Int = 0) throws -> (file: VQZFile, codes: [Int32], psnr: Double) {
        try checkCompression(height: height, width: width, levels: levels)
        switch aim {
        case .psnr(let value):
            guard value.isFinite, value > 0 else { throw CodecCommandError("--psnr must be a positive number of dB (got \(value))") }
        case .lambda(let value):
            guard value.isFinite, value >= 0 else { throw CodecCommandError("--lambda must be a number >= 0 (got \(value))") }
        }
        let c = configuration
        let l = c.codesPerPosition, f = 1 << c.downsamplings, channels = c.channels
        let (h, w) = (padded(height) >> c.downsamplings, padded(width) >> c.downsamplings)
        let all = try self.codes(of: pixels, height: height, width: width, levels: levels)
        let clean = pixels.map { Double(PNGImage.quantize($0)) }
        // The squared error of every position's pixels at 1...levels codebooks.
        func errors(_ image: [Float]) -> [Double] {
            var sse = [Double](repeating: 0, count: h * w)
            for y in 0..<height {
                for x in 0..<width {
                    var e = 0.0
                    for k in 0..<channels {
                        let i = (y * width + x) * channels + k
                        let d = Double(PNGImage.quantize(image[i])) - clean[i]
                        e += d * d
                    }
                    sse[(y / f) * w + x / f] += e
                }
            }
            return sse
        }
        func truncated(_ map: (Int) -> Int) -> [Int32] {
            var codes = all
            for q in 0..<(h * w) { for level in map(q)..<l { codes[q * l + level] = -1 } }
            return codes
        }
        var sse: [[Double]] = []
        for n in 1...levels { sse.append(errors(try image(codes: truncated { _ in n }, height: height, width: width))) }
        // What each position's first n codes cost under the prior, all `levels` coded around it.
        var bits = [Double](repeating: 0, count: h * w * l)
        try symbolBits(of: truncated { _ in levels }, gridHeight: h, gridWidth: w, levels: levels, positionLevels: nil) {
            bits[$0] = $1
        }
        let samples = Double(height * width * channels)
        func psnrOf(_ total: Double) -> Double { total > 0 ? 10 * log10(255 * 255 * samples / total) : .infinity }
        func choose(_ lambda: Double) -> (map: [Int], psnr: Double) {
            var map = [Int](repeating: 1, count: h * w), total = 0.0
            for q in 0..<(h * w) {
                var best = (cost: Double.infinity, n: 1, sse: 0.0), cumulative = 0.0
                for n in 1...levels {
                    cumulative += bits[q * l + n - 1]
                    let cost = sse[n - 1][q] + lambda * cumulative
                    if cost < best.cost { best = (cost, n, sse[n - 1][q]) }
                }
                map[q] = best.n
                total += best.sse
            }
            return (map, psnrOf(total))
        }
        // The PSNR of the image decoded with `map`'s numbers of codebooks.
        func decodedPSNR(_ map: [Int]) throws -> Double {
            psnrOf(errors(try image(codes: truncated { map[$0] }, height: height, width: width)).reduce(0, +))
        }
        let finest = choose(0)
        // The largest lambda whose estimate reaches `goal` (0 when none does).
        func search(_ goal: Double) -> [Int] {
            if finest.psnr < goal { return finest.map }
            var (low, high) = (0.0, 1.0)
            while choose(high).psnr >= goal && high < 1e12 { (low, high) = (high, high * 4) }
            for _ in 0..<40 {
                let middle = (low + high) / 2
                if choose(middle).psnr >= goal { low = middle } else { high = middle }
            }
            return choose(low).map
        }
        // The file of a mix, refined when asked, with its PSNR (`known`: that of the unrefined codes).
        func coded(_ map: [Int], known: Double? = nil, lambda: Double? = nil) throws -> (file: VQZFile, codes: [Int32], psnr: Double) {
            var codes = truncated { map[$0] }, psnr = known
            if refine > 0 {
                let result = try refined(pixels: pixels, height: height, width: width, levels: levels,
                                         positionLevels: map, rounds: refine, lambda: lambda)
                (codes, psnr) = (result.codes, psnrOf(result.sse))
            }
            let (file, written) = try file(codes: codes, height: height, width: width, levels: levels, positionLevels: map)
            return (file, written, try psnr ?? decodedPSNR(map))
        }
        let target: Double
        switch aim {
        case .lambda(let lambda):
            return try coded(choose(lambda).map, lambda: lambda)
        case .psnr(let value):
            target = value
        }
        // Candidates: the mixes found for a raised target, and every uniform number of codebooks
        // (whose PSNR the decodes above give exactly). The cheapest that reaches the target wins,
        // or the best when none does.
        func cost(_ map: [Int]) -> Double { (0..<(h * w)).reduce(0.0) { t, q in (0..<map[q]).reduce(t) { $0 + bits[q * l + $1] } } }
        var candidates: [(map: [Int], psnr: Double, bits: Double)] = (1...levels).map { n in
            let map = [Int](repeating: n, count: h * w)
            return (map, psnrOf(sse[n - 1].reduce(0, +)), cost(map))
        }
        var goal = target
        for _ in 0..<4 {
            let map = search(goal)
            let reached = try decodedPSNR(map)
            candidates.append((map, reached, cost(map)))
            if reached >= target || map == finest.map { break }
            goal += target - reached + 0.01
        }
        let reaching = candidates.filter { $0.psnr >= target }
        let chosen = reaching.isEmpty ? candidates.max { $0.psnr < $1.psnr }! : reaching.min { $0.bits < $1.bits }!
        return try coded(chosen.map, known: chosen.psnr)
    }

    /// The codes `[h, w, L]` of a file (levels it does not code are -1), after checking that it
    /// was written by this model and prior.
    public func decodeCodes(_ file: VQZFile, name: String) throws -> [Int32] {
        let c = configuration
        guard file.modelFingerprint == modelFingerprint else {
            throw CodecCommandError("\(name) was written with another model (fingerprint \(ModelFingerprint.hex(file.modelFingerprint))); --checkpoint \(trained.path) has \(ModelFingerprint.hex(modelFingerprint))")
        }
        guard file.priorFingerprint == priorFingerprint else {
            if file.priorFingerprint == 0 {
                throw CodecCommandError("\(name) was written without a prior; leave out --prior")
            }
            throw CodecCommandError(prior == nil
                ? "\(name) was written with a prior (fingerprint \(ModelFingerprint.hex(file.priorFingerprint))); give it with --prior"
                : "\(name) was written with another prior (fingerprint \(ModelFingerprint.hex(file.priorFingerprint))); --prior has \(ModelFingerprint.hex(priorFingerprint))")
        }
        guard (file.channels, file.downsamplings, file.modelLevels, file.codes) == (c.channels, c.downsamplings, c.codesPerPosition, c.codes) else {
            throw CodecCommandError("\(name): its header does not match the model (a damaged file?)")
        }
        let (h, w) = (padded(file.height) >> c.downsamplings, padded(file.width) >> c.downsamplings)
        var codes = [Int32](repeating: -1, count: h * w * c.codesPerPosition)
        var decoder = try RANSDecoder(file.stream)
        let map = file.perPositionLevels ? try LevelMapModel.decode(&decoder, height: h, width: w, levels: file.levels) : nil
        try walk(codes: &codes, gridHeight: h, gridWidth: w, levels: file.levels, positionLevels: map) { index, table in
            Int32(try decoder.decode(table))
        }
        try decoder.finish()
        return codes
    }
}

extension ImageCodec {
    /// Reads an image file (PNG or JPEG) as floats in [0, 1] with the model's channels.
    public func readImage(_ path: String) throws -> (pixels: [Float], height: Int, width: Int) {
        var image = try ImageFormat.read(path: path)
        let channels = configuration.channels
        if image.channels != channels {
            image = try image.converted(toChannels: channels)
        }
        return (image.unitFloats, image.height, image.width)
    }
}

/// `vqvae compress` and `vqvae decompress`.
public enum ImageCompression {
    public struct Options: Sendable {
        public var checkpoint = ""
        public var prior: String?
        public var rawWeights = false
        public var input = ""
        public var output = ""
        public var levels: Int?
        /// `compress`: the PSNR to reach with the fewest bits (per-position levels), or nil.
        public var psnr: Double?
        /// `compress`: per-position levels at this multiplier of the bits, or nil.
        public var lambda: Double?
        /// `compress`: rounds of choosing the codes for the decoded image (0: the encoder's).
        public var refine = 0
        public var force = false
        public init() {}
    }

    /// Compresses `options.input` to `options.output`; returns a one-line report.
    public static func compress(_ o: Options) throws -> String {
        try OutputSafety.check(o.output, flag: "-o", inputs: [o.input, o.checkpoint] + (o.prior.map { [$0] } ?? []), force: o.force,
                               CodecCommandError.self)
        let codec = try ImageCodec(checkpoint: o.checkpoint, prior: o.prior, rawWeights: o.rawWeights)
        let image = try codec.readImage(o.input)
        let started = monotonicSeconds()
        let levels = o.levels ?? codec.configuration.codesPerPosition
        let file: VQZFile
        var reached = ""
        if o.psnr != nil && o.lambda != nil { throw CodecCommandError("give --psnr or --lambda, not both") }
        if let aim = o.psnr.map(ImageCodec.Aim.psnr) ?? o.lambda.map(ImageCodec.Aim.lambda) {
            let result = try codec.compress(image.pixels, height: image.height, width: image.width, levels: levels, aim: aim,
                                            refine: o.refine)
            file = result.file
            reached = String(format: " (per position: %d codes), PSNR %.2f dB", result.codes.filter { $0 >= 0 }.count, result.psnr)
        } else {
            file = try codec.compress(image.pixels, height: image.height, width: image.width, levels: levels, refine: o.refine).file
        }
        let seconds = monotonicSeconds() - started
        let bytes = file.bytes()
        try OutputFile.writeBytes(bytes, path: o.output)
        let pixels = image.height * image.width
        return String(format: "%@ -> %@: %dx%d, %d of %d codebooks%@, %d bytes, %.4f bits per pixel, %.2f s",
                      o.input, o.output, image.width, image.height, levels, codec.configuration.codesPerPosition, reached,
                      bytes.count, Double(bytes.count * 8) / Double(pixels), seconds)
    }

    /// Whether the file at `path` starts like a `.vqz` file.
    public static func looksLikeVQZ(path: String) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        return (try? handle.read(upToCount: 3)).map { [UInt8]($0) } == VQZFile.magic
    }

    /// `vqvae inspect` of a `.vqz` file: its header, after the checks `decompress` makes first.
    public static func describe(path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else { throw CodecCommandError("\(path): cannot be read") }
        let file: VQZFile
        do { file = try VQZFile(bytes: [UInt8](data)) } catch { throw CodecCommandError("\(path): \(error)") }
        let factor = 1 << file.downsamplings
        let grid = ((file.height + factor - 1) / factor, (file.width + factor - 1) / factor)
        return ["\(path): .vqz image file (format version \(file.perPositionLevels ? 2 : 1)), \(data.count) bytes, CRC-32 verified",
                "  \(file.width)x\(file.height)x\(file.channels): " + String(format: "%.4f", Double(data.count * 8) / Double(file.height * file.width))
                    + " bits per pixel; a \(grid.1)x\(grid.0) grid of \(file.levels) of \(file.modelLevels) codebook(s) of \(file.codes) codes",
                "  model fingerprint \(ModelFingerprint.hex(file.modelFingerprint)), prior "
                    + (file.priorFingerprint == 0 ? "none (every code log2 K bits)" : "fingerprint \(ModelFingerprint.hex(file.priorFingerprint))")]
            .joined(separator: "\n")
    }

    /// Decompresses `options.input` (a .vqz file) to the image file `options.output`.
    public static func decompress(_ o: Options) throws -> String {
        try OutputSafety.check(o.output, flag: "-o", inputs: [o.input, o.checkpoint] + (o.prior.map { [$0] } ?? []), force: o.force,
                               CodecCommandError.self)
        guard let data = FileManager.default.contents(atPath: o.input) else {
            throw CodecCommandError("\(o.input): no such file, or it cannot be read")
        }
        let file: VQZFile
        do { file = try VQZFile(bytes: [UInt8](data)) } catch { throw CodecCommandError("\(o.input): \(error)") }
        let codec = try ImageCodec(checkpoint: o.checkpoint, prior: o.prior, rawWeights: o.rawWeights)
        let started = monotonicSeconds()
        // The model for the file's size first: its memory check refuses a header that declares an
        // image too large for this machine before anything of that size is allocated.
        _ = try codec.model(height: codec.padded(file.height), width: codec.padded(file.width))
        let codes: [Int32]
        do { codes = try codec.decodeCodes(file, name: o.input) } catch let error as CodecError {
            throw CodecCommandError("\(o.input): \(error)")
        }
        let pixels = try codec.image(codes: codes, height: file.height, width: file.width)
        let seconds = monotonicSeconds() - started
        let image = try PNGImage(unitFloats: pixels, height: file.height, width: file.width, channels: file.channels)
        try (ImageFormat(path: o.output) ?? .png).write(image, to: o.output, quality: 95)
        return String(format: "%@ -> %@: %dx%d, %@%d codebooks, %.2f s", o.input, o.output, file.width, file.height,
                      file.perPositionLevels ? "up to " : "", file.levels, seconds)
    }
}

/// `vqvae sample`: code grids drawn from the prior in its coding order, decoded by the VQ-VAE.
public enum CodeSampling {
    public struct Options: Sendable {
        public var checkpoint = ""
        public var prior = ""
        public var rawWeights = false
        public var output = ""
        public var count = 16
        public var size = 128
        public var temperature = 1.0
        public var topK = 0
        public var levels: Int?
        public var seed: UInt64 = 1
        public var force = false
        public init() {}
    }

    /// Draws `count` grids and writes them as one PNG grid; returns a one-line report.
    public static func run(_ o: Options) throws -> String {
        try OutputSafety.check(o.output, flag: "-o", inputs: [o.checkpoint, o.prior], force: o.force, CodecCommandError.self)
        guard o.count >= 1, o.count <= 1024 else { throw CodecCommandError("-n must be in 1...1024 (got \(o.count))") }
        guard o.temperature > 0, o.temperature.isFinite else { throw CodecCommandError("--temperature must be positive (got \(o.temperature))") }
        guard o.topK >= 0 else { throw CodecCommandError("--top-k must not be negative (0 = all codes)") }
        let codec = try ImageCodec(checkpoint: o.checkpoint, prior: o.prior, rawWeights: o.rawWeights)
        let c = codec.configuration, factor = 1 << c.downsamplings
        guard o.size >= 2 * factor, o.size % factor == 0, o.size <= 4096 else {
            throw CodecCommandError("--size \(o.size) must be a multiple of 2^down = \(factor) in \(2 * factor)...4096")
        }
        let levels = o.levels ?? c.codesPerPosition
        guard (1...c.codesPerPosition).contains(levels) else {
            throw CodecCommandError("--levels \(levels) is outside 1...\(c.codesPerPosition) (the model's codebooks)")
        }
        guard let prior = codec.prior else { throw CodecCommandError("--prior is required") }
        let g = o.size / factor, l = c.codesPerPosition, k = c.codes
        let evaluator = try PriorEvaluator(prior: prior, height: g, width: g)
        let started = monotonicSeconds()
        var images: [PNGImage] = []
        for n in 0..<o.count {
            var random = SplitMix64(seed: o.seed, stream: UInt64(n))
            var codes = [Int32](repeating: -1, count: g * g * l)
            var weights = [Double](repeating: 0, count: k)
            for phase in 0..<PriorConfiguration.phases {
                codes.withUnsafeBufferPointer { evaluator.prepare(phase: phase, levels: levels, codes: $0.baseAddress!) }
                for level in 0..<levels {
                    let logits = codes.withUnsafeBufferPointer { evaluator.logits(level: level, codes: $0.baseAddress!) }
                    for (r, q) in evaluator.positions.enumerated() {
                        let row = logits + r * evaluator.logitStride
                        var largest = row[0]
                        for s in 1..<k { largest = max(largest, row[s]) }
                        var cutoff = -Float.infinity
                        if o.topK > 0 && o.topK < k {
                            cutoff = Array(UnsafeBufferPointer(start: row, count: k)).sorted(by: >)[o.topK - 1]
                        }
                        var sum = 0.0
                        for s in 0..<k {
                            weights[s] = row[s] >= cutoff ? Foundation.exp(Double(row[s] - largest) / o.temperature) : 0
                            sum += weights[s]
                        }
                        var u = random.nextUnit() * sum, chosen = k - 1
                        for s in 0..<k {
                            u -= weights[s]
                            if u < 0 && weights[s] > 0 { chosen = s; break }
                        }
                        codes[q * l + level] = Int32(chosen)
                    }
                }
            }
            let pixels = try codec.image(codes: codes, height: o.size, width: o.size)
            images.append(try PNGImage(unitFloats: pixels, height: o.size, width: o.size, channels: c.channels))
        }
        let columns = Int(Double(o.count).squareRoot().rounded(.up))
        let rows = stride(from: 0, to: images.count, by: columns).map { Array(images[$0..<min($0 + columns, images.count)]) }
        let grid = try ImageGrid.compose(rows: rows)
        try grid.write(to: o.output)
        return String(format: "%@: %d samples of %dx%d (%d of %d codebooks, temperature %g%@), %.2f s", o.output, o.count, o.size, o.size,
                      levels, l, o.temperature, o.topK > 0 ? ", top-k \(o.topK)" : "", monotonicSeconds() - started)
    }
}
