import Codec
import Model

/// libFuzzer target for the `.vqz` reader: every input is a file given to `vqvae decompress`. It
/// parses the header and checksum (`VQZFile(bytes:)`) and, for grids small enough to decode
/// quickly, decodes the stream (a version-2 file's level map first) as decompress does: with every code equally likely, and with the
/// fixed-order probabilities of a prior (random weights of the file's K and L). Thrown errors are
/// the expected outcome for damaged files; crashes, traps, hangs and huge allocations are failures.
/// The fingerprints are not compared: the point is what the parser and decoder do with any bytes.
@_cdecl("LLVMFuzzerTestOneInput")
public func codecFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    // The checksum stops almost every mutation at the door; the stream behind it is what the
    // decoder must survive, so it is also tried with the checksum recomputed.
    var candidates = [bytes]
    if size >= VQZFile.overheadBytes {
        var fixed = bytes
        let crc = CRC32.checksum(fixed[0..<(size - 4)])
        for k in 0..<4 { fixed[size - 4 + k] = UInt8(truncatingIfNeeded: crc >> UInt32(8 * k)) }
        candidates.append(fixed)
    }
    for candidate in candidates {
        guard let file = try? VQZFile(bytes: candidate) else { continue }
        let factor = 1 << file.downsamplings
        let (h, w) = ((file.height + factor - 1) / factor, (file.width + factor - 1) / factor)
        guard h * w * file.levels <= 4096, file.codes <= 512 else { continue }
        decode(file, height: h, width: w, prior: nil)
        if let prior = try? CodePrior(configuration: PriorConfiguration(codes: file.codes, levels: file.modelLevels, channels: 16),
                                      maxBatch: 1, height: 2, width: 2) {
            prior.initialize(seed: 1)
            decode(file, height: h, width: w, prior: prior)
        }
    }
    return 0
}

private func decode(_ file: VQZFile, height h: Int, width w: Int, prior: CodePrior?) {
    let l = file.modelLevels
    var codes = [Int32](repeating: -1, count: h * w * l)
    do {
        var decoder = try RANSDecoder(file.stream)
        let map = file.perPositionLevels ? try LevelMapModel.decode(&decoder, height: h, width: w, levels: file.levels) : nil
        let evaluator = try prior.map { try PriorEvaluator(prior: $0, height: h, width: w) }
        let uniform = try FrequencyTable(weights: [Double](repeating: 1, count: file.codes))
        for phase in 0..<PriorConfiguration.phases {
            codes.withUnsafeBufferPointer { evaluator?.prepare(phase: phase, levels: file.levels, codes: $0.baseAddress!) }
            for level in 0..<file.levels {
                let logits = codes.withUnsafeBufferPointer { evaluator?.logits(level: level, codes: $0.baseAddress!) }
                for (r, q) in CodeOrder.positions(phase: phase, height: h, width: w).enumerated() where map.map({ $0[q] > level }) ?? true {
                    let table = try logits.map { try FrequencyTable(logits: $0 + r * evaluator!.logitStride, count: file.codes) } ?? uniform
                    let symbol = try decoder.decode(table)
                    if symbol < 0 || symbol >= file.codes { fatalError("decoded symbol \(symbol) outside 0..<\(file.codes)") }
                    codes[q * l + level] = Int32(symbol)
                }
            }
        }
        try decoder.finish()
    } catch {
        // A clean, typed error is what a damaged file must produce.
    }
}
