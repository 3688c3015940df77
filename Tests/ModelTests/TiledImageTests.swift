import XCTest
import Model
import TestSupport

/// Tiled processing: the plan covers the image, tiles hold the right pixels, and blending is exact
/// for processings that act the same way on every tile (no seams).
final class TiledImageTests: XCTestCase {
    let shapes: [(height: Int, width: Int, channels: Int)] = [
        (1, 1, 1), (5, 7, 3), (31, 32, 1), (32, 32, 3), (33, 32, 1), (75, 50, 3), (50, 75, 1), (100, 37, 3), (64, 64, 1),
    ]

    func testPlanCoversTheImageWithTheRequestedOverlap() throws {
        for length in [1, 5, 31, 32, 33, 50, 64, 75, 100, 257] {
            for (tile, overlap) in [(32, 8), (32, 16), (32, 0), (32, 31), (8, 2), (1, 0)] {
                let origins = TiledImage.origins(length: length, tileSize: tile, overlap: overlap)
                let label = "length \(length), tile \(tile), overlap \(overlap): \(origins)"
                XCTAssertEqual(origins.first, 0, label)
                if length <= tile {
                    XCTAssertEqual(origins, [0], label)
                    continue
                }
                XCTAssertEqual(origins.last, length - tile, "last tile flush with the border: \(label)")
                for (a, b) in zip(origins, origins.dropFirst()) {
                    XCTAssertGreaterThan(b, a, label)
                    XCTAssertLessThanOrEqual(b - a, tile - overlap, "overlap at least \(overlap): \(label)")
                }
                // As few tiles as the overlap allows.
                XCTAssertEqual(origins.count, (length - tile + (tile - overlap) - 1) / (tile - overlap) + 1, label)
            }
        }
        XCTAssertEqual(TiledImage.origins(length: 75, tileSize: 32, overlap: 8), [0, 21, 43])
        XCTAssertEqual(TiledImage.origins(length: 64, tileSize: 32, overlap: 0), [0, 32])
        let plan = try TiledImage(height: 75, width: 50, channels: 3, tileSize: 32, overlap: 8)
        XCTAssertEqual(plan.rowOrigins, [0, 21, 43])
        XCTAssertEqual(plan.columnOrigins, [0, 18])
        XCTAssertEqual(plan.tileCount, 6)
        XCTAssertTrue(plan.origin(ofTile: 3) == (21, 18))

        let window = TiledImage.window(tileSize: 32)
        XCTAssertTrue(window.allSatisfy { $0 > 0 && $0 <= 1 }, "window never zero")
        for i in 0..<16 { XCTAssertEqual(window[i], window[31 - i], accuracy: 1e-7, "symmetric") }

        for (h, w, c, t, o) in [(0, 5, 1, 32, 8), (5, 0, 1, 32, 8), (5, 5, 0, 32, 8), (5, 5, 1, 0, 0),
                                (5, 5, 1, 32, 32), (5, 5, 1, 32, -1)] {
            XCTAssertThrowsError(try TiledImage(height: h, width: w, channels: c, tileSize: t, overlap: o),
                                 "\(h)x\(w)x\(c), tile \(t), overlap \(o)") { XCTAssertTrue($0 is ModelError) }
        }
    }

    func testTilesHoldTheImageAndReplicateEdges() throws {
        let (h, w, c) = (5, 7, 2)
        let image = (0..<(h * w * c)).map { Float($0) }
        let plan = try TiledImage(height: h, width: w, channels: c, tileSize: 8, overlap: 2)
        XCTAssertEqual(plan.tileCount, 1)
        var tile = [Float](repeating: -1, count: 8 * 8 * c)
        image.withUnsafeBufferPointer { source in
            tile.withUnsafeMutableBufferPointer { plan.extractTile(0, from: source.baseAddress!, into: $0.baseAddress!) }
        }
        for i in 0..<8 {
            for j in 0..<8 {
                for k in 0..<c {
                    XCTAssertEqual(tile[(i * 8 + j) * c + k], image[(min(i, h - 1) * w + min(j, w - 1)) * c + k], "(\(i), \(j), \(k))")
                }
            }
        }

        // Tiles of a larger image are its sub-images at the planned origins.
        let big = try TiledImage(height: 20, width: 13, channels: 1, tileSize: 8, overlap: 3)
        let values = (0..<(20 * 13)).map { Float($0) }
        var seen = 0
        _ = try big.process(values, batchSize: 4) { tiles, count, results in
            for k in 0..<count {
                let (top, left) = big.origin(ofTile: seen + k)
                for i in 0..<8 { for j in 0..<8 { XCTAssertEqual(tiles[k * 64 + i * 8 + j], values[(top + i) * 13 + left + j]) } }
            }
            results.update(from: tiles, count: count * 64)
            seen += count
        }
        XCTAssertEqual(seen, big.tileCount)
    }

