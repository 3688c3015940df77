import Codec
import Data
import Foundation
import Model

extension ImageCodec {
    /// Codes chosen for the decoded image rather than for the latent (`compress --refine ROUNDS`).
    ///
    /// The encoder picks each position's codes nearest to its latent vector; the decoder then maps
    /// them to pixels, and nearest in the latent is not best in pixels. `y`, the vectors the
    /// positions quantize, starts as the encoder's. Each round takes the gradient `g` of the
    /// decoded image's squared error (over the image, not its padding) with respect to the code rows
    /// the decoder reads, quantizes `y - s g` (every position with its own number of codebooks,
    /// residual VQ as in the forward pass), decodes, and keeps the new codes, and `y` with them,
    /// when the 8-bit image's squared error fell. The step `s` (`step` times `y`'s root mean square
    /// over the gradient's) grows by 1.25 after a kept round and halves after a rejected one; a move
    /// that gives the same codes is kept and doubles it. The codes it returns decode, like any others, bit for bit the same in
    /// `decompress`; only the encoder's choice changes.
    ///
    /// With `lambda` (and a prior), new codes are kept when `error + lambda * bits` fell instead,
    /// `bits` what the codes cost under the prior: the rate stays in check.
    ///
    /// Returns the codes (`[h, w, L]`, -1 where not coded) and the squared error of their 8-bit
    /// image, summed over `height x width x channels`.
    func refined(pixels: [Float], height: Int, width: Int, levels: Int, positionLevels: [Int]?,
                 rounds: Int, lambda: Double? = nil, step: Double = 0.05) throws -> (codes: [Int32], sse: Double) {
        let c = configuration
        let (ph, pw) = (padded(height), padded(width))
        _ = try codes(of: pixels, height: height, width: width, levels: levels)
        let model = try self.model(height: ph, width: pw)
        let channels = c.channels, d = c.quantizerDimension
        let positions = model.latentCount
        let active: [Int32] = positionLevels.map { $0.map(Int32.init) } ?? [Int32](repeating: Int32(levels), count: positions)
        let clean = pixels.map { Float(PNGImage.quantize($0)) }
        let target = pixels.map { $0 - 0.5 }

        let (h, w) = (ph >> c.downsamplings, pw >> c.downsamplings)
        // The squared 8-bit error of the decoded image (the model holds its decode), the padding left out.
        func decodedError() -> Double {
            let out = model.reconstruction.pointer
            var total = 0.0
            for row in 0..<height {
                for x in 0..<width {
                    for k in 0..<channels {
                        let e = Double(Float(PNGImage.quantize(out[(row * pw + x) * channels + k] + 0.5)) - clean[(row * width + x) * channels + k])
                        total += e * e
                    }
                }
            }
            return total
        }
        func decode(_ codes: [Int32]) { codes.withUnsafeBufferPointer { model.decode(codes: $0.baseAddress!, batch: 1) } }

        // y: the vector each position quantizes, at first the encoder's.
        var y = Array(UnsafeBufferPointer(start: model.quantizerInput, count: positions * d))
        func quantized(_ vectors: [Float]) -> [Int32] {
            vectors.withUnsafeBufferPointer { v in
                active.withUnsafeBufferPointer { model.quantize(rows: v.baseAddress!, batch: 1, levels: $0.baseAddress!) }
            }
            return Array(UnsafeBufferPointer(start: model.codeIndices.baseAddress!, count: positions * c.codesPerPosition))
        }
        func cost(_ codes: [Int32], _ error: Double) throws -> Double {
            guard let lambda, lambda > 0, prior != nil else { return error }
            return error + lambda * (try bits(of: codes, gridHeight: h, gridWidth: w, levels: levels, positionLevels: positionLevels))
        }
        var best = quantized(y)
        decode(best)
        var bestError = decodedError()
        var bestCost = try cost(best, bestError)
        guard rounds > 0 else { return (best, bestError) }
        var seed = [Float](repeating: 0, count: ph * pw * channels)
        var moved = [Float](repeating: 0, count: positions * d)
        var s = step
        for _ in 0..<rounds {
            let out = model.reconstruction.pointer
            for row in 0..<height {
                for x in 0..<width {
                    for k in 0..<channels {
                        let i = (row * pw + x) * channels + k
                        seed[i] = 2 * (out[i] - target[(row * width + x) * channels + k])
                    }
                }
            }
            let gradient = seed.withUnsafeBufferPointer { model.codeRowGradient(reconstructionGradient: $0.baseAddress!) }
            var gradientSquares = 0.0, rowSquares = 0.0
            for i in 0..<(positions * d) {
                gradientSquares += Double(gradient[i]) * Double(gradient[i])
                rowSquares += Double(y[i]) * Double(y[i])
            }
            guard gradientSquares > 0 else { break }
            let scale = Float(s * (rowSquares / gradientSquares).squareRoot())
            for i in 0..<(positions * d) { moved[i] = y[i] - scale * gradient[i] }
            let candidate = quantized(moved)
            if candidate == best {
                // The same codes: keep the move (the next may cross a boundary), a longer step. The
                // model still holds their decode (quantizing wrote the same rows bit for bit).
                y = moved
                s *= 2
                continue
            }
            decode(candidate)
            let error = decodedError()
            let candidateCost = try cost(candidate, error)
            if candidateCost < bestCost {
                (best, bestError, bestCost, y) = (candidate, error, candidateCost, moved)
                s *= 1.25
                continue
            }
            s *= 0.5
            decode(best)
        }
        return (best, bestError)
    }
}

extension ImageCodec {
    /// Visits every coded symbol of `codes` (`[h, w, L]`, -1 where not coded) in `CodeOrder` with
    /// its index and what it costs under the prior, in bits.
    func symbolBits(of codes: [Int32], gridHeight h: Int, gridWidth w: Int, levels: Int, positionLevels: [Int]?,
                    _ visit: (_ index: Int, _ bits: Double) -> Void) throws {
        var walked = codes
        try walk(codes: &walked, gridHeight: h, gridWidth: w, levels: levels, positionLevels: positionLevels) { index, table in
            visit(index, Double(RANS.largestScaleBits) - log2(Double(table.frequencies[Int(codes[index])])))
            return codes[index]
        }
    }

    /// What `codes` cost under the prior, in bits (the level map aside).
    func bits(of codes: [Int32], gridHeight h: Int, gridWidth w: Int, levels: Int, positionLevels: [Int]?) throws -> Double {
        var total = 0.0
        try symbolBits(of: codes, gridHeight: h, gridWidth: w, levels: levels, positionLevels: positionLevels) { total += $1 }
        return total
    }
}
