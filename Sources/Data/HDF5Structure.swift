#if canImport(Glibc)
import Glibc
#endif

/// Checks of an HDF5 file's group structure made on the raw bytes, before libhdf5 opens it.
///
/// libhdf5 1.10 allocates a local heap (the names of an old-style group's members) with the size
/// its header claims and copies into it before checking that size against the file; a damaged size
/// crashes the process. This walks the groups reachable from the root as h5py and HDF5 write them
/// (superblock versions 0-3, object headers versions 1 and 2 with their continuation blocks, symbol
/// tables with their B-trees and symbol nodes) and refuses the file when a local heap does not fit
/// inside it, or a global heap collection that an attribute's variable-length values (strings)
/// refer to does not fit in the file, holds an object beyond its end, or holds a value of another
/// size than the attribute says (libhdf5 1.10 copies overlapping memory, loops, allocates the
/// claimed length or copies past it on those). Structures it does not recognise are left to libhdf5, which checks their signatures.
struct HDF5Structure {
    private let descriptor: Int32
    private let fileSize: Int
    private var offsetSize = 8
    private var lengthSize = 8
    private var base = 0
    private var visited = Set<Int>()
    /// Global heap collections walked: their objects' sizes by index, or nil when damaged.
    private var collections: [Int: [Int: Int]?] = [:]
    /// Object headers, B-tree nodes and symbol nodes walked at most; a file with more is left to
    /// libhdf5 beyond that point.
    static let largestWalk = 100_000