    func testIdentityGivesTheImage() throws {
        for (h, w, c) in shapes {
            for overlap in [8, 16, 0] {
                let plan = try TiledImage(height: h, width: w, channels: c, tileSize: 32, overlap: overlap)
                let image = randomFloats(h * w * c, seed: UInt64(h * 1000 + w * 10 + c), low: 0, high: 1)
                var calls = 0
                let output = try plan.process(image, batchSize: 3) { tiles, count, results in
                    XCTAssertLessThanOrEqual(count, 3)
                    calls += 1
                    results.update(from: tiles, count: count * 32 * 32 * c)
                }
                XCTAssertEqual(calls, (plan.tileCount + 2) / 3)
                assertClose(output, image.map(Double.init), tolerance: 1e-6, floor: 1,
                            "identity \(h)x\(w)x\(c), overlap \(overlap), \(plan.tileCount) tiles")
            }
        }
    }

    /// Models trained on non-square images tile with their own height and width: every tile is
    /// the sub-image at its origin (edges replicated), the identity gives the image back, and the
    /// overlaps follow each axis's own limit.
    func testNonSquareTiles() throws {
        let (th, tw) = (8, 20)
        for (h, w, c) in [(30, 45, 3), (5, 45, 1), (30, 12, 2), (8, 20, 1)] {
            let plan = try TiledImage(height: h, width: w, channels: c, tileHeight: th, tileWidth: tw,
                                      rowOverlap: 2, columnOverlap: 5)
            XCTAssertEqual(plan.rowOrigins, TiledImage.origins(length: h, tileSize: th, overlap: 2))
            XCTAssertEqual(plan.columnOrigins, TiledImage.origins(length: w, tileSize: tw, overlap: 5))
            let image = randomFloats(h * w * c, seed: UInt64(h * w + c), low: 0, high: 1)
            var seen = 0
            let output = try plan.process(image, batchSize: 3) { tiles, count, results in
                for k in 0..<count {
                    let (top, left) = plan.origin(ofTile: seen + k)
                    for i in 0..<th {
                        for j in 0..<tw {
                            for q in 0..<c {
                                let pixel = (min(top + i, h - 1) * w + min(left + j, w - 1)) * c + q
                                XCTAssertEqual(tiles[((k * th + i) * tw + j) * c + q], image[pixel],
                                               "\(h)x\(w)x\(c) tile \(seen + k) (\(i), \(j), \(q))")
                            }
                        }
                    }
                }
                results.update(from: tiles, count: count * th * tw * c)
                seen += count
            }
            XCTAssertEqual(seen, plan.tileCount)
            assertClose(output, image.map(Double.init), tolerance: 1e-6, floor: 1, "identity \(h)x\(w)x\(c) in 8x20 tiles")
        }
        XCTAssertThrowsError(try TiledImage(height: 30, width: 30, channels: 1, tileHeight: 8, tileWidth: 20,
                                            rowOverlap: 8, columnOverlap: 5)) { XCTAssertTrue($0 is ModelError) }
        XCTAssertThrowsError(try TiledImage(height: 30, width: 30, channels: 1, tileHeight: 8, tileWidth: 20,
                                            rowOverlap: 2, columnOverlap: 20)) { XCTAssertTrue($0 is ModelError) }
    }

    func testSameOffsetEverywhereHasNoSeams() throws {
        for (h, w, c) in shapes {
            let plan = try TiledImage(height: h, width: w, channels: c, tileSize: 32, overlap: 8)
            let image = randomFloats(h * w * c, seed: 77, low: -1, high: 1)
            let output = try plan.process(image) { tiles, count, results in
                for i in 0..<(count * 32 * 32 * c) { results[i] = tiles[i] + 0.25 }
            }
            assertClose(output, image.map { Double($0) + 0.25 }, tolerance: 1e-6, floor: 1, "offset \(h)x\(w)x\(c)")
        }
    }

    func testPointwiseFunctionAndChannelChange() throws {
        for (h, w, c) in shapes {
            let plan = try TiledImage(height: h, width: w, channels: c, tileSize: 32, overlap: 16)
            let image = randomFloats(h * w * c, seed: 3, low: 0, high: 1)
            let output = try plan.process(image, batchSize: 2) { tiles, count, results in
                for i in 0..<(count * 32 * 32 * c) { results[i] = tiles[i] * tiles[i] - 0.5 * sin(3 * tiles[i]) }
            }
            assertClose(output, image.map { Double($0 * $0 - 0.5 * sin(3 * $0)) }, tolerance: 1e-6, floor: 1,
                        "pointwise \(h)x\(w)x\(c)")

            // Another channel count out: the mean of the channels, and twice it.
            let gray = try plan.process(image, outputChannels: 2) { tiles, count, results in
                for p in 0..<(count * 32 * 32) {
                    var sum: Float = 0
                    for k in 0..<c { sum += tiles[p * c + k] }
                    results[2 * p] = sum / Float(c)
                    results[2 * p + 1] = 2 * sum / Float(c)
                }
            }
            var expected: [Double] = []
            for p in 0..<(h * w) {
                let mean = (0..<c).reduce(0.0) { $0 + Double(image[p * c + $1]) } / Double(c)
                expected += [mean, 2 * mean]
            }
            assertClose(gray, expected, tolerance: 1e-6, floor: 1, "channels \(c) -> 2, \(h)x\(w)")
        }
    }

