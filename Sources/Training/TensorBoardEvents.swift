import Foundation

/// `train --tensorboard`: TensorBoard event files beside `metrics.jsonl`, so that `tensorboard
/// --logdir OUT` plots every scalar of the run under the names `metrics.jsonl` uses.
///
/// The format (docs/formats.md, "TensorBoard event files"): a file named
/// `events.out.tfevents.<seconds>.<host>.vqvae` (seconds since 1970, later than any earlier file's
/// in the folder) of TFRecords (`uint64` length, masked CRC-32C of
/// the length, the bytes, masked CRC-32C of the bytes, little-endian), each an `Event` protocol
/// buffer: first `file_version = "brain.Event:2"`, then per record one event with `wall_time`,
/// `step` and a `Summary` of `simple_value` scalars. The few fields needed are encoded here by hand
/// rather than through generated code. Each start of a run writes a new file; a run resumed after
/// step `s` first writes a `SessionLog` START event at step `s + 1`, which tells TensorBoard to drop
/// what an earlier file logged from that step on (the steps the resumed run repeats).
final class TensorBoardEvents {
    let path: String
    private let handle: FileHandle

    /// Creates `folder/events.out.tfevents.<seconds>.<host>.vqvae` and writes its first event (and,
    /// for a resumed run, the restart at `resumedStep`, the first step it will log).
    init(folder: String, resumedStep: Int?) throws {
        var host = [CChar](repeating: 0, count: 256)
        gethostname(&host, host.count - 1)
        let name = String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let now = Date().timeIntervalSince1970
        // TensorBoard reads a folder's event files in name order, which must be the order the runs
        // started (a restart applies to the files before it): a start within the same second as an
        // earlier file's takes the next second.
        let prefix = "events.out.tfevents."
        let earlier = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [])
            .filter { $0.hasPrefix(prefix) }
            .compactMap { Int($0.dropFirst(prefix.count).prefix { $0 != "." }) }
        let seconds = max(Int(now), (earlier.max() ?? 0) + 1)
        path = folder + "/\(prefix)\(seconds).\(name.isEmpty ? "host" : name).vqvae"
        guard FileManager.default.createFile(atPath: path, contents: nil),
              let handle = FileHandle(forWritingAtPath: path) else {
            throw TrainingError("cannot write \(path)")
        }
        self.handle = handle
        var version = ProtoWriter()
        version.double(1, now)
        version.string(3, "brain.Event:2")
        try write(version.bytes)
        if let resumedStep {
            var session = ProtoWriter()
            session.varint(1, 1)  // SessionLog.status = START
            var event = ProtoWriter()
            event.double(1, now)
            event.varint(2, UInt64(resumedStep))
            event.message(7, session.bytes)
            try write(event.bytes)
        }
    }

    deinit { try? handle.close() }

    /// One event at `step` holding every finite number of `values` as a scalar named by its key.
    func append(step: Int, values: [(tag: String, value: Double)], wallTime: Double = Date().timeIntervalSince1970) throws {
        var summary = ProtoWriter()
        for (tag, value) in values where value.isFinite {
            var entry = ProtoWriter()
            entry.string(1, tag)
            entry.float(2, Float(value))
            summary.message(1, entry.bytes)
        }
        var event = ProtoWriter()
        event.double(1, wallTime)
        event.varint(2, UInt64(max(step, 0)))
        event.message(5, summary.bytes)
        try write(event.bytes)
    }

    /// One TFRecord.
    private func write(_ data: [UInt8]) throws {
        var record = [UInt8]()
        record.reserveCapacity(data.count + 16)
        let length = withUnsafeBytes(of: UInt64(data.count).littleEndian, Array.init)
        record += length
        record += withUnsafeBytes(of: CRC32C.masked(length).littleEndian, Array.init)
        record += data
        record += withUnsafeBytes(of: CRC32C.masked(data).littleEndian, Array.init)
        do { try handle.write(contentsOf: Data(record)) } catch {
            throw TrainingError("cannot append to \(path): \(error.localizedDescription)")
        }
    }
}

/// The protocol-buffer wire format, for the handful of fields an event needs.
struct ProtoWriter {
    private(set) var bytes: [UInt8] = []

    private mutating func raw(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    private mutating func key(_ field: Int, _ wireType: UInt64) { raw(UInt64(field) << 3 | wireType) }

    mutating func varint(_ field: Int, _ value: UInt64) { key(field, 0); raw(value) }

    mutating func double(_ field: Int, _ value: Double) {
        key(field, 1)
        bytes += withUnsafeBytes(of: value.bitPattern.littleEndian, Array.init)
    }

    mutating func float(_ field: Int, _ value: Float) {
        key(field, 5)
        bytes += withUnsafeBytes(of: value.bitPattern.littleEndian, Array.init)
    }

    mutating func message(_ field: Int, _ content: [UInt8]) {
        key(field, 2)
        raw(UInt64(content.count))
        bytes += content
    }

    mutating func string(_ field: Int, _ value: String) { message(field, Array(value.utf8)) }
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as TFRecord checksums its frames, and
/// TFRecord's masking of it.
enum CRC32C {
    private static let table: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    static func checksum(_ data: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in data { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }

    static func masked(_ data: [UInt8]) -> UInt32 {
        let crc = checksum(data)
        return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }
}
