/// Range asymmetric numeral systems (rANS; Duda 2013, in the byte-wise form of Giesen's `ryg_rans`):
/// an entropy coder that spends `-log2(p)` bits on a symbol of probability `p`, to within a few
/// bytes per stream, with the probabilities supplied symbol by symbol by a model.
///
/// The state is a 32-bit integer kept in `[2^23, 2^31)`. Encoding symbol `s` of a table with
/// frequencies `f` (summing to `2^scaleBits`) and cumulative frequencies `c` maps the state `x` to
/// `(x / f[s]) << scaleBits + x % f[s] + c[s]`, first writing out low bytes while `x` is too large
/// for that to stay below `2^31`. Decoding inverts it: the low `scaleBits` bits name the symbol, and
/// bytes are read back in while the state is below `2^23`. rANS is last in, first out, so the
/// encoder takes the whole sequence and runs it backwards; the bytes come out in the order the
/// decoder reads them. Every step is integer arithmetic, so a decoder given the same tables
/// reproduces the symbols exactly on any machine.
///
/// Stream layout (`RANSEncoder.encode`): the final state as 4 bytes, little-endian, then the
/// renormalisation bytes in the order the decoder consumes them. A decoder that ends with any other
/// state than the encoder's initial one, or runs out of bytes, reports damaged data.
public enum RANS {
    /// The lower bound of the normalised state interval `[lowerBound, 256 * lowerBound)`.
    public static let lowerBound: UInt32 = 1 << 23
    /// The largest `scaleBits` a table may use: frequencies must fit the renormalisation's headroom.
    public static let largestScaleBits = 16
}

/// What went wrong in coding, as one line.
public struct CodecError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The quantised probabilities of one coding step: integer frequencies of an alphabet of `count`
/// symbols summing to exactly `2^scaleBits`, with their cumulative sums.
public struct FrequencyTable: Equatable, Sendable {
    public let scaleBits: Int
    /// `frequencies[s]`, each in `0 ... 2^scaleBits`.
    public let frequencies: [UInt32]
    /// `cumulative[s]` = sum of `frequencies[0 ..< s]`; `cumulative[count]` = `2^scaleBits`.
    public let cumulative: [UInt32]

    public var count: Int { frequencies.count }

    /// A table from integer frequencies that already sum to `2^scaleBits`. Throws unless they do,
    /// or when `scaleBits` is outside `1 ... RANS.largestScaleBits`.
    public init(frequencies: [UInt32], scaleBits: Int) throws {
        guard (1...RANS.largestScaleBits).contains(scaleBits) else {
            throw CodecError("frequency table: scale bits \(scaleBits) outside 1...\(RANS.largestScaleBits)")
        }
        guard !frequencies.isEmpty else { throw CodecError("frequency table: empty alphabet") }
        var cumulative = [UInt32](repeating: 0, count: frequencies.count + 1)
        var total: UInt64 = 0
        for (s, f) in frequencies.enumerated() {
            total += UInt64(f)
            guard total <= UInt64(1) << scaleBits else { break }
            cumulative[s + 1] = UInt32(total)
        }
        guard total == UInt64(1) << scaleBits else {
            throw CodecError("frequency table: frequencies sum to \(total), not 2^\(scaleBits)")
        }
        self.scaleBits = scaleBits
        self.frequencies = frequencies
        self.cumulative = cumulative
    }

    /// Quantises non-negative `weights` (probabilities or counts; not all zero) to frequencies summing
    /// to `2^scaleBits`, giving every symbol at least 1 so that any symbol can be coded, whatever a
    /// model said of it. Deterministic: the same weights give the same table on every machine (the
    /// rounding is done in integers after one scaling to fixed point).
    public init(weights: [Double], scaleBits: Int = 16) throws {
        let n = weights.count
        guard (1...RANS.largestScaleBits).contains(scaleBits) else {
            throw CodecError("frequency table: scale bits \(scaleBits) outside 1...\(RANS.largestScaleBits)")
        }
        guard n >= 1 else { throw CodecError("frequency table: empty alphabet") }
        let total = UInt64(1) << scaleBits
        guard UInt64(n) <= total else {
            throw CodecError("frequency table: \(n) symbols do not fit 2^\(scaleBits) frequencies")
        }
        guard weights.allSatisfy({ $0.isFinite && $0 >= 0 }) else {
            throw CodecError("frequency table: weights must be finite and non-negative")
        }
        let sum = weights.reduce(0, +)
        guard sum > 0 else { throw CodecError("frequency table: all weights are zero") }
        // Fixed point first (2^32 units over the whole), so the rest is exact integer arithmetic.
        let units = weights.map { UInt64(($0 / sum * 4_294_967_296).rounded(.down)) }
        let unitSum = units.reduce(0, +)
        let spare = total - UInt64(n)  // every symbol gets 1; `spare` is shared out by weight
        var frequencies = [UInt32](repeating: 1, count: n)
        var given: UInt64 = 0
        if unitSum > 0 {
            for s in 0..<n {
                let share = units[s] * spare / unitSum
                frequencies[s] += UInt32(share)
                given += share
            }
        }
        // Hand what rounding left over to the largest weights (ties to the lower index).
        var left = spare - given
        if left > 0 {
            let order = (0..<n).sorted { units[$0] != units[$1] ? units[$0] > units[$1] : $0 < $1 }
            var i = 0
            while left > 0 {
                frequencies[order[i % n]] += 1
                left -= 1
                i += 1
            }
        }
        try self.init(frequencies: frequencies, scaleBits: scaleBits)
    }