    /// Where tiles disagree, each pixel is a weighted mean of the tiles covering it, and pixels
    /// covered by one tile take that tile's value.
    func testDifferentTilesBlendSmoothly() throws {
        let plan = try TiledImage(height: 75, width: 50, channels: 1, tileSize: 32, overlap: 8)
        var next = 0
        let output = try plan.process([Float](repeating: 0, count: 75 * 50), batchSize: 4) { _, count, results in
            for k in 0..<count { (results + k * 1024).update(repeating: Float(next + k), count: 1024) }
            next += count
        }
        for y in 0..<75 {
            for x in 0..<50 {
                let covering = (0..<plan.tileCount).filter { index in
                    let (top, left) = plan.origin(ofTile: index)
                    return (top..<(top + 32)).contains(y) && (left..<(left + 32)).contains(x)
                }
                let value = output[y * 50 + x]
                XCTAssertGreaterThanOrEqual(value, Float(covering.min()!) - 1e-5, "(\(y), \(x))")
                XCTAssertLessThanOrEqual(value, Float(covering.max()!) + 1e-5, "(\(y), \(x))")
                if covering.count == 1 { XCTAssertEqual(value, Float(covering[0]), accuracy: 1e-6, "(\(y), \(x))") }
            }
        }
        // Neighbouring pixels differ little inside the overlaps: no hard seam.
        var largestStep: Float = 0
        for y in 0..<75 { for x in 1..<50 { largestStep = max(largestStep, abs(output[y * 50 + x] - output[y * 50 + x - 1])) } }
        XCTAssertLessThan(largestStep, 0.5, "tile values 0...5 blend over the overlaps")
    }

    func testBufferSizesAreChecked() throws {
        let plan = try TiledImage(height: 10, width: 10, channels: 3, tileSize: 8, overlap: 2)
        XCTAssertThrowsError(try plan.process([Float](repeating: 0, count: 299)) { _, _, _ in }) { XCTAssertTrue($0 is ModelError) }
        XCTAssertThrowsError(try plan.process([Float](repeating: 0, count: 300), batchSize: 0) { _, _, _ in })
        XCTAssertThrowsError(try plan.process([Float](repeating: 0, count: 300), outputChannels: 0) { _, _, _ in })
        struct Stop: Error {}
        XCTAssertThrowsError(try plan.process([Float](repeating: 0, count: 300)) { _, _, _ in throw Stop() }) {
            XCTAssertTrue($0 is Stop, "the closure's error is passed on")
        }
    }
}

/// The eight symmetries used by `restore --ensemble`.
final class DihedralTests: XCTestCase {
    func testEachSymmetryInvertsAndTheEightDiffer() {
        let (h, w, c) = (3, 5, 2)
        let image = (0..<(h * w * c)).map { Float($0) }
        var seen: Set<[Float]> = []
        for symmetry in Dihedral.all {
            let size = symmetry.size(height: h, width: w)
            let transformed = symmetry.apply(image, height: h, width: w, channels: c)
            XCTAssertEqual(size.height * size.width * c, transformed.count)
            XCTAssertEqual(Set(transformed), Set(image), "\(symmetry) is a permutation")
            XCTAssertEqual(symmetry.invert(transformed, height: h, width: w, channels: c), image, "\(symmetry) inverts")
            seen.insert(transformed)
        }
        XCTAssertEqual(seen.count, 8)
        XCTAssertEqual(Dihedral.all[0].apply(image, height: h, width: w, channels: c), image, "the first is the identity")
        // A quarter turn clockwise: the top-left pixel goes to the top-right of the 5x3 result,
        // the bottom-left to the top-left; a mirror swaps left and right.
        let turned = Dihedral(rotations: 1, mirrored: false).apply(image, height: h, width: w, channels: c)
        XCTAssertEqual(Array(turned[(0 * 3 + 2) * c..<(0 * 3 + 2) * c + c]), [0, 1])
        XCTAssertEqual(Array(turned[0..<c]), Array(image[(2 * w + 0) * c..<(2 * w + 0) * c + c]))
        let mirrored = Dihedral(rotations: 0, mirrored: true).apply(image, height: h, width: w, channels: c)
        XCTAssertEqual(Array(mirrored[0..<c]), Array(image[(w - 1) * c..<w * c]))
    }
}