    /// Throws a `DataError` naming `path` when a group's local heap does not fit in the file.
    static func check(path: String, fileSize: Int) throws {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw DataError("\(path): cannot be read (\(String(cString: strerror(errno))))") }
        defer { close(descriptor) }
        var walker = HDF5Structure(descriptor: descriptor, fileSize: fileSize)
        if let problem = walker.walk() {
            throw DataError("\(path): damaged HDF5 file (\(problem))")
        }
    }

    private init(descriptor: Int32, fileSize: Int) {
        self.descriptor = descriptor
        self.fileSize = fileSize
    }

    // MARK: Reading

    private func bytes(at offset: Int, count: Int) -> [UInt8]? {
        guard offset >= 0, count >= 0, count <= fileSize, offset <= fileSize - count else { return nil }
        var buffer = [UInt8](repeating: 0, count: count)
        let read = buffer.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, count, off_t(offset)) }
        return read == count ? buffer : nil
    }

    /// A little-endian unsigned integer of `size` bytes at `offset` in `buffer`; nil past its end
    /// or when it does not fit an Int.
    private func integer(_ buffer: [UInt8], _ offset: Int, _ size: Int) -> Int? {
        guard offset >= 0, size <= 8, offset + size <= buffer.count else { return nil }
        var value: UInt64 = 0
        for i in (0..<size).reversed() { value = value << 8 | UInt64(buffer[offset + i]) }
        if size == 8 && value == UInt64.max { return -1 }  // the undefined address
        return Int(exactly: value)
    }

    /// An address field made absolute; nil when undefined or outside the file.
    private func address(_ buffer: [UInt8], _ offset: Int) -> Int? {
        guard let relative = integer(buffer, offset, offsetSize), relative >= 0 else { return nil }
        let (absolute, overflow) = relative.addingReportingOverflow(base)
        return overflow || absolute >= fileSize ? nil : absolute
    }

    private func signature(_ buffer: [UInt8], _ text: String) -> Bool {
        Array(text.utf8) == Array(buffer.prefix(4))
    }

    // MARK: Walking

    /// The first problem found, or nil.
    private mutating func walk() -> String? {
        // The superblock is at 0 or at a power of two from 512 on (after a user block).
        let magic: [UInt8] = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]
        var location = 0
        while location < fileSize {
            if bytes(at: location, count: 8) == magic { break }
            location = location == 0 ? 512 : location * 2
        }
        guard location < fileSize, let superblock = bytes(at: location, count: min(128, fileSize - location)),
              superblock.count > 16 else { return nil }
        let version = Int(superblock[8])
        var root: Int?
        switch version {
        case 0, 1:
            guard superblock.count > 15 else { return nil }
            offsetSize = Int(superblock[13])
            lengthSize = Int(superblock[14])
            guard [2, 4, 8].contains(offsetSize), [2, 4, 8].contains(lengthSize) else { return nil }
            let addresses = version == 0 ? 24 : 28
            base = integer(superblock, addresses, offsetSize) ?? 0
            // Base, free space, end of file and driver addresses, then the root's symbol table
            // entry: its link name offset and its object header address.
            root = address(superblock, addresses + 5 * offsetSize)
            // The entry may cache the root's symbol table (cache type 1: B-tree and heap), which
            // libhdf5 may use in place of the object header's.
            if integer(superblock, addresses + 6 * offsetSize, 4) == 1,
               let heap = address(superblock, addresses + 6 * offsetSize + 8 + offsetSize),
               let problem = localHeap(at: heap) {
                return problem
            }
        case 2, 3:
            guard superblock.count > 11 else { return nil }
            offsetSize = Int(superblock[9])
            lengthSize = Int(superblock[10])
            guard [2, 4, 8].contains(offsetSize), [2, 4, 8].contains(lengthSize) else { return nil }
            base = integer(superblock, 12, offsetSize) ?? 0
            // Base, superblock extension and end of file addresses, then the root object header.
            root = address(superblock, 12 + 3 * offsetSize)
        default:
            return nil
        }
        guard let root else { return nil }
        return objectHeader(at: root, depth: 0)
    }

    private mutating func enter(_ address: Int) -> Bool {
        visited.count < Self.largestWalk && visited.insert(address).inserted
    }

    /// Walks an object header (version 1 or 2) and its continuation blocks; a symbol table message
    /// leads to the group's local heap and B-tree.
    private mutating func objectHeader(at start: Int, depth: Int) -> String? {
        guard depth < 64, enter(start), let prefix = bytes(at: start, count: min(64, fileSize - start)) else { return nil }
        var blocks: [(start: Int, length: Int, version: Int)] = []
        if signature(prefix, "OHDR") {
            guard prefix.count > 6, prefix[4] == 2 else { return nil }
            let flags = Int(prefix[5])
            var position = 6 + (flags & 0x20 != 0 ? 16 : 0) + (flags & 0x10 != 0 ? 4 : 0)
            let sizeBytes = 1 << (flags & 3)
            guard let length = integer(prefix, position, sizeBytes) else { return nil }
            position += sizeBytes
            blocks.append((start + position, length, 2))
        } else if prefix.count >= 16, prefix[0] == 1 {
            guard let length = integer(prefix, 8, 4) else { return nil }
            blocks.append((start + 16, length, 1))
        } else {
            return nil
        }
        var walkedBlocks = 0
        while let block = blocks.popLast() {
            walkedBlocks += 1
            guard walkedBlocks <= 1024 else { return nil }
            // libhdf5 allocates the claimed size before it reads.
            guard block.length <= fileSize, block.start <= fileSize - block.length,
                  let data = bytes(at: block.start, count: block.length) else {
                return "the object header at \(start) claims \(block.length) bytes at \(block.start), beyond the file of \(fileSize)"
            }
            var position = 0
            let flagsOfV2 = block.version == 2 ? (integer(prefix, 5, 1) ?? 0) : 0
            while true {
                let type: Int, size: Int, body: Int
                if block.version == 1 {
                    guard let t = integer(data, position, 2), let s = integer(data, position + 2, 2) else { break }
                    (type, size, body) = (t, s, position + 8)
                } else {
                    guard let t = integer(data, position, 1), let s = integer(data, position + 1, 2) else { break }
                    (type, size, body) = (t, s, position + 4 + (flagsOfV2 & 0x04 != 0 ? 2 : 0))
                }
                guard body + size <= data.count else { break }
                if type == 0x10, let next = address(data, body), let length = integer(data, body + offsetSize, lengthSize) {
                    // A continuation: version 2 blocks start with "OCHK" and end with a checksum.
                    if block.version == 1 {
                        blocks.append((next, length, 1))
                    } else if length > 8, let head = bytes(at: next, count: 4), signature(head, "OCHK") {
                        blocks.append((next + 4, length - 8, 2))
                    }
                }
                if type == 0x0C, let problem = attribute(Array(data[body..<(body + size)]), header: start) { return problem }
                if type == 0x0B, let problem = filterPipeline(Array(data[body..<(body + size)]), header: start) { return problem }
                if type == 0x11 {
                    // A symbol table: its B-tree and local heap must both be in the file.
                    guard let tree = address(data, body), let heap = address(data, body + offsetSize) else {
                        return "a group's symbol table at \(start) points outside the file"
                    }
                    if let problem = localHeap(at: heap) { return problem }
                    if let problem = groupTree(at: tree, depth: depth, level: 0) { return problem }
                }
                position = block.version == 1 ? body + ((size + 7) & ~7) : body + size
            }
        }
        return nil
    }

    /// An attribute's name, datatype and dataspace must lie inside its message: libhdf5 1.10
    /// decodes them at the sizes the message declares, past its end. An attribute of
    /// variable-length values (strings, as the checkpoint's `format` and `config`) keeps them in
    /// global heap collections; each collection it refers to is checked once.
    private mutating func attribute(_ message: [UInt8], header: Int) -> String? {
        guard message.count >= 8, let nameSize = integer(message, 2, 2), let typeSize = integer(message, 4, 2),
              let spaceSize = integer(message, 6, 2) else { return nil }
        let version = Int(message[0])
        guard (1...3).contains(version) else { return nil }
        let padded = { (size: Int) in version == 1 ? (size + 7) & ~7 : size }
        let typeStart = (version == 3 ? 9 : 8) + padded(nameSize)
        let spaceStart = typeStart + padded(typeSize)
        let dataStart = spaceStart + padded(spaceSize)
        guard typeStart - padded(nameSize) + nameSize <= message.count, typeStart + typeSize <= message.count,
              spaceStart + spaceSize <= message.count else {
            return "an attribute of the object at \(header) declares a name, datatype or dataspace beyond the end of its message"
        }
        // Shared datatypes or dataspaces are stored elsewhere: left to libhdf5.
        guard version == 1 || message[1] & 0x03 == 0 else { return nil }
        // Datatype class 9 is variable-length; each value is a length, a collection address and an
        // index in that collection.
        guard typeSize >= 8, typeStart + typeSize <= message.count, message[typeStart] & 0x0F == 9,
              spaceSize >= 2, spaceStart + spaceSize <= message.count else { return nil }
        let spaceVersion = Int(message[spaceStart])
        let rank = Int(message[spaceStart + 1])
        let dimensions = spaceVersion == 1 ? spaceStart + 8 : spaceStart + 4
        var values = 1
        for dimension in 0..<rank {
            guard let size = integer(message, dimensions + dimension * lengthSize, lengthSize) else { return nil }
            values = values.multipliedReportingOverflow(by: size).overflow ? Int.max : values * size
        }
        if spaceVersion == 2 && message.count > spaceStart + 3 && message[spaceStart + 3] == 2 { values = 0 }  // null
        // The base type follows the variable-length type's 8-byte header; its size is at offset 4.
        guard let baseSize = integer(message, typeStart + 12, 4), baseSize > 0 else { return nil }
        let valueSize = 4 + offsetSize + 4
        for value in 0..<min(values, 1024) {
            let start = dataStart + value * valueSize
            guard start + valueSize <= message.count, let length = integer(message, start, 4), length > 0,
                  let collection = address(message, start + 4), let index = integer(message, start + 4 + offsetSize, 4) else { continue }
            if let problem = globalHeap(at: collection) { return problem }
            // libhdf5 allocates the value's length and copies the heap object into it.
            let (expected, overflow) = length.multipliedReportingOverflow(by: baseSize)
            guard !overflow, let objects = collections[collection] ?? nil, objects[index] == expected else {
                return "an attribute's value of \(length) x \(baseSize) bytes does not match object \(index) of the global heap collection at \(collection)"
            }
        }
        return nil
    }

    /// A dataset's filter pipeline must describe as many filters as it says, inside the message,
    /// each name ending within its length: libhdf5 1.10 decodes the count it is given past the
    /// message's end and takes the names' lengths with `strlen`.
    private func filterPipeline(_ message: [UInt8], header: Int) -> String? {
        let problem = "the filter pipeline of the object at \(header) does not fit its message"
        guard message.count >= 2, (1...2).contains(message[0]) else { return nil }
        let version = Int(message[0])
        let filters = Int(message[1])
        guard filters <= 32 else { return problem }
        var position = version == 1 ? 8 : 2
        for _ in 0..<filters {
            guard let id = integer(message, position, 2) else { return problem }
            position += 2
            var nameLength = 0
            if version == 1 || id >= 256 {
                guard let length = integer(message, position, 2) else { return problem }
                nameLength = length
                position += 2
            }
            guard let values = integer(message, position + 2, 2) else { return problem }
            position += 4
            if nameLength > 0 {
                guard position + nameLength <= message.count, message[position..<(position + nameLength)].contains(0) else {
                    return problem
                }
                position += nameLength
            }
            position += 4 * values + (version == 1 && values % 2 == 1 ? 4 : 0)
            guard position <= message.count else { return problem }
        }
        return nil
    }

    /// A global heap collection must lie inside the file, and each object in it inside the
    /// collection.
    private mutating func globalHeap(at start: Int) -> String? {
        if collections[start] != nil { return nil }
        collections[start] = .some(nil)
        guard let header = bytes(at: start, count: min(8 + lengthSize, fileSize - start)),
              signature(header, "GCOL") else { return nil }
        guard let size = integer(header, 8, lengthSize), size >= 8 + lengthSize, size <= fileSize - start,
              let collection = bytes(at: start, count: size) else {
            return "the global heap collection at \(start) does not fit in the file of \(fileSize) bytes"
        }
        // As libhdf5 walks it: objects (header, then the data padded to 8 bytes) up to the end;
        // index 0 is free space, whose size includes its header and is not padded.
        var position = 8 + lengthSize
        var objects: [Int: Int] = [:]
        while position + 8 + lengthSize <= size {
            guard let index = integer(collection, position, 2), let objectSize = integer(collection, position + 8, lengthSize) else {
                return "the global heap collection at \(start) holds an object of impossible size"
            }
            let padded = objectSize > size ? size : (objectSize + 7) & ~7
            let need = index == 0 ? objectSize : 8 + lengthSize + padded
            guard need >= 8 + lengthSize, need <= size - position else {
                return "the global heap collection at \(start) holds an object of \(objectSize) bytes that does not fit it"
            }
            if index > 0 { objects[index] = objectSize }
            position += need
        }
        collections[start] = objects
        return nil
    }

    /// A local heap's data segment must lie inside the file.
    private func localHeap(at start: Int) -> String? {
        guard let prefix = bytes(at: start, count: min(8 + 2 * lengthSize + offsetSize, fileSize - start)),
              signature(prefix, "HEAP") else { return nil }
        guard let size = integer(prefix, 8, lengthSize) else {
            return "the local heap at \(start) claims an impossible size"
        }
        guard size <= fileSize else {
            return "the local heap at \(start) claims \(size) bytes in a file of \(fileSize)"
        }
        if let data = address(prefix, 8 + 2 * lengthSize), data <= fileSize - size {
            return nil
        }
        return "the local heap at \(start) has its \(size) bytes outside the file of \(fileSize)"
    }

    /// A group's version 1 B-tree: its nodes lead to symbol nodes, whose entries are the members'
    /// object headers.
    private mutating func groupTree(at start: Int, depth: Int, level nesting: Int) -> String? {
        guard nesting < 64, enter(start), let header = bytes(at: start, count: min(8 + 2 * offsetSize, fileSize - start)),
              signature(header, "TREE"), header.count >= 8, header[4] == 0,
              let used = integer(header, 6, 2) else { return nil }
        let level = Int(header[5])
        let entryBytes = lengthSize + offsetSize
        guard let node = bytes(at: start + 8 + 2 * offsetSize, count: min(used * entryBytes + lengthSize, fileSize)) else { return nil }
        for entry in 0..<used {
            guard let child = address(node, entry * entryBytes + lengthSize) else { continue }
            let problem = level > 0 ? groupTree(at: child, depth: depth, level: nesting + 1) : symbolNode(at: child, depth: depth)
            if let problem { return problem }
        }
        return nil
    }

    private mutating func symbolNode(at start: Int, depth: Int) -> String? {
        guard enter(start), let header = bytes(at: start, count: min(8, fileSize - start)),
              signature(header, "SNOD"), let symbols = integer(header, 6, 2) else { return nil }
        let entryBytes = 2 * offsetSize + 24
        guard let entries = bytes(at: start + 8, count: min(symbols * entryBytes, fileSize)) else { return nil }
        for symbol in 0..<symbols {
            guard let object = address(entries, symbol * entryBytes + offsetSize) else { continue }
            if let problem = objectHeader(at: object, depth: depth + 1) { return problem }
        }
        return nil
    }
}