    /// The symbol whose range holds `slot` (`0 ..< 2^scaleBits`): the last `s` with `cumulative[s] <= slot`
    /// and a non-zero frequency.
    @inline(__always)
    func symbol(at slot: UInt32) -> Int {
        var low = 0, high = count  // cumulative[low] <= slot < cumulative[high]
        while high - low > 1 {
            let middle = (low + high) / 2
            if cumulative[middle] <= slot { low = middle } else { high = middle }
        }
        return low
    }
}

/// Encodes a whole sequence of symbols, each with its own table.
public enum RANSEncoder {
    /// The stream for `symbols`, where `table(i)` gives the table of the `i`-th symbol (called in
    /// reverse order, once per symbol). Throws when a symbol is outside its table's alphabet or has
    /// frequency zero there.
    public static func encode(_ symbols: [Int], table: (Int) throws -> FrequencyTable) throws -> [UInt8] {
        var reversed: [UInt8] = []
        reversed.reserveCapacity(symbols.count / 2 + 16)
        var state = RANS.lowerBound
        for i in stride(from: symbols.count - 1, through: 0, by: -1) {
            let t = try table(i)
            let s = symbols[i]
            guard s >= 0 && s < t.count else {
                throw CodecError("symbol \(s) at position \(i) is outside the alphabet of \(t.count)")
            }
            let f = t.frequencies[s]
            guard f > 0 else { throw CodecError("symbol \(s) at position \(i) has probability zero") }
            // Renormalise: after the step the state must stay below 2^31.
            let limit = ((RANS.lowerBound >> UInt32(t.scaleBits)) << 8) * f
            while state >= limit {
                reversed.append(UInt8(truncatingIfNeeded: state))
                state >>= 8
            }
            state = ((state / f) << UInt32(t.scaleBits)) + (state % f) + t.cumulative[s]
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(reversed.count + 4)
        for k in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: state >> UInt32(8 * k))) }
        bytes.append(contentsOf: reversed.reversed())
        return bytes
    }
}

/// Decodes a stream written by `RANSEncoder`, symbol by symbol, with the same tables in the same order.
public struct RANSDecoder {
    private let bytes: [UInt8]
    private var position: Int
    private var state: UInt32

    /// Starts on `bytes`. Throws when they are too short to hold a state or the state is out of range.
    public init(_ bytes: [UInt8]) throws {
        guard bytes.count >= 4 else { throw CodecError("coded stream of \(bytes.count) bytes is too short") }
        var state: UInt32 = 0
        for k in 0..<4 { state |= UInt32(bytes[k]) << UInt32(8 * k) }
        guard state >= RANS.lowerBound && state < RANS.lowerBound << 8 else {
            throw CodecError("coded stream is damaged (its state is out of range)")
        }
        self.bytes = bytes
        self.position = 4
        self.state = state
    }

    /// The next symbol under `table`. Throws when the stream runs out of bytes (damaged or truncated)
    /// or the table's scale does not match the state (its slot falls on a zero-frequency symbol).
    public mutating func decode(_ table: FrequencyTable) throws -> Int {
        let mask = (UInt32(1) << UInt32(table.scaleBits)) - 1
        let slot = state & mask
        let s = table.symbol(at: slot)
        let f = table.frequencies[s]
        guard f > 0 else { throw CodecError("coded stream is damaged (it names a symbol of probability zero)") }
        state = f * (state >> UInt32(table.scaleBits)) + slot - table.cumulative[s]
        while state < RANS.lowerBound {
            guard position < bytes.count else { throw CodecError("coded stream is truncated or damaged") }
            state = (state << 8) | UInt32(bytes[position])
            position += 1
        }
        return s
    }

    /// Checks that the whole stream was used and ended where the encoder started: throws otherwise.
    public func finish() throws {
        guard position == bytes.count else {
            throw CodecError("coded stream has \(bytes.count - position) bytes left over after the last symbol")
        }
        guard state == RANS.lowerBound else { throw CodecError("coded stream is damaged (its final state is wrong)") }
    }
}
