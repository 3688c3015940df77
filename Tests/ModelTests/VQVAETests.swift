@testable import Model
import Foundation
import TestSupport
import XCTest

final class VQVAETests: XCTestCase {
    let batch = 2

    /// 8x8x3 images, hidden 8, residual hidden 4, one residual block, two stride-2 layers (latent
    /// 2x2), code dimension 4, 16 codes.
    func smallConfiguration(_ kind: CodebookKind) -> ModelConfiguration {
        var c = ModelConfiguration(height: 8, width: 8, channels: 3)
        c.hidden = 8
        c.residualHidden = 4
        c.residualBlocks = 1
        c.downsamplings = 2
        c.codeDimension = 4
        c.codes = 16
        c.codebook = kind
        return c
    }

    func makeModel(_ kind: CodebookKind, seed: UInt64) throws -> VQVAE {
        let model = try VQVAE(configuration: smallConfiguration(kind), maxBatch: batch)
        model.initialize(seed: seed)
        return model
    }

    func images(_ model: VQVAE, seed: UInt64) -> [Float] {
        randomFloats(batch * model.imageCount, seed: seed, low: -0.5, high: 0.5)
    }

    func indices(_ model: VQVAE) -> [Int] { (0..<(batch * model.latentCount)).map { Int(model.codeIndices[$0]) } }

    /// Which units every ReLU of the network lets through (from the internal activation buffers).
    /// A float finite difference whose +-h evaluation changes this pattern straddles a kink.
    func reluPattern(_ model: VQVAE) -> [Bool] {
        let buffers = model.downOutputs + model.encoderStack.saved + [model.encoderStack.output]
            + model.decoderStack.saved + [model.decoderStack.output] + model.upOutputs.dropLast() + model.detailOutputs.dropLast()
        return buffers.flatMap { $0.array.map { $0 > 0 } }
    }

    /// A standard-normal codebook is far from the small encoder outputs of a fresh model, which then
    /// all pick the same code. This moves code p to `c + R * (z_p - c) / |z_p - c|` (c the mean of this
    /// batch's z, R = 0.3): each z is nearest to the code in its own direction, so the batch uses
    /// several codes while `|z - q|` stays sizeable (about R), keeping the commitment term visible.
    func spreadCodebook(_ model: VQVAE, images: FloatBuffer, masks: FloatBuffer? = nil) {
        model.forward(images: images.pointer, masks: masks.map { UnsafePointer($0.pointer) }, batch: batch, training: false)
        let d = model.configuration.quantizerDimension, positions = batch * model.latentCount
        let codebook = model.quantizer!.codebook(parameters: model.parameters)
        let z = model.quantizerInput
        var centre = [Float](repeating: 0, count: d)
        for p in 0..<positions { for j in 0..<d { centre[j] += z[p * d + j] / Float(positions) } }
        for p in 0..<positions {
            let offset = (0..<d).map { z[p * d + $0] - centre[$0] }
            let norm = offset.reduce(0) { $0 + $1 * $1 }.squareRoot()
            for j in 0..<d { codebook[p * d + j] = centre[j] + 0.3 * offset[j] / norm }
        }
        if model.quantizer!.kind == .ema { model.quantizer!.emaSum.update(from: codebook, count: model.configuration.codes * d) }
    }

    /// Central differences of the model's own `forward(training: false).total` in float for the
    /// sampled entries of `slots`: asserts that the code assignment is unchanged at +-h. When the +-h
    /// evaluation changes any ReLU's pattern the step is retried at h/4, and a candidate that still
    /// straddles a kink is replaced by the next one (at least one entry of every slot is checked).
    func modelFiniteDifferences(_ model: VQVAE, images: FloatBuffer, masks: FloatBuffer? = nil, targets: FloatBuffer? = nil,
                                slots: [ParameterSlot], h: Float, seed: UInt64, perSlot: Int = 4, noise: NoiseKey? = nil,
                                file: StaticString = #filePath, line: UInt = #line)
        -> (numeric: [Double], analytic: [Double]) {
        let values = model.parameters.values, gradients = model.parameters.gradients
        let targets = targets.map { UnsafePointer($0.pointer) }, masks = masks.map { UnsafePointer($0.pointer) }
        model.forward(images: images.pointer, masks: masks, targets: targets, batch: batch, training: false, noise: noise)
        let codes = indices(model), pattern = reluPattern(model)
        var numeric: [Double] = [], analytic: [Double] = []
        var crossings = 0
        for slot in slots {
            var accepted = 0
            for j in sampleIndices(count: slot.count, samples: min(slot.count, 4 * perSlot), seed: seed) where accepted < perSlot {
                let i = slot.offset + j
                let saved = values[i]
                for step in [h, h / 4] {
                    values[i] = saved + step
                    let plus = model.forward(images: images.pointer, masks: masks, targets: targets, batch: batch, training: false, noise: noise).total
                    XCTAssertEqual(indices(model), codes, "\(slot.name)[\(j)]: assignment changed at +h", file: file, line: line)
                    let plusPattern = reluPattern(model)
                    values[i] = saved - step
                    let minus = model.forward(images: images.pointer, masks: masks, targets: targets, batch: batch, training: false, noise: noise).total
                    XCTAssertEqual(indices(model), codes, "\(slot.name)[\(j)]: assignment changed at -h", file: file, line: line)
                    let minusPattern = reluPattern(model)
                    values[i] = saved
                    if plusPattern != pattern || minusPattern != pattern { crossings += 1; continue }
                    numeric.append((plus - minus) / Double(2 * step))
                    analytic.append(Double(gradients[i]))
                    accepted += 1
                    break
                }
            }
            XCTAssertGreaterThanOrEqual(accepted, 1, "\(slot.name): every entry tried is near a ReLU kink",
                                        file: file, line: line)
            if accepted < min(slot.count, perSlot) { print("  \(slot.name): \(accepted) entries away from kinks") }
        }
        print("model finite differences: \(numeric.count) entries, \(crossings) evaluations straddled a ReLU kink")
        withExtendedLifetime(images) {}
        return (numeric, analytic)
    }

    /// Test 8a: the forward pass against the double-precision reference of spec/model.md, then every
    /// parameter slot's gradient against central differences.
    ///
    /// The backward pass is straight-through, so its result is NOT the derivative of the loss with
    /// respect to encoder weights (or, with `--codebook grad`, the codebook): it is the derivative of
    /// the surrogate in which the decoder reads `z + sg(q - z)`. The differences are therefore taken
    /// (1) of that surrogate, in double, with the reference network (every slot), and (2) of the
    /// model's own `forward(training: false)` total loss in float for the decoder slots, where
    /// surrogate and loss coincide. The code assignment must not change at +-h; that is asserted.
    /// Central differences (h = 1e-5) of the reference's straight-through surrogate loss, anchored
    /// at `base`, for 4 sampled entries of every slot, beside the model's gradient of the last
    /// `backward`. Asserts that no slot's gradient is all zero and that no perturbation changes the
    /// base's codes. Each entry is named `slot[i]`.
    func surrogateFiniteDifferences(_ model: VQVAE, reference: ReferenceVQVAE, base: ReferenceVQVAE.Output, images: [Double],
                                    masks: [Double]? = nil, targets: [Double]? = nil, skipWeights: [Double]? = nil, seed: UInt64,
                                    label: String)
        -> (numeric: [Double], analytic: [Double], names: [String]) {
        let gradients = model.parameters.gradients
        let h = 1e-5
        var numeric: [Double] = [], analytic: [Double] = [], names: [String] = []
        for slot in model.parameters.slots {
            let g = torchTensor(slot, in: gradients)
            XCTAssertTrue(g.contains { $0 != 0 }, "\(label) \(slot.name): gradient is all zero")
            for i in sampleIndices(count: slot.count, samples: 4, seed: seed) {
                var perturbed = reference
                perturbed.tensors[slot.name]![i] += h
                let plus = perturbed.forward(images: images, masks: masks, targets: targets, batch: batch, anchor: base.anchor,
                                             skipWeights: skipWeights)
                perturbed.tensors[slot.name]![i] -= 2 * h
                let minus = perturbed.forward(images: images, masks: masks, targets: targets, batch: batch, anchor: base.anchor,
                                              skipWeights: skipWeights)
                XCTAssertEqual(plus.indices, base.indices, "\(label) \(slot.name)[\(i)]: assignment changed at +h")
                XCTAssertEqual(minus.indices, base.indices, "\(label) \(slot.name)[\(i)]: assignment changed at -h")
                numeric.append((plus.total - minus.total) / (2 * h))
                analytic.append(g[i])
                names.append("\(slot.name)[\(i)]")
            }
        }
        return (numeric, analytic, names)
    }

    /// The autoencoder and the VAE, each configured by `configure` from the small configuration:
    /// every slot's gradient against the float model's own finite differences (h = 1e-3, 3 entries
    /// per slot; the VAE with a fixed noise key). Seeds `seed` (weights) to `seed + 3`. The floor is
    /// 2% of the largest gradient: the float loss's differences at h = 1e-3 carry about 1e-5 of
    /// rounding, near the size of the smallest detail-layer gradients.
    func assertAutoencoderAndVAEMatchModelFiniteDifferences(seed: UInt64, label: String,
                                                          configure: (inout ModelConfiguration) -> Void) throws {
        for kind in [ModelKind.ae, .vae] {
            var c = smallConfiguration(.ema)
            c.model = kind
            configure(&c)
            let model = try VQVAE(configuration: c, maxBatch: batch)
            model.initialize(seed: seed)
            let x = makeBuffer(images(model, seed: seed + 1)), t = makeBuffer(images(model, seed: seed + 2))
            let key: NoiseKey? = kind == .vae ? NoiseKey(seed: 9, step: 3, firstImage: 4) : nil
            model.forward(images: x.pointer, targets: t.pointer, batch: batch, training: true, noise: key)
            model.parameters.zeroGradients()
            model.backward(images: x.pointer, targets: t.pointer)
            let (numeric, analytic) = modelFiniteDifferences(model, images: x, targets: t, slots: model.parameters.slots, h: 1e-3,
                                                             seed: seed + 3, perSlot: 3, noise: key)
            assertClose(analytic, numeric, tolerance: 2e-2, floor: 2e-2 * largestMagnitude(numeric),
                        "\(label) \(kind): every slot vs model finite differences (float)")
            withExtendedLifetime((x, t)) {}
        }
    }

    func testForwardMatchesReferenceAndGradientsMatchFiniteDifferences() throws {
        for kind in CodebookKind.allCases {
            let model = try makeModel(kind, seed: 5)
            let x = images(model, seed: 6)
            let xBuffer = makeBuffer(x)
            spreadCodebook(model, images: xBuffer)
            let xDouble = x.map(Double.init)
            let losses = model.forward(images: xBuffer.pointer, batch: batch, training: false)
            let reference = ReferenceVQVAE(model: model)
            let base = reference.forward(images: xDouble, batch: batch)
            let codes = indices(model)
            let latentCount = batch * model.latentCount * model.configuration.codeDimension
            print("VQVAE \(kind): codes \(codes), smallest assignment margin \(base.smallestMargin), losses \(losses)")
            XCTAssertEqual(codes, base.indices, "\(kind): nearest codes")
            XCTAssertGreaterThanOrEqual(Set(codes).count, 4, "\(kind): the batch should use several codes")
            assertClose(doubles(model.latent.pointer, count: latentCount), base.latent, tolerance: 1e-5, "VQVAE \(kind) z")
            assertClose(doubles(model.quantized.pointer, count: latentCount), base.quantized, tolerance: 1e-6, "VQVAE \(kind) q")
            assertClose(doubles(model.reconstruction.pointer, count: x.count), base.reconstruction, tolerance: 1e-5,
                        "VQVAE \(kind) x_hat")
            assertClose(losses.reconstruction, base.reconstructionLoss, tolerance: 1e-5, floor: 1e-3, "VQVAE \(kind) reconstruction loss")
            assertClose(losses.commitment, base.commitment, tolerance: 1e-5, floor: 1e-3, "VQVAE \(kind) commitment loss")
            assertClose(losses.total, base.total, tolerance: 1e-5, floor: 1e-3, "VQVAE \(kind) total loss")

            model.parameters.zeroGradients()
            model.backward(images: xBuffer.pointer)

            // (1) Every slot against the straight-through surrogate in double.
            let surrogate = surrogateFiniteDifferences(model, reference: reference, base: base, images: xDouble, seed: 7, label: "\(kind)")
            var (numeric, analytic, names) = (surrogate.numeric, surrogate.analytic, surrogate.names)
            let scale = largestMagnitude(numeric)
            let d = assertClose(analytic, numeric, tolerance: 1e-3, floor: 1e-3 * scale,
                                "VQVAE \(kind) every slot vs surrogate finite differences (double)")
            if d.index >= 0 { print("  worst entry: \(names[d.index]), largest |gradient| \(scale)") }

            // (2) Decoder slots against the model's own float loss.
            (numeric, analytic) = modelFiniteDifferences(
                model, images: xBuffer, slots: model.parameters.slots.filter { $0.name.hasPrefix("decoder/") }, h: 1e-3, seed: 8)
            assertClose(analytic, numeric, tolerance: 2e-2, floor: 1e-2 * largestMagnitude(numeric),
                        "VQVAE \(kind) decoder slots vs model finite differences (float)")
            withExtendedLifetime(xBuffer) {}
        }
    }

    /// Test 8b: with the last transposed convolution's weight zeroed, the reconstruction no longer
    /// depends on q, so (with the EMA codebook) the straight-through gradient of every encoder slot IS
    /// the derivative of the model's own total loss: a finite-difference check of the encoder path
    /// (pre_quant, residual block, convs) and of the commitment gradient through the real model.
    func testEncoderGradientsMatchModelFiniteDifferencesWhenTheReconstructionIgnoresQ() throws {
        let model = try makeModel(.ema, seed: 15)
        let last = model.parameters.slot(named: "decoder/up\(model.configuration.downsamplings - 1)/weight")!
        let values = model.parameters.values, gradients = model.parameters.gradients
        for i in 0..<last.count { values[last.offset + i] = 0 }
        let x = makeBuffer(images(model, seed: 16))
        model.forward(images: x.pointer, batch: batch, training: false)
        let codes = indices(model)
        model.parameters.zeroGradients()
        model.backward(images: x.pointer)
        for name in ["decoder/conv/weight", "decoder/up0/weight"] {
            let slot = model.parameters.slot(named: name)!
            XCTAssertTrue((0..<slot.count).allSatisfy { gradients[slot.offset + $0] == 0 }, "\(name) should get no gradient")
        }
        print("encoder check: codes \(codes)")
        let encoderSlots = model.parameters.slots.filter { $0.name.hasPrefix("encoder/") || $0.name.hasPrefix("pre_quant/") }
        let (numeric, analytic) = modelFiniteDifferences(model, images: x, slots: encoderSlots, h: 1e-3, seed: 17)
        assertClose(analytic, numeric, tolerance: 2e-2, floor: 1e-2 * largestMagnitude(numeric),
                    "VQVAE encoder slots vs model finite differences (reconstruction independent of q)")
        withExtendedLifetime(x) {}
    }

    /// `forward(training: true)` fills `[n_k | s_k]` from this batch; `training: false` leaves it alone.
    func testTrainingForwardCollectsBatchStatistics() throws {
        let model = try makeModel(.ema, seed: 21)
        let x = makeBuffer(images(model, seed: 22))
        model.forward(images: x.pointer, batch: batch, training: true)
        let c = model.configuration, d = c.codeDimension
        var expected = [Double](repeating: 0, count: c.codes * (1 + d))
        for (p, k) in indices(model).enumerated() {
            expected[k] += 1
            for j in 0..<d { expected[c.codes + k * d + j] += Double(model.latent[p * d + j]) }
        }
        assertClose(model.quantizer!.batchStatistics.array, expected, tolerance: 1e-6, "VQVAE batch statistics")
        let statistics = model.quantizer!.batchStatistics.array
        let other = makeBuffer(images(model, seed: 23))
        model.forward(images: other.pointer, batch: 1, training: false)
        XCTAssertEqual(model.quantizer!.batchStatistics.array, statistics, "training: false must not collect statistics")
        withExtendedLifetime((x, other)) {}
    }

    /// The same seed gives identical parameters and codebooks; another seed changes every tensor.
    /// Initialisation follows spec/model.md: U(-1/sqrt(fan_in), ..) with PyTorch's fan_in (the weight's
    /// second dimension times the kernel area), drawn in PyTorch's layout from stream (seed, index + 1);
    /// the EMA codebook is a standard normal with N = 0 and M = E.
    func testInitialisationIsDeterministicPerSeedAndFollowsTheSpec() throws {
        for kind in CodebookKind.allCases {
            let a = try makeModel(kind, seed: 42), b = try makeModel(kind, seed: 42), c = try makeModel(kind, seed: 43)
            XCTAssertEqual(a.parameters.values.array, b.parameters.values.array, "\(kind): same seed, same parameters")
            XCTAssertEqual(a.quantizer!.emaState.array, b.quantizer!.emaState.array, "\(kind): same seed, same EMA state")
            for (index, slot) in a.parameters.slots.enumerated() {
                let va = torchTensor(slot, in: a.parameters.values), vc = torchTensor(slot, in: c.parameters.values)
                let differing = zip(va, vc).filter { $0 != $1 }.count
                XCTAssertGreaterThan(differing, slot.count * 9 / 10, "\(kind) \(slot.name): seeds 42 and 43 should differ")
                var random = SplitMix64(seed: 42, stream: UInt64(index) + 1)
                if let bound = slot.uniformBound {
                    // Both conv and transposed conv: fan_in = shape[1] * kh * kw of the PyTorch-layout weight.
                    let weight = slot.name.hasSuffix("/bias") ? a.parameters.slot(named: slot.name.replacingOccurrences(of: "/bias", with: "/weight"))! : slot
                    let fanIn = weight.shape.dropFirst().reduce(1, *)
                    XCTAssertEqual(Double(bound), 1 / Double(fanIn).squareRoot(), accuracy: 1e-7, "\(slot.name) bound")
                    XCTAssertEqual(va, (0..<slot.count).map { _ in Double(random.uniform(-bound, bound)) }, "\(slot.name) draws")
                } else {
                    XCTAssertEqual(slot.name, "quantizer/codebook")
                    XCTAssertEqual(va, (0..<slot.count).map { _ in Double(random.normal()) }, "codebook draws")
                }
            }
            if kind == .ema {
                let size = a.configuration.codes * a.configuration.codeDimension
                var random = SplitMix64(seed: 42, stream: 0xC0DE_B00C)
                let e = doubles(a.quantizer!.codebook(parameters: a.parameters), count: size)
                XCTAssertEqual(e, (0..<size).map { _ in Double(random.normal()) }, "EMA codebook draws")
                XCTAssertEqual(doubles(a.quantizer!.emaCount, count: a.configuration.codes), [Double](repeating: 0, count: a.configuration.codes))
                XCTAssertEqual(doubles(a.quantizer!.emaSum, count: size), e, "M = E at the start")
                XCTAssertNotEqual(a.quantizer!.emaState.array, c.quantizer!.emaState.array, "seeds 42 and 43 should differ")
                XCTAssertNil(a.parameters.slot(named: "quantizer/codebook"))
            } else {
                XCTAssertEqual(a.quantizer!.emaState.count, 0)
            }
        }
    }

    /// Slot names, PyTorch shapes and order of spec/model.md, and the default model's size.
    func testSlotsFollowTheSpec() throws {
        let model = try makeModel(.grad, seed: 1)
        let expected: [(String, [Int])] = [
            ("encoder/down0/weight", [4, 3, 4, 4]), ("encoder/down0/bias", [4]),
            ("encoder/down1/weight", [8, 4, 4, 4]), ("encoder/down1/bias", [8]),
            ("encoder/conv/weight", [8, 8, 3, 3]), ("encoder/conv/bias", [8]),
            ("encoder/res0/conv3x3/weight", [4, 8, 3, 3]), ("encoder/res0/conv3x3/bias", [4]),
            ("encoder/res0/conv1x1/weight", [8, 4, 1, 1]), ("encoder/res0/conv1x1/bias", [8]),
            ("pre_quant/weight", [4, 8, 1, 1]), ("pre_quant/bias", [4]),
            ("quantizer/codebook", [16, 4]),
            ("decoder/conv/weight", [8, 4, 3, 3]), ("decoder/conv/bias", [8]),
            ("decoder/res0/conv3x3/weight", [4, 8, 3, 3]), ("decoder/res0/conv3x3/bias", [4]),
            ("decoder/res0/conv1x1/weight", [8, 4, 1, 1]), ("decoder/res0/conv1x1/bias", [8]),
            ("decoder/up0/weight", [8, 4, 4, 4]), ("decoder/up0/bias", [4]),
            ("decoder/up1/weight", [4, 3, 4, 4]), ("decoder/up1/bias", [3]),
        ]
        XCTAssertEqual(model.parameters.slots.map(\.name), expected.map(\.0))
        XCTAssertEqual(model.parameters.slots.map(\.shape), expected.map(\.1))
        var offset = 0
        for slot in model.parameters.slots {
            XCTAssertEqual(slot.offset, offset, slot.name)
            XCTAssertEqual(slot.count, slot.shape.reduce(1, *), slot.name)
            offset += slot.count
        }
        XCTAssertEqual(model.parameters.count, offset)

        // The default model on 32x32x3 (spec: "about 663k trained parameters plus the codebook"):
        // down0 3*64*16+64 = 3136, down1 64*128*16+128 = 131200, conv 128*128*9+128 = 147584,
        // 2 x res (128*32*9+32 + 32*128+128 = 41120) = 82240, pre_quant 128*64+64 = 8256,
        // decoder/conv 64*128*9+128 = 73856, 2 x res = 82240, up0 128*64*16+64 = 131136, up1 64*3*16+3 = 3075
        // total 662723.
        let standard = try VQVAE(configuration: ModelConfiguration(height: 32, width: 32, channels: 3), maxBatch: 1)
        XCTAssertEqual(standard.parameters.count, 662_723)
    }

    /// `exportToTorch` and `importFromTorch` are inverse permutations, map the documented indices,
    /// and a model rebuilt from exported tensors computes the same loss.
    func testTorchExportImportRoundTrip() throws {
        for kind in CodebookKind.allCases {
            let model = try makeModel(kind, seed: 31)
            let store = model.parameters
            for slot in store.slots {
                let torch = FloatBuffer(count: slot.count), back = FloatBuffer(count: slot.count)
                slot.exportToTorch(store.values.pointer + slot.offset, into: torch.pointer)
                slot.importFromTorch(torch.pointer, into: back.pointer)
                XCTAssertEqual(back.array, Array(UnsafeBufferPointer(start: store.values.pointer + slot.offset, count: slot.count)),
                               "\(slot.name): import(export(x)) != x")
                let random = makeBuffer(randomFloats(slot.count, seed: 32))
                slot.importFromTorch(random.pointer, into: back.pointer)
                slot.exportToTorch(back.pointer, into: torch.pointer)
                XCTAssertEqual(torch.array, random.array, "\(slot.name): export(import(t)) != t")
                XCTAssertEqual(Set(torch.array).count, Set(random.array).count)
                // Documented index maps.
                let ours = store.values.pointer + slot.offset
                slot.exportToTorch(ours, into: torch.pointer)
                switch slot.layout {
                case .plain:
                    XCTAssertEqual(torch.array, Array(UnsafeBufferPointer(start: ours, count: slot.count)))
                case let .convolution(o, i, kh, kw):
                    XCTAssertEqual(slot.shape, [o, i, kh, kw])
                    for a in 0..<o { for b in 0..<i { for y in 0..<kh { for x in 0..<kw {
                        XCTAssertEqual(torch[((a * i + b) * kh + y) * kw + x], ours[((a * kh + y) * kw + x) * i + b])
                    } } } }
                case let .transposedConvolution(i, o, kh, kw):
                    XCTAssertEqual(slot.shape, [i, o, kh, kw])
                    for a in 0..<i { for b in 0..<o { for y in 0..<kh { for x in 0..<kw {
                        XCTAssertEqual(torch[((a * o + b) * kh + y) * kw + x], ours[((a * kh + y) * kw + x) * o + b])
                    } } } }
                }
            }
            // Whole model: export every tensor, import into a model with other weights, same loss.
            let other = try makeModel(kind, seed: 99)
            for slot in store.slots {
                let torch = FloatBuffer(count: slot.count)
                slot.exportToTorch(store.values.pointer + slot.offset, into: torch.pointer)
                let target = other.parameters.slot(named: slot.name)!
                target.importFromTorch(torch.pointer, into: other.parameters.values.pointer + target.offset)
                withExtendedLifetime(torch) {}
            }
            other.quantizer!.emaState.copy(from: model.quantizer!.emaState)
            XCTAssertEqual(other.parameters.values.array, store.values.array)
            let x = makeBuffer(images(model, seed: 33))
            let l1 = model.forward(images: x.pointer, batch: batch, training: false)
            let l2 = other.forward(images: x.pointer, batch: batch, training: false)
            XCTAssertEqual(l1, l2, "\(kind): same tensors, same losses")
            withExtendedLifetime(x) {}
        }
    }

    /// `--model ae` and `--model vae`: every parameter slot's gradient against central differences
    /// of the model's own float loss (with the VAE's noise held fixed by its key, so the sampled
    /// latent is a smooth function of the parameters). The VAE's KL term is checked against a direct
    /// computation, and without a noise key the VAE decodes its mean.
    func testAutoencoderAndVAEGradientsMatchFiniteDifferences() throws {
        for kind in [ModelKind.ae, .vae] {
            var c = smallConfiguration(.ema)
            c.model = kind
            c.klWeight = 0.5  // large enough that the KL term's gradient is visible beside the reconstruction's
            let model = try VQVAE(configuration: c, maxBatch: batch)
            model.initialize(seed: 51)
            XCTAssertNil(model.quantizer, "\(kind) has no quantizer")
            XCTAssertNil(model.parameters.slot(named: "quantizer/codebook"))
            XCTAssertEqual(model.parameters.slot(named: "pre_quant/weight")!.shape, [c.latentChannels, c.hidden, 1, 1])
            XCTAssertEqual(c.latentChannels, kind == .vae ? 2 * c.codeDimension : c.codeDimension)
            let x = makeBuffer(images(model, seed: 52))
            let key: NoiseKey? = kind == .vae ? NoiseKey(seed: 9, step: 3, firstImage: 4) : nil
            let losses = model.forward(images: x.pointer, batch: batch, training: true, noise: key)
            if kind == .vae {
                // KL of the moments, summed over the latent, divided by N*H*W*C.
                let positions = batch * model.latentCount, d = c.codeDimension
                var kl: Double = 0
                for p in 0..<positions {
                    for j in 0..<d {
                        let mu = Double(model.latent[p * 2 * d + j]), lv = Double(model.latent[p * 2 * d + d + j])
                        kl += 0.5 * (mu * mu + exp(lv) - 1 - lv)
                    }
                }
                kl /= Double(batch * model.imageCount)
                XCTAssertEqual(losses.kl, kl, accuracy: 1e-6 * max(1, kl), "VAE KL")
                XCTAssertEqual(losses.total, losses.reconstruction + 0.5 * kl, accuracy: 1e-6, "VAE total")
                XCTAssertGreaterThan(losses.kl, 0)
                // The same key draws the same noise; another key other noise; no key decodes the mean.
                let again = model.forward(images: x.pointer, batch: batch, training: true, noise: key)
                XCTAssertEqual(again, losses, "VAE: the same noise key gives the same loss")
                let other = model.forward(images: x.pointer, batch: batch, training: true,
                                          noise: NoiseKey(seed: 9, step: 4, firstImage: 4))
                XCTAssertNotEqual(other.reconstruction, losses.reconstruction, "VAE: another step draws other noise")
                model.forward(images: x.pointer, batch: batch, training: false)
                for p in 0..<positions {
                    for j in 0..<d { XCTAssertEqual(model.quantized[p * d + j], model.latent[p * 2 * d + j]) }
                }
                // Image i of a share that starts at global image 4 draws what image 4 + i draws in a
                // share that starts at 0: the noise does not depend on how the batch is split.
                let one = try VQVAE(configuration: c, maxBatch: 1)
                one.parameters.values.copy(from: model.parameters.values)
                model.forward(images: x.pointer, batch: batch, training: true, noise: NoiseKey(seed: 9, step: 3, firstImage: 0))
                let secondImage = Array(model.quantized.array[(model.latentCount * d)..<(2 * model.latentCount * d)])
                one.forward(images: x.pointer + model.imageCount, batch: 1, training: true,
                            noise: NoiseKey(seed: 9, step: 3, firstImage: 1))
                XCTAssertEqual(Array(one.quantized.array[0..<(model.latentCount * d)]), secondImage)
            } else {
                XCTAssertEqual(losses.total, losses.reconstruction)
                XCTAssertEqual(losses.commitment, 0)
            }
            model.forward(images: x.pointer, batch: batch, training: true, noise: key)
            model.parameters.zeroGradients()
            model.backward(images: x.pointer)
            for slot in model.parameters.slots {
                let g = torchTensor(slot, in: model.parameters.gradients)
                XCTAssertTrue(g.contains { $0 != 0 }, "\(kind) \(slot.name): gradient is all zero")
            }
            let (numeric, analytic) = modelFiniteDifferences(model, images: x, slots: model.parameters.slots, h: 1e-3,
                                                             seed: 53, perSlot: 3, noise: key)
            assertClose(analytic, numeric, tolerance: 2e-2, floor: 1e-2 * largestMagnitude(numeric),
                        "\(kind) every slot vs model finite differences (float)")
            withExtendedLifetime(x) {}
        }
    }

    /// `--residual`, with 0, 1 and 3 detail layers (5 channels: Winograd's tails), on a VQ-VAE
    /// trained against targets other than its input: the forward pass against the double reference
    /// (`x_hat = x + dec + detail([x | dec])`), every slot's gradient against the straight-through
    /// surrogate's central differences in double, and the decoder and detail slots against the
    /// model's own float loss. Then the autoencoder and the VAE with detail layers, every slot
    /// against the model's float loss.
    func testResidualModelsMatchReferenceAndFiniteDifferences() throws {
        for detailLayers in [0, 1, 3] {
            var c = smallConfiguration(.ema)
            c.residual = true
            c.detailLayers = detailLayers
            c.detailChannels = 5
            let model = try VQVAE(configuration: c, maxBatch: batch)
            model.initialize(seed: 61)
            XCTAssertEqual(model.parameters.slots.filter { $0.name.hasPrefix("detail/") }.count, 2 * detailLayers)
            if detailLayers > 0 {
                XCTAssertEqual(model.parameters.slot(named: "detail/conv0/weight")!.shape, [detailLayers == 1 ? 3 : 5, 6, 3, 3])
                XCTAssertEqual(model.parameters.slot(named: "detail/conv\(detailLayers - 1)/weight")!.shape, [3, detailLayers == 1 ? 6 : 5, 3, 3])
            }
            let x = images(model, seed: 62)
            let t = randomFloats(x.count, seed: 63, low: -0.5, high: 0.5)
            let xBuffer = makeBuffer(x), tBuffer = makeBuffer(t)
            spreadCodebook(model, images: xBuffer)
            let losses = model.forward(images: xBuffer.pointer, targets: tBuffer.pointer, batch: batch, training: false)
            let reference = ReferenceVQVAE(model: model)
            let xDouble = x.map(Double.init), tDouble = t.map(Double.init)
            let base = reference.forward(images: xDouble, targets: tDouble, batch: batch)
            let codes = indices(model)
            XCTAssertEqual(codes, base.indices, "residual \(detailLayers): nearest codes")
            XCTAssertGreaterThanOrEqual(Set(codes).count, 4, "residual \(detailLayers): the batch should use several codes")
            assertClose(doubles(model.reconstruction.pointer, count: x.count), base.reconstruction, tolerance: 1e-5,
                        "residual \(detailLayers) x_hat")
            assertClose(losses.total, base.total, tolerance: 1e-5, floor: 1e-3, "residual \(detailLayers) total loss")

            model.parameters.zeroGradients()
            model.backward(images: xBuffer.pointer, targets: tBuffer.pointer)
            var (numeric, analytic, _) = surrogateFiniteDifferences(model, reference: reference, base: base, images: xDouble,
                                                                    targets: tDouble, seed: 64, label: "residual \(detailLayers)")
            assertClose(analytic, numeric, tolerance: 1e-3, floor: 1e-3 * largestMagnitude(numeric),
                        "residual \(detailLayers): every slot vs surrogate finite differences (double)")
            (numeric, analytic) = modelFiniteDifferences(
                model, images: xBuffer, targets: tBuffer,
                slots: model.parameters.slots.filter { $0.name.hasPrefix("decoder/") || $0.name.hasPrefix("detail/") }, h: 1e-3, seed: 65)
            assertClose(analytic, numeric, tolerance: 2e-2, floor: 1e-2 * largestMagnitude(numeric),
                        "residual \(detailLayers): decoder and detail slots vs model finite differences (float)")
            withExtendedLifetime((xBuffer, tBuffer)) {}
        }
        try assertAutoencoderAndVAEMatchModelFiniteDifferences(seed: 66, label: "residual") { c in
            c.residual = true
            c.detailLayers = 2
            c.detailChannels = 17
        }
    }

    /// A model whose trained term is not the plain mean squared error, on images `x` and targets
    /// `t`: the total loss against the double reference, the reported `reconstruction` still the
    /// mean squared error, every slot's gradient against the surrogate's finite differences.
    /// Returns the forward pass's losses.
    @discardableResult
    func assertTrainedTermMatchesReference(_ model: VQVAE, images x: [Float], targets t: [Float], seed: UInt64,
                                           label: String) -> Losses {
        let xBuffer = makeBuffer(x), tBuffer = makeBuffer(t)
        defer { withExtendedLifetime((xBuffer, tBuffer)) {} }
        spreadCodebook(model, images: xBuffer)
        let losses = model.forward(images: xBuffer.pointer, targets: tBuffer.pointer, batch: batch, training: false)
        let reference = ReferenceVQVAE(model: model)
        let xDouble = x.map(Double.init), tDouble = t.map(Double.init)
        let base = reference.forward(images: xDouble, targets: tDouble, batch: batch)
        XCTAssertEqual(indices(model), base.indices, label)
        assertClose(losses.total, base.total, tolerance: 1e-5, floor: 1e-3, "\(label): total loss")
        assertClose(losses.reconstruction, base.reconstructionLoss, tolerance: 1e-5, floor: 1e-6, "\(label): the reported mean squared error")
        model.parameters.zeroGradients()
        model.backward(images: xBuffer.pointer, targets: tBuffer.pointer)
        let (numeric, analytic, _) = surrogateFiniteDifferences(model, reference: reference, base: base, images: xDouble,
                                                                targets: tDouble, seed: seed, label: label)
        assertClose(analytic, numeric, tolerance: 1e-3, floor: 1e-3 * largestMagnitude(numeric),
                    "\(label): every slot vs surrogate finite differences (double)")
        return losses
    }

    /// `--loss charbonnier` on a residual VQ-VAE with detail layers trained against other targets:
    /// the total loss against the double reference's `mean(sqrt(d^2 + eps^2))` (+ the commitment
    /// term), `reconstruction` still the mean squared error, every slot against the surrogate's
    /// finite differences; the autoencoder and the VAE against their own float loss. A default
    /// configuration trains the mean squared error and older configurations decode to it.
    func testCharbonnierLossMatchesReferenceAndFiniteDifferences() throws {
        var c = smallConfiguration(.ema)
        c.residual = true
        c.detailLayers = 2
        c.detailChannels = 5
        c.loss = .charbonnier
        let model = try VQVAE(configuration: c, maxBatch: batch)
        model.initialize(seed: 151)
        let x = images(model, seed: 152)
        // Targets near the inputs, so that some differences are within a few eps of 0, where the
        // loss bends.
        let t = zip(x, randomFloats(x.count, seed: 153, low: -0.01, high: 0.01)).map { $0 + $1 }
        let losses = assertTrainedTermMatchesReference(model, images: x, targets: t, seed: 154, label: "charbonnier")
        XCTAssertGreaterThan(losses.total - c.commitment * losses.commitment, losses.reconstruction.squareRoot() * 0.5,
                             "the trained term is an L1-like mean, not the squared error")
        try assertAutoencoderAndVAEMatchModelFiniteDifferences(seed: 155, label: "charbonnier") { c in
            c.residual = true
            c.detailLayers = 1
            c.loss = .charbonnier
        }
        XCTAssertEqual(ModelConfiguration(height: 8, width: 8, channels: 3).loss, .mse)
        let old = try JSONDecoder().decode(ModelConfiguration.self, from: Data("""
            {"height": 8, "width": 8, "channels": 3, "hidden": 8, "residualHidden": 4, "residualBlocks": 1, "downsamplings": 2,
             "codeDimension": 4, "codes": 16, "commitment": 0.25, "decay": 0.99, "emaEpsilon": 1e-5, "codebook": "ema"}
            """.utf8))
        XCTAssertEqual(old.loss, .mse)
        XCTAssertEqual(old.codebookDimension, 0)
    }

    /// A residual VQ-VAE with detail layers trained under `weighting`, with each loss, on two
    /// images damaged by different amounts (RMS about 0.05 and 0.2): the total loss against the
    /// double reference's, `reconstruction` still the plain mean squared error, every slot against
    /// the surrogate's finite differences; the autoencoder and the VAE against their own float
    /// loss. `check` sees each loss's configuration and losses.
    func assertLossWeightingMatchesReferenceAndFiniteDifferences(_ weighting: LossWeighting,
                                                                 check: (ModelConfiguration, Losses) -> Void) throws {
        for loss in ReconstructionLoss.allCases {
            var c = smallConfiguration(.ema)
            c.residual = true
            c.detailLayers = 2
            c.detailChannels = 5
            c.loss = loss
            c.lossWeighting = weighting
            let model = try VQVAE(configuration: c, maxBatch: batch)
            model.initialize(seed: 161)
            let t = images(model, seed: 162)
            let perImage = model.imageCount
            let amplitudes = [0.05, 0.2].map { Float($0 * 3.0.squareRoot()) }  // uniform on [-a, a]: RMS a / sqrt(3)
            let noise = randomFloats(t.count, seed: 163, low: -1, high: 1)
            let x = t.indices.map { t[$0] + amplitudes[$0 / perImage] * noise[$0] }
            let label = "\(loss) \(weighting) weighting"
            check(c, assertTrainedTermMatchesReference(model, images: x, targets: t, seed: 164, label: label))
            try assertAutoencoderAndVAEMatchModelFiniteDifferences(seed: 165, label: label) { c in
                c.residual = true
                c.detailLayers = 1
                c.loss = loss
                c.lossWeighting = weighting
            }
        }
    }

    /// `--loss-weight damage` (weights about 2 and 0.5 for the two images) against the reference
    /// and finite differences, with both losses; a default configuration, and an older one without
    /// the key, weigh images alike.
    func testDamageLossWeightingMatchesReferenceAndFiniteDifferences() throws {
        try assertLossWeightingMatchesReferenceAndFiniteDifferences(.damage) { c, losses in
            if c.loss == .mse {
                let fit = losses.total - c.commitment * losses.commitment
                XCTAssertGreaterThan(abs(fit - losses.reconstruction), 0.05 * losses.reconstruction, "the weights change the trained term")
            }
        }
        XCTAssertEqual(LossWeighting.damageWeight(rms: 0.05), 2, accuracy: 1e-12)
        XCTAssertEqual(LossWeighting.damageWeight(rms: 0.2), 0.5, accuracy: 1e-12)
        XCTAssertEqual(LossWeighting.damageWeight(rms: 0), 10, "an undamaged image weighs 0.1 / 0.01")
        XCTAssertEqual(ModelConfiguration(height: 8, width: 8, channels: 3).lossWeighting, .uniform)
        let old = try JSONDecoder().decode(ModelConfiguration.self, from: Data("""
            {"height": 8, "width": 8, "channels": 3, "hidden": 8, "residualHidden": 4, "residualBlocks": 1, "downsamplings": 2,
             "codeDimension": 4, "codes": 16, "commitment": 0.25, "decay": 0.99, "emaEpsilon": 1e-5, "codebook": "ema"}
            """.utf8))
        XCTAssertEqual(old.lossWeighting, .uniform)
    }

    /// `--loss-weight log` (the term `1e-4 log(1 + t / 1e-4)`, whose weights are its derivative,
    /// not constants) against the reference and finite differences, with both losses; the term's
    /// values and the configuration's round trip.
    func testLogLossWeightingMatchesReferenceAndFiniteDifferences() throws {
        try assertLossWeightingMatchesReferenceAndFiniteDifferences(.log) { c, losses in
            let fit = losses.total - c.commitment * losses.commitment
            XCTAssertLessThan(fit, 0.5 * losses.reconstruction, "\(c.loss): the log compresses the large errors")
        }
        XCTAssertEqual(LossWeighting.logTerm(0), 0)
        XCTAssertEqual(LossWeighting.logTerm(1e-4), 1e-4 * log(2.0), accuracy: 1e-15)
        XCTAssertEqual(LossWeighting.logWeight(1e-4), 0.5, accuracy: 1e-15)
        XCTAssertEqual(LossWeighting.logWeight(0), 1, "small errors weigh as in the plain mean")
        let decoded = try JSONDecoder().decode(ModelConfiguration.self, from: JSONEncoder().encode({ () -> ModelConfiguration in
            var c = ModelConfiguration(height: 8, width: 8, channels: 3)
            c.lossWeighting = .log
            return c
        }()))
        XCTAssertEqual(decoded.lossWeighting, .log)
    }

    /// `--upsample resize`: the decoder's nearest-neighbour upsampling and 3x3 convolutions against
    /// the reference (every slot by the surrogate's central differences, in double), the
    /// autoencoder and the VAE against their own finite differences, with skips too; the weights
    /// are Conv2d's; configurations without the key are transposed.
    func testResizeUpsamplingMatchesReferenceAndFiniteDifferences() throws {
        var c = smallConfiguration(.ema)
        c.upsampling = .resize
        let model = try VQVAE(configuration: c, maxBatch: batch)
        XCTAssertEqual(model.parameters.slots.first { $0.name == "decoder/up0/weight" }?.shape, [c.hidden / 2, c.hidden, 3, 3])
        model.initialize(seed: 161)
        let x = images(model, seed: 162), xBuffer = makeBuffer(x)
        spreadCodebook(model, images: xBuffer)
        let losses = model.forward(images: xBuffer.pointer, batch: batch, training: false)
        let reference = ReferenceVQVAE(model: model)
        let xDouble = x.map(Double.init)
        let base = reference.forward(images: xDouble, batch: batch)
        XCTAssertEqual(indices(model), base.indices)
        assertClose(losses.total, base.total, tolerance: 1e-5, floor: 1e-3, "resize total loss")
        assertClose(model.reconstruction.array, base.reconstruction, tolerance: 1e-4, floor: 1e-3, "resize reconstruction")
        model.parameters.zeroGradients()
        model.backward(images: xBuffer.pointer)
        let (numeric, analytic, _) = surrogateFiniteDifferences(model, reference: reference, base: base, images: xDouble,
                                                                seed: 163, label: "resize")
        assertClose(analytic, numeric, tolerance: 1e-3, floor: 1e-3 * largestMagnitude(numeric),
                    "resize: every slot vs surrogate finite differences (double)")
        withExtendedLifetime(xBuffer) {}
        try assertAutoencoderAndVAEMatchModelFiniteDifferences(seed: 164, label: "resize") { c in
            c.upsampling = .resize
            c.skips = true
        }
        XCTAssertEqual(ModelConfiguration(height: 8, width: 8, channels: 3).upsampling, .transposed)
        let old = try JSONDecoder().decode(ModelConfiguration.self, from: Data("""
            {"height": 8, "width": 8, "channels": 3, "hidden": 8, "residualHidden": 4, "residualBlocks": 1, "downsamplings": 2,
             "codeDimension": 4, "codes": 16, "commitment": 0.25, "decay": 0.99, "emaEpsilon": 1e-5, "codebook": "ema"}
            """.utf8))
        XCTAssertEqual(old.upsampling, .transposed)
        var resized = c
        resized.upsampling = .resize
        XCTAssertEqual(try JSONDecoder().decode(ModelConfiguration.self, from: JSONEncoder().encode(resized)), resized)
    }

    /// A residual model whose last decoder and detail layers are zero returns its input bit for
    /// bit: undamaged pixels pass through unchanged. Each image's output does not depend on the
    /// other images of the batch (so not on how a global batch is split over ranks).
    func testResidualModelPassesItsInputThroughAndTreatsImagesIndependently() throws {
        var c = smallConfiguration(.ema)
        c.residual = true
        c.detailLayers = 2
        let model = try VQVAE(configuration: c, maxBatch: batch)
        model.initialize(seed: 71)
        let x = makeBuffer(images(model, seed: 72))
        model.forward(images: x.pointer, batch: batch, training: false)
        XCTAssertNotEqual(model.reconstruction.array, x.array, "a fresh model corrects something")
        let one = try VQVAE(configuration: c, maxBatch: 1)
        one.copyState(from: model)
        let both = model.reconstruction.array
        for i in 0..<batch {
            one.forward(images: x.pointer + i * model.imageCount, batch: 1, training: false)
            assertClose(doubles(one.reconstruction.pointer, count: model.imageCount),
                        both[(i * model.imageCount)..<((i + 1) * model.imageCount)].map(Double.init), tolerance: 1e-6,
                        "image \(i) alone vs in the batch")
        }
        for name in ["decoder/up1/weight", "decoder/up1/bias", "detail/conv1/weight", "detail/conv1/bias"] {
            let slot = model.parameters.slot(named: name)!
            (model.parameters.values.pointer + slot.offset).update(repeating: 0, count: slot.count)
        }
        model.forward(images: x.pointer, batch: batch, training: false)
        XCTAssertEqual(model.reconstruction.array, x.array, "zero corrections give the input back")
        withExtendedLifetime(x) {}
    }

    /// U-Net skips: the forward pass equals the double-precision reference with each image's own
    /// skip weight, and every gradient equals the reference's (surrogate) finite differences (the
    /// float model's own differences are checked for the autoencoder and VAE below: through the
    /// quantizer they are not the straight-through gradient). Training draws each image's weight from the configuration's range, keyed
    /// by the image's place in the global batch, so splitting the batch does not change them.
    func testSkipModelsMatchReferenceAndFiniteDifferences() throws {
        for (residual, detailLayers) in [(false, 0), (true, 1)] {
            var c = smallConfiguration(.ema)
            c.skips = true
            c.skipWeightLow = 0.25
            c.skipWeightHigh = 1
            c.residual = residual
            c.detailLayers = detailLayers
            c.detailChannels = 5
            let name = "skips, residual \(residual), detail \(detailLayers)"
            let model = try VQVAE(configuration: c, maxBatch: batch)
            model.initialize(seed: 81)
            XCTAssertEqual(model.fidelity, 1, "evaluation starts at the top of the range")
            let x = images(model, seed: 82)
            let t = randomFloats(x.count, seed: 83, low: -0.5, high: 0.5)
            let xBuffer = makeBuffer(x), tBuffer = makeBuffer(t)
            spreadCodebook(model, images: xBuffer)
            let key = NoiseKey(seed: 5, step: 7, firstImage: 10)
            let losses = model.forward(images: xBuffer.pointer, targets: tBuffer.pointer, batch: batch, training: true, noise: key)
            let weights = (0..<batch).map { Double(model.skipWeights[$0]) }
            XCTAssertTrue(weights.allSatisfy { $0 >= 0.25 && $0 <= 1 }, "\(name): weights \(weights) in the range")
            XCTAssertNotEqual(weights[0], weights[1], "\(name): each image draws its own weight")
            let reference = ReferenceVQVAE(model: model)
            let xDouble = x.map(Double.init), tDouble = t.map(Double.init)
            let base = reference.forward(images: xDouble, targets: tDouble, batch: batch, skipWeights: weights)
            let codes = indices(model)
            XCTAssertEqual(codes, base.indices, "\(name): nearest codes")
            assertClose(doubles(model.reconstruction.pointer, count: x.count), base.reconstruction, tolerance: 1e-5, "\(name): x_hat")
            assertClose(losses.total, base.total, tolerance: 1e-5, floor: 1e-3, "\(name): total loss")
            let plain = reference.forward(images: xDouble, targets: tDouble, batch: batch, skipWeights: [0, 0])
            XCTAssertGreaterThan(zip(plain.reconstruction, base.reconstruction).map { abs($0 - $1) }.max()!, 1e-3,
                                 "\(name): the skips change the output")

            model.parameters.zeroGradients()
            model.backward(images: xBuffer.pointer, targets: tBuffer.pointer)
            let (numeric, analytic, _) = surrogateFiniteDifferences(model, reference: reference, base: base, images: xDouble,
                                                                    targets: tDouble, skipWeights: weights, seed: 84, label: name)
            assertClose(analytic, numeric, tolerance: 1e-3, floor: 1e-3 * largestMagnitude(numeric),
                        "\(name): every slot vs surrogate finite differences (double)")
            // Image 11 of the global batch draws the same weight alone as second in a batch of two.
            let one = try VQVAE(configuration: c, maxBatch: 1)
            one.copyState(from: model)
            one.forward(images: xBuffer.pointer + model.imageCount, targets: tBuffer.pointer + model.imageCount, batch: 1,
                        training: true, noise: NoiseKey(seed: 5, step: 7, firstImage: 11))
            XCTAssertEqual(Double(one.skipWeights[0]), weights[1], "\(name): the weight follows the image, not the split")
            withExtendedLifetime((xBuffer, tBuffer)) {}
        }
    }

    /// A skip model at fidelity 0 is the same network without skips; an autoencoder and a VAE with
    /// skips differentiate correctly too.
    func testSkipModelAtFidelityZeroIsThePlainModelAndOtherKindsDifferentiate() throws {
        var c = smallConfiguration(.ema)
        c.skips = true
        let model = try VQVAE(configuration: c, maxBatch: batch)
        model.initialize(seed: 91)
        var plainConfiguration = c
        plainConfiguration.skips = false
        let plain = try VQVAE(configuration: plainConfiguration, maxBatch: batch)
        plain.copyState(from: model)
        let x = makeBuffer(images(model, seed: 92))
        model.fidelity = 0
        model.forward(images: x.pointer, batch: batch, training: false)
        plain.forward(images: x.pointer, batch: batch, training: false)
        XCTAssertEqual(model.reconstruction.array, plain.reconstruction.array, "fidelity 0 ignores the skips")
        model.fidelity = 1
        model.forward(images: x.pointer, batch: batch, training: false)
        XCTAssertNotEqual(model.reconstruction.array, plain.reconstruction.array, "fidelity 1 uses them")

        try assertAutoencoderAndVAEMatchModelFiniteDifferences(seed: 93, label: "skips") { c in
            c.skips = true
            c.residual = c.model == .ae
        }
        withExtendedLifetime(x) {}
    }

    /// Mask-aware models: the forward pass against the double-precision reference (the mask read as
    /// a channel, missing pixels blanked, known pixels pasted back, one pixel half-missing), every
    /// slot's gradient against finite differences (VQ-VAE plain, and residual with detail layers and
    /// skips; the autoencoder with the float model's own), and the two promises: known pixels come
    /// back bit for bit, and what the damaged image holds under the mask does not matter.
    func testMaskChannelModelsMatchReferenceAndKeepKnownPixels() throws {
        for (residual, detailLayers, skips, fill) in [(false, 0, false, HoleFill.zero), (true, 1, true, .zero), (true, 1, true, .smooth), (true, 0, true, .plate)] {
            var c = smallConfiguration(.ema)
            c.maskChannel = true
            c.holeFill = fill
            c.residual = residual
            c.detailLayers = detailLayers
            c.detailChannels = 5
            c.skips = skips
            let name = "mask channel, residual \(residual), detail \(detailLayers), skips \(skips), fill \(fill)"
            let model = try VQVAE(configuration: c, maxBatch: batch)
            model.initialize(seed: 101)
            XCTAssertEqual(model.parameters.slot(named: "encoder/down0/weight")?.count, 8 / 2 * 4 * 4 * 4, "\(name): down0 reads C + 1 channels")
            let x = images(model, seed: 102)
            let t = randomFloats(x.count, seed: 103, low: -0.5, high: 0.5)
            let pixels = c.height * c.width
            var m = [Float](repeating: 0, count: batch * pixels)
            for q in m.indices where (q / 3 + q / 17) % 2 == 1 { m[q] = 1 }
            m[5] = 0.5
            let xBuffer = makeBuffer(x), tBuffer = makeBuffer(t), mBuffer = makeBuffer(m)
            spreadCodebook(model, images: xBuffer, masks: mBuffer)
            let losses = model.forward(images: xBuffer.pointer, masks: mBuffer.pointer, targets: tBuffer.pointer, batch: batch, training: false)
            let output = model.reconstruction.array
            for q in 0..<(batch * pixels) where m[q] == 0 {
                for k in 0..<c.channels {
                    XCTAssertEqual(output[q * c.channels + k].bitPattern, x[q * c.channels + k].bitPattern, "\(name): known pixel \(q) is the input's")
                }
            }
            let reference = ReferenceVQVAE(model: model)
            let xDouble = x.map(Double.init), tDouble = t.map(Double.init), mDouble = m.map(Double.init)
            let base = reference.forward(images: xDouble, masks: mDouble, targets: tDouble, batch: batch)
            XCTAssertEqual(indices(model), base.indices, "\(name): nearest codes")
            assertClose(output.map(Double.init), base.reconstruction, tolerance: 1e-5, "\(name): x_hat")
            assertClose(losses.total, base.total, tolerance: 1e-5, floor: 1e-3, "\(name): total loss")

            // Whatever the damaged image holds under the mask, the output is the same.
            var scribbled = x
            for q in 0..<(batch * pixels) where m[q] == 1 { for k in 0..<c.channels { scribbled[q * c.channels + k] = 0.5 - scribbled[q * c.channels + k] } }
            let sBuffer = makeBuffer(scribbled)
            model.forward(images: sBuffer.pointer, masks: mBuffer.pointer, batch: batch, training: false)
            XCTAssertEqual(model.reconstruction.array, output, "\(name): missing pixels' values are not read")

            model.forward(images: xBuffer.pointer, masks: mBuffer.pointer, targets: tBuffer.pointer, batch: batch, training: false)
            model.parameters.zeroGradients()
            model.backward(images: xBuffer.pointer, targets: tBuffer.pointer)
            let (numeric, analytic, _) = surrogateFiniteDifferences(model, reference: reference, base: base, images: xDouble,
                                                                    masks: mDouble, targets: tDouble, seed: 104, label: name)
            assertClose(analytic, numeric, tolerance: 1e-3, floor: 1e-3 * largestMagnitude(numeric),
                        "\(name): every slot vs surrogate finite differences (double)")
            withExtendedLifetime((xBuffer, tBuffer, mBuffer, sBuffer)) {}
        }

        var c = smallConfiguration(.ema)
        c.model = .ae
        c.maskChannel = true
        c.residual = true
        let model = try VQVAE(configuration: c, maxBatch: batch)
        model.initialize(seed: 105)
        let x = makeBuffer(images(model, seed: 106)), t = makeBuffer(images(model, seed: 107))
        let m = makeBuffer((0..<(batch * c.height * c.width)).map { Float(($0 / 5) % 2) })
        model.forward(images: x.pointer, masks: m.pointer, targets: t.pointer, batch: batch, training: true)
        model.parameters.zeroGradients()
        model.backward(images: x.pointer, targets: t.pointer)
        let (numeric, analytic) = modelFiniteDifferences(model, images: x, masks: m, targets: t, slots: model.parameters.slots, h: 1e-3,
                                                         seed: 108, perSlot: 3)
        assertClose(analytic, numeric, tolerance: 2e-2, floor: 2e-2 * largestMagnitude(numeric),
                    "mask channel ae: every slot vs model finite differences (float)")
        // Without a mask nothing is missing: the output is the input.
        model.forward(images: x.pointer, batch: batch, training: false)
        XCTAssertEqual(model.reconstruction.array, x.array, "no mask: every pixel is known")
        withExtendedLifetime((x, t, m)) {}

        // A fill without a mask to fill is refused; the configuration keeps its fill.
        var unmasked = smallConfiguration(.ema)
        unmasked.holeFill = .smooth
        XCTAssertThrowsError(try unmasked.validate()) { XCTAssertTrue("\($0)".contains("--hole-fill smooth") && "\($0)".contains("--mask-channel"), "\($0)") }
        c.holeFill = .smooth
        let decoded = try JSONDecoder().decode(ModelConfiguration.self, from: try JSONEncoder().encode(c))
        XCTAssertEqual(decoded, c, "hole fill round trip")
        c.holeFill = .plate
        XCTAssertEqual(try JSONDecoder().decode(ModelConfiguration.self, from: try JSONEncoder().encode(c)), c, "plate fill round trip")
        var older = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(c)) as! [String: Any]
        older.removeValue(forKey: "holeFill")
        XCTAssertEqual(try JSONDecoder().decode(ModelConfiguration.self, from: try JSONSerialization.data(withJSONObject: older)).holeFill, .zero,
                       "older configurations have no fill")
    }

    /// The rotation trick (`--rotation-trick`), EMA and gradient codebooks: the forward pass is the
    /// plain model's, and every slot's gradient matches finite differences of the reference's
    /// surrogate in which the decoder reads `z` rotated and scaled onto its code by the anchor's
    /// (constant) rotation; the encoder's gradients differ from the straight-through ones.
    func testRotationTrickMatchesTheRotatedSurrogate() throws {
        for kind in [CodebookKind.ema, .grad] {
            var c = smallConfiguration(kind)
            c.rotationTrick = true
            let model = try VQVAE(configuration: c, maxBatch: batch)
            model.initialize(seed: 121)
            var straightConfiguration = c
            straightConfiguration.rotationTrick = false
            let straight = try VQVAE(configuration: straightConfiguration, maxBatch: batch)
            let x = images(model, seed: 122)
            let xBuffer = makeBuffer(x)
            spreadCodebook(model, images: xBuffer)
            straight.copyState(from: model)
            let losses = model.forward(images: xBuffer.pointer, batch: batch, training: true)
            XCTAssertEqual(losses, straight.forward(images: xBuffer.pointer, batch: batch, training: true), "\(kind): same forward")
            let reference = ReferenceVQVAE(model: model)
            let xDouble = x.map(Double.init)
            let base = reference.forward(images: xDouble, batch: batch)
            XCTAssertEqual(indices(model), base.indices)
            model.parameters.zeroGradients()
            model.backward(images: xBuffer.pointer)
            straight.parameters.zeroGradients()
            straight.backward(images: xBuffer.pointer)
            let (numeric, analytic, _) = surrogateFiniteDifferences(model, reference: reference, base: base, images: xDouble,
                                                                    seed: 123, label: "rotation \(kind)")
            assertClose(analytic, numeric, tolerance: 1e-3, floor: 1e-3 * largestMagnitude(numeric), "rotation \(kind): every slot")
            let slot = try XCTUnwrap(model.parameters.slot(named: "encoder/down0/weight"))
            let rotated = Array(UnsafeBufferPointer(start: model.parameters.gradients.pointer + slot.offset, count: slot.count))
            let plain = Array(UnsafeBufferPointer(start: straight.parameters.gradients.pointer + slot.offset, count: slot.count))
            XCTAssertGreaterThan(zip(rotated, plain).map { Double(abs($0 - $1)) }.max()!, 1e-3 * largestMagnitude(plain.map(Double.init)),
                                 "\(kind): the rotation changes the encoder's gradient")
            withExtendedLifetime(xBuffer) {}
        }
        var bad = smallConfiguration(.ema)
        bad.rotationTrick = true
        bad.model = .ae
        XCTAssertThrowsError(try bad.validate()) { XCTAssertTrue("\($0)".contains("--rotation-trick"), "\($0)") }
    }

    /// Cosine codes (`--quantizer cosine`): the quantizer reads `z / |z|` and unit codebook rows;
    /// the forward pass against the reference, every slot against the surrogate's finite
    /// differences (through the normalisation), and the codebook back on the unit sphere after an
    /// EMA update; the gradient codebook is refused.
    func testCosineCodesMatchReferenceAndKeepUnitCodes() throws {
        var c = smallConfiguration(.ema)
        c.quantizer = .cosine
        try c.validate()
        let model = try VQVAE(configuration: c, maxBatch: batch)
        model.initialize(seed: 131)
        let quantizer = try XCTUnwrap(model.quantizer)
        XCTAssertTrue(quantizer.cosine)
        let d = c.codeDimension, positions = batch * model.latentCount
        func rowNorms(_ rows: UnsafePointer<Float>, _ count: Int) -> [Float] {
            (0..<count).map { r in (0..<d).reduce(Float(0)) { $0 + rows[r * d + $1] * rows[r * d + $1] }.squareRoot() }
        }
        for norm in rowNorms(quantizer.codebook(parameters: model.parameters), c.codes) { XCTAssertEqual(norm, 1, accuracy: 1e-6, "unit start") }
        let x = images(model, seed: 132)
        let xBuffer = makeBuffer(x)
        // Each position's own code: its direction, nudged.
        model.encode(images: xBuffer.pointer, batch: batch)
        let codebook = quantizer.codebook(parameters: model.parameters)
        let nudges = randomFloats(positions * d, seed: 133, low: -0.15, high: 0.15)
        for p in 0..<positions { for j in 0..<d { codebook[p * d + j] = model.quantizerInput[p * d + j] + nudges[p * d + j] } }
        VectorQuantizer.normalizeRows(codebook, rows: c.codes, dimension: d)
        quantizer.emaSum.update(from: codebook, count: c.codes * d)
        for norm in rowNorms(model.quantizerInput, positions) { XCTAssertEqual(norm, 1, accuracy: 1e-6, "the quantizer reads unit vectors") }

        let losses = model.forward(images: xBuffer.pointer, batch: batch, training: true)
        let reference = ReferenceVQVAE(model: model)
        let xDouble = x.map(Double.init)
        let base = reference.forward(images: xDouble, batch: batch)
        XCTAssertEqual(indices(model), base.indices, "codes by angle")
        XCTAssertGreaterThan(Set(base.indices).count, 2, "several codes in use")
        assertClose(doubles(model.reconstruction.pointer, count: x.count), base.reconstruction, tolerance: 1e-5, "x_hat")
        assertClose(losses.total, base.total, tolerance: 1e-5, floor: 1e-3, "total loss")
        model.parameters.zeroGradients()
        model.backward(images: xBuffer.pointer)
        let (numeric, analytic, _) = surrogateFiniteDifferences(model, reference: reference, base: base, images: xDouble,
                                                                seed: 134, label: "cosine")
        assertClose(analytic, numeric, tolerance: 1e-3, floor: 1e-3 * largestMagnitude(numeric), "cosine: every slot")
        quantizer.applyEMA()
        for norm in rowNorms(codebook, c.codes) { XCTAssertEqual(norm, 1, accuracy: 1e-6, "unit rows after the EMA update") }
        withExtendedLifetime(xBuffer) {}

        var bad = smallConfiguration(.grad)
        bad.quantizer = .cosine
        XCTAssertThrowsError(try bad.validate()) { XCTAssertTrue("\($0)".contains("use --codebook ema"), "\($0)") }
    }

    /// A codebook of its own dimension (`--codebook-dim`), with EMA and gradient codebooks and with
    /// cosine codes: `quantizer/project_in` and `project_out` are 1x1 layers around the quantizer,
    /// which searches, commits and keeps its EMA sums in the codebook's `d` dimensions. The forward
    /// pass against the reference, every slot (both projections included) against the surrogate's
    /// finite differences, and decoding the codes reproduces the reconstruction bit for bit.
    func testCodebookProjectionMatchesReferenceAndFiniteDifferences() throws {
        for (kind, quantizer) in [(CodebookKind.ema, QuantizerKind.vq), (.grad, .vq), (.ema, .cosine)] {
            var c = smallConfiguration(kind)
            c.quantizer = quantizer
            c.codebookDimension = 3
            try c.validate()
            XCTAssertTrue(c.hasCodebookProjection)
            XCTAssertEqual(c.quantizerDimension, 3)
            let label = "\(kind) \(quantizer)"
            let model = try VQVAE(configuration: c, maxBatch: batch)
            model.initialize(seed: 141)
            let names = Set(model.parameters.slots.map(\.name))
            for name in ["quantizer/project_in/weight", "quantizer/project_in/bias", "quantizer/project_out/weight", "quantizer/project_out/bias"] {
                XCTAssertTrue(names.contains(name), "\(label): \(name)")
            }
            XCTAssertEqual(model.parameters.slot(named: "quantizer/project_in/weight")?.shape, [3, 4, 1, 1])
            XCTAssertEqual(model.parameters.slot(named: "quantizer/project_out/weight")?.shape, [4, 3, 1, 1])
            let x = images(model, seed: 142)
            let xBuffer = makeBuffer(x)
            // A fresh encoder's latents differ little, and project_in's bias outweighs them, so they
            // would all project to about one direction. Nearest rows: centre the projections (the
            // bias minus their mean) and spread them (weights x8). Cosine codes: keep a tenth of the
            // mean, as directions of vectors near the origin lose float precision (x64: scale does
            // not change a direction).
            let weightSlot = try XCTUnwrap(model.parameters.slot(named: "quantizer/project_in/weight"))
            let biasSlot = try XCTUnwrap(model.parameters.slot(named: "quantizer/project_in/bias"))
            let (scale, centring): (Float, Float) = quantizer == .cosine ? (64, 0.9) : (8, 1)
            for i in weightSlot.offset..<(biasSlot.offset + biasSlot.count) { model.parameters.values[i] *= scale }
            model.encode(images: xBuffer.pointer, batch: batch)
            let positions = batch * model.latentCount
            var means = [Float](repeating: 0, count: 3)
            for p in 0..<positions { for j in 0..<3 { means[j] += model.projected[p * 3 + j] / Float(positions) } }
            for j in 0..<3 { model.parameters.values[biasSlot.offset + j] -= centring * means[j] }
            if quantizer == .vq {
                spreadCodebook(model, images: xBuffer)
            } else {
                model.encode(images: xBuffer.pointer, batch: batch)
                let codebook = model.quantizer!.codebook(parameters: model.parameters), d = 3
                let nudges = randomFloats(batch * model.latentCount * d, seed: 143, low: -0.05, high: 0.05)
                for p in 0..<(batch * model.latentCount) { for j in 0..<d { codebook[p * d + j] = model.quantizerInput[p * d + j] + nudges[p * d + j] } }
                VectorQuantizer.normalizeRows(codebook, rows: c.codes, dimension: d)
                model.quantizer!.emaSum.update(from: codebook, count: c.codes * d)
            }
            let losses = model.forward(images: xBuffer.pointer, batch: batch, training: true)
            let reference = ReferenceVQVAE(model: model)
            let xDouble = x.map(Double.init)
            let base = reference.forward(images: xDouble, batch: batch)
            XCTAssertEqual(indices(model), base.indices, label)
            XCTAssertGreaterThan(Set(base.indices).count, 2, "\(label): several codes in use")
            assertClose(doubles(model.reconstruction.pointer, count: x.count), base.reconstruction, tolerance: 1e-5, "\(label): x_hat")
            assertClose(losses.total, base.total, tolerance: 1e-5, floor: 1e-3, "\(label): total loss")
            assertClose(losses.commitment, base.commitment, tolerance: 1e-4, floor: 1e-6, "\(label): commitment in the codebook's space")
            model.parameters.zeroGradients()
            model.backward(images: xBuffer.pointer)
            let (numeric, analytic, _) = surrogateFiniteDifferences(model, reference: reference, base: base, images: xDouble,
                                                                    seed: 144, label: label)
            assertClose(analytic, numeric, tolerance: 1e-3, floor: 1e-3 * largestMagnitude(numeric), "\(label): every slot")
            // The EMA statistics are sums of d-dimensional vectors.
            XCTAssertEqual(model.quantizer!.dimension, 3)
            let reconstruction = model.reconstruction.array
            let codes = Array(model.codeIndices)
            codes.withUnsafeBufferPointer { model.decode(codes: $0.baseAddress!, batch: batch) }
            XCTAssertEqual(model.reconstruction.array, reconstruction, "\(label): decoding the codes")
            withExtendedLifetime(xBuffer) {}
        }
        for (configure, message) in [({ (c: inout ModelConfiguration) in c.model = .ae }, "--codebook-dim sets the dimension of a codebook"),
                                     ({ (c: inout ModelConfiguration) in c.useFiniteScalarQuantizer(levels: [5, 5]) }, "--codebook-dim sets"),
                                     ({ (c: inout ModelConfiguration) in c.codebookDimension = -1 }, "--codebook-dim must be between 1 and")] {
            var bad = smallConfiguration(.ema)
            bad.codebookDimension = 2
            configure(&bad)
            XCTAssertThrowsError(try bad.validate()) { XCTAssertTrue("\($0)".contains(message), "\($0)") }
        }
        var same = smallConfiguration(.ema)
        same.codebookDimension = same.codeDimension
        XCTAssertFalse(same.hasCodebookProjection, "d = D: no projection")
    }

    /// Residual VQ (`--codebooks 3`), EMA and gradient codebooks, straight through and with the
    /// rotation trick: each level's codes against the double reference's level-by-level search on
    /// the residuals, the output (the levels' rows summed), the loss (commitments summed), every
    /// slot (each level's codebook with `--codebook grad`) against the surrogate's finite
    /// differences, each level's EMA statistics, and decoding the codes bit for bit. With quantizer
    /// dropout (a noise key): each image keeps its own first codebooks, the others' codes -1,
    /// their rows, statistics, commitment and gradient shares absent.
    func testResidualVQMatchesReferenceAndFiniteDifferences() throws {
        for (kind, rotation, dropout) in [(CodebookKind.ema, false, false), (.grad, false, false), (.ema, true, false),
                                          (.ema, false, true), (.grad, true, true)] {
            var c = smallConfiguration(kind)
            c.codebooks = 3
            c.rotationTrick = rotation
            c.quantizerDropout = dropout
            try c.validate()
            let label = "\(kind)\(rotation ? " rotation" : "")\(dropout ? " dropout" : "")"
            let model = try VQVAE(configuration: c, maxBatch: batch)
            model.initialize(seed: 161)
            let quantizer = try XCTUnwrap(model.quantizer)
            XCTAssertEqual(quantizer.levels, 3)
            if kind == .grad {
                XCTAssertEqual(quantizer.codebookSlots.map(\.name), ["quantizer/codebook", "quantizer/level1/codebook", "quantizer/level2/codebook"])
            } else {
                XCTAssertEqual(quantizer.emaSlots.map(\.name).filter { $0.hasSuffix("codebook") },
                               ["quantizer/codebook", "quantizer/level1/codebook", "quantizer/level2/codebook"])
            }
            let x = images(model, seed: 162)
            let xBuffer = makeBuffer(x)
            spreadCodebook(model, images: xBuffer)
            // Each later level's rows: part of this batch's residuals at that level, nudged, so
            // every level uses several codes with clear margins.
            let positions = batch * model.latentCount, d = c.codeDimension
            for level in 1..<3 {
                model.forward(images: xBuffer.pointer, batch: batch, training: false)
                let residual = quantizer.levelInputs.pointer + level * quantizer.maxVectors * d
                let book = quantizer.codebook(level: level, parameters: model.parameters)
                let nudges = randomFloats(positions * d, seed: 163 + UInt64(level), low: -0.02, high: 0.02)
                for i in 0..<(positions * d) { book[i] = 0.6 * residual[i] + nudges[i] }
                if kind == .ema { quantizer.emaSum(level: level).update(from: book, count: c.codes * d) }
            }
            // Dropout: a key under which the two images keep different numbers of codebooks.
            var key: NoiseKey?
            if dropout {
                var step: UInt64 = 1
                repeat {
                    key = NoiseKey(seed: 7, step: step, firstImage: 0)
                    model.drawActiveLevels(batch: batch, key: key)
                    step += 1
                } while Set(model.activeLevels.prefix(positions)).count < 2 || model.activeLevels.prefix(positions).contains(1)
            }
            let losses = model.forward(images: xBuffer.pointer, batch: batch, training: true, noise: key)
            var reference = ReferenceVQVAE(model: model)
            if dropout { reference.activeLevels = model.activeLevels.prefix(positions).map(Int.init) }
            let xDouble = x.map(Double.init)
            let base = reference.forward(images: xDouble, batch: batch)
            let codes = Array(model.codeIndices.prefix(positions * 3)).map(Int.init)
            XCTAssertEqual(codes, base.indices, "\(label): codes level by level")
            XCTAssertEqual(codes.contains(-1), dropout, "\(label): skipped codebooks give -1")
            for level in 0..<3 {
                let used = Set((0..<positions).map { codes[$0 * 3 + level] }.filter { $0 >= 0 })
                XCTAssertGreaterThan(used.count, dropout && level == 2 ? 1 : 2, "\(label): level \(level) uses several codes")
            }
            assertClose(doubles(model.reconstruction.pointer, count: x.count), base.reconstruction, tolerance: 1e-5, "\(label): x_hat")
            assertClose(losses.total, base.total, tolerance: 1e-5, floor: 1e-3, "\(label): total loss")
            assertClose(losses.commitment, base.commitment, tolerance: 1e-4, floor: 1e-6, "\(label): commitments summed")
            // Each level's statistics: its codes' counts and the sums of its residuals.
            for level in 0..<3 {
                var expected = [Double](repeating: 0, count: c.codes + c.codes * d)
                for p in 0..<positions where codes[p * 3 + level] >= 0 {
                    let k = codes[p * 3 + level]
                    expected[k] += 1
                    for j in 0..<d {
                        var r = base.latent[p * d + j]
                        for before in 0..<level { r -= base.quantized[before * positions * d + p * d + j] }
                        expected[c.codes + k * d + j] += r
                    }
                }
                assertClose(doubles(quantizer.statistics(level: level), count: expected.count), expected, tolerance: 1e-5, floor: 1e-3,
                            "\(label): level \(level) statistics")
            }
            model.parameters.zeroGradients()
            model.backward(images: xBuffer.pointer)
            let (numeric, analytic, _) = surrogateFiniteDifferences(model, reference: reference, base: base, images: xDouble,
                                                                    seed: 166, label: label)
            assertClose(analytic, numeric, tolerance: 1e-3, floor: 1e-3 * largestMagnitude(numeric), "\(label): every slot")
            let reconstruction = model.reconstruction.array
            let all = Array(model.codeIndices.prefix(positions * 3))
            all.withUnsafeBufferPointer { model.decode(codes: $0.baseAddress!, batch: batch) }
            XCTAssertEqual(model.reconstruction.array, reconstruction, "\(label): decoding the codes")
            withExtendedLifetime(xBuffer) {}
        }
        for (configure, message) in [({ (c: inout ModelConfiguration) in c.quantizer = .cosine }, "--codebooks 2 makes residual VQ"),
                                     ({ (c: inout ModelConfiguration) in c.model = .ae }, "--codebooks 2 makes residual VQ"),
                                     ({ (c: inout ModelConfiguration) in c.codebooks = 65 }, "--codebooks must be between 1 and 64")] {
            var bad = smallConfiguration(.ema)
            bad.codebooks = 2
            configure(&bad)
            XCTAssertThrowsError(try bad.validate()) { XCTAssertTrue("\($0)".contains(message), "\($0)") }
        }
    }

    /// The encoder-side refinement's two parts: `codeRowGradient` (the gradient of a loss on the
    /// decoded image with respect to the rows the decoder reads, through the decoder and, with
    /// `--codebook-dim`, `project_out`) against central finite differences of the decoded loss, each
    /// row moved through its own codebook entry; and `quantize(rows:levels:)`, which on the
    /// encoder's vectors gives the forward pass's codes, and with per-position levels skips the
    /// later codebooks as the forward pass does.
    func testCodeRowGradientMatchesFiniteDifferencesAndQuantizeMatchesTheForwardPass() throws {
        for projection in [0, 3] {
            var c = smallConfiguration(.ema)
            c.codebooks = 2
            c.codebookDimension = projection
            try c.validate()
            let label = projection == 0 ? "rows in the latent" : "rows through project_out"
            let model = try VQVAE(configuration: c, maxBatch: batch)
            model.initialize(seed: 171)
            let positions = batch * model.latentCount, d = c.quantizerDimension
            // Every position its own first-level code, so that moving that code's row moves one row.
            var codes = [Int32](repeating: 0, count: positions * 2)
            for p in 0..<positions { codes[p * 2] = Int32(p); codes[p * 2 + 1] = Int32((p * 5) % c.codes) }
            let weights = randomFloats(batch * model.imageCount, seed: 172)
            func loss() -> Double {
                codes.withUnsafeBufferPointer { model.decode(codes: $0.baseAddress!, batch: batch) }
                let out = model.reconstruction.pointer
                return (0..<weights.count).reduce(0.0) { $0 + Double(weights[$1]) * Double(out[$1]) }
            }
            _ = loss()
            let analytic = weights.withUnsafeBufferPointer {
                Array(UnsafeBufferPointer(start: model.codeRowGradient(reconstructionGradient: $0.baseAddress!), count: positions * d))
            }
            XCTAssertTrue(model.parameters.gradients.array.allSatisfy { $0 == 0 }, "\(label): no parameter gradient is left behind")
            let book = model.quantizer!.codebook(level: 0, parameters: model.parameters)
            var numeric = [Double](repeating: 0, count: positions * d)
            let h: Float = 1e-2
            for p in 0..<positions {
                for j in 0..<d {
                    let saved = book[p * d + j]
                    book[p * d + j] = saved + h
                    let plus = loss()
                    book[p * d + j] = saved - h
                    let minus = loss()
                    book[p * d + j] = saved
                    numeric[p * d + j] = (plus - minus) / Double(2 * h)
                }
            }
            assertClose(analytic, numeric, tolerance: 1e-2, floor: 1e-2 * largestMagnitude(numeric), "\(label): dL/drows (float)")
            XCTAssertGreaterThan(largestMagnitude(numeric), 1e-3, "\(label): the loss depends on the rows")

            // quantize(rows:): the encoder's vectors give the forward pass's codes.
            let x = makeBuffer(images(model, seed: 173))
            model.forward(images: x.pointer, batch: batch, training: false)
            let forwardCodes = Array(model.codeIndices.prefix(positions * 2))
            let vectors = Array(UnsafeBufferPointer(start: model.quantizerInput, count: positions * d))
            model.codeIndices.update(repeating: 7)
            vectors.withUnsafeBufferPointer { model.quantize(rows: $0.baseAddress!, batch: batch) }
            XCTAssertEqual(Array(model.codeIndices.prefix(positions * 2)), forwardCodes, "\(label): quantize = forward")
            let levels = (0..<positions).map { Int32(1 + $0 % 2) }
            vectors.withUnsafeBufferPointer { v in levels.withUnsafeBufferPointer { model.quantize(rows: v.baseAddress!, batch: batch, levels: $0.baseAddress!) } }
            for p in 0..<positions {
                XCTAssertEqual(model.codeIndices[p * 2], forwardCodes[p * 2], "\(label): first codebook at \(p)")
                XCTAssertEqual(model.codeIndices[p * 2 + 1], levels[p] == 1 ? -1 : forwardCodes[p * 2 + 1], "\(label): second at \(p)")
            }
            withExtendedLifetime(x) {}
        }
    }

    /// The VQ-VAE with finite scalar quantization (`--quantizer fsq`): the forward pass against the
    /// double-precision reference and every slot's gradient against the straight-through
    /// surrogate's finite differences; decoding its codes reproduces the reconstruction bit for bit.
    func testFiniteScalarQuantizerModelMatchesReferenceAndFiniteDifferences() throws {
        var c = smallConfiguration(.ema)
        c.useFiniteScalarQuantizer(levels: [5, 4, 3])
        try c.validate()
        XCTAssertFalse(c.hasCodebook)
        let model = try VQVAE(configuration: c, maxBatch: batch)
        model.initialize(seed: 111)
        XCTAssertNil(model.quantizer)
        XCTAssertNil(model.parameters.slot(named: "quantizer/codebook"))
        // Latents larger than a fresh model's (pre_quant scaled up), so that several levels are used.
        let preQuant = try XCTUnwrap(model.parameters.slot(named: "pre_quant/weight"))
        for i in preQuant.offset..<(preQuant.offset + preQuant.count) { model.parameters.values[i] *= 40 }
        let x = images(model, seed: 112)
        let t = randomFloats(x.count, seed: 113, low: -0.5, high: 0.5)
        let xBuffer = makeBuffer(x), tBuffer = makeBuffer(t)
        let losses = model.forward(images: xBuffer.pointer, targets: tBuffer.pointer, batch: batch, training: true)
        XCTAssertEqual(losses.commitment, 0)
        let reference = ReferenceVQVAE(model: model)
        let xDouble = x.map(Double.init), tDouble = t.map(Double.init)
        let base = reference.forward(images: xDouble, targets: tDouble, batch: batch)
        XCTAssertGreaterThan(base.smallestMargin, 1e-4, "no latent sits on a rounding boundary")
        XCTAssertEqual(indices(model), base.indices, "codes")
        XCTAssertGreaterThan(Set(base.indices).count, 2, "several codes in use")
        assertClose(doubles(model.quantized.pointer, count: base.quantized.count), base.quantized, tolerance: 1e-6, "q")
        assertClose(doubles(model.reconstruction.pointer, count: x.count), base.reconstruction, tolerance: 1e-5, "x_hat")
        assertClose(losses.total, base.total, tolerance: 1e-5, floor: 1e-3, "total loss")

        let reconstruction = model.reconstruction.array
        let codes = (0..<(batch * model.latentCount)).map { model.codeIndices[$0] }
        model.parameters.zeroGradients()
        model.backward(images: xBuffer.pointer, targets: tBuffer.pointer)
        let (numeric, analytic, _) = surrogateFiniteDifferences(model, reference: reference, base: base, images: xDouble,
                                                                targets: tDouble, seed: 114, label: "fsq")
        assertClose(analytic, numeric, tolerance: 1e-3, floor: 1e-3 * largestMagnitude(numeric), "fsq: every slot vs surrogate finite differences")
        model.decode(codes: codes, batch: batch)
        XCTAssertEqual(model.reconstruction.array.map(\.bitPattern), reconstruction.map(\.bitPattern), "decode(codes:) is the forward pass")
        withExtendedLifetime((xBuffer, tBuffer)) {}

        var bad = smallConfiguration(.ema)
        bad.useFiniteScalarQuantizer(levels: [5, 4, 3])
        bad.codes = 16
        XCTAssertThrowsError(try bad.validate()) { XCTAssertTrue("\($0)".contains("leave out --code-dim and --codes"), "\($0)") }
        bad.model = .ae
        XCTAssertThrowsError(try bad.validate()) { XCTAssertTrue("\($0)".contains("--model ae has none"), "\($0)") }
    }

    /// The configuration keys of residual models: stored and read back; a configuration written
    /// before they existed reads as a plain model; bad values and detail layers without
    /// `--residual` are refused.
    func testResidualConfigurationRoundTripsAndOldConfigurationsAreNotResidual() throws {
        var c = smallConfiguration(.ema)
        c.residual = true
        c.detailLayers = 3
        c.detailChannels = 24
        let json = try JSONEncoder().encode(c)
        XCTAssertEqual(try JSONDecoder().decode(ModelConfiguration.self, from: json), c)
        var object = try JSONSerialization.jsonObject(with: json) as! [String: Any]
        for key in ["residual", "detailLayers", "detailChannels", "skips", "skipWeightLow", "skipWeightHigh"] {
            XCTAssertNotNil(object.removeValue(forKey: key), key)
        }
        let old = try JSONDecoder().decode(ModelConfiguration.self, from: try JSONSerialization.data(withJSONObject: object))
        XCTAssertFalse(old.residual)
        XCTAssertEqual(old.detailLayers, 0)
        XCTAssertEqual(old, smallConfiguration(.ema))
        var bad = smallConfiguration(.ema)
        bad.detailLayers = 2
        XCTAssertThrowsError(try bad.validate()) { XCTAssertTrue("\($0)".contains("--detail-layers needs --residual"), "\($0)") }
        bad.residual = true
        bad.detailLayers = -1
        XCTAssertThrowsError(try bad.validate()) { XCTAssertTrue("\($0)".contains("--detail-layers must be between 0 and 100"), "\($0)") }
        bad.detailLayers = 1
        bad.detailChannels = 0
        XCTAssertThrowsError(try bad.validate()) { XCTAssertTrue("\($0)".contains("--detail-channels must be between 1"), "\($0)") }
        for (low, high) in [(-0.1, 1.0), (0.8, 0.2), (0, 1.5), (Double.nan, 1)] {
            var skips = smallConfiguration(.ema)
            skips.skips = true
            (skips.skipWeightLow, skips.skipWeightHigh) = (low, high)
            XCTAssertThrowsError(try skips.validate(), "\(low)..\(high)") { XCTAssertTrue("\($0)".contains("--skip-weight must be"), "\($0)") }
        }
    }
}

/// The memory check that refuses absurd configurations before anything is allocated.
final class ModelMemoryTests: XCTestCase {
    /// The estimate covers what the model really allocates (with Adam's two moments) without
    /// overstating it by more than 3x, for each model kind and a few shapes.
    func testEstimateCoversTheAllocatedModel() throws {
        var cases: [(ModelConfiguration, Int)] = []
        for kind in ModelKind.allCases {
            var c = ModelConfiguration(height: 32, width: 32, channels: 3)
            c.model = kind
            cases.append((c, 32))
        }
        var mnist = ModelConfiguration(height: 28, width: 28, channels: 1)
        mnist.hidden = 32; mnist.residualHidden = 8; mnist.codeDimension = 16; mnist.codes = 64
        cases.append((mnist, 64))
        var wide = ModelConfiguration(height: 64, width: 64, channels: 3)
        wide.downsamplings = 3; wide.codes = 4096; wide.residualBlocks = 4
        cases.append((wide, 8))
        for (layers, width) in [(0, 32), (3, 32), (2, 64)] {
            var residual = ModelConfiguration(height: 32, width: 32, channels: 3)
            residual.residual = true; residual.detailLayers = layers; residual.detailChannels = width
            cases.append((residual, 32))
        }
        for (kind, down) in [(ModelKind.vqvae, 2), (.ae, 1), (.vae, 3)] {
            var unet = ModelConfiguration(height: 64, width: 64, channels: 3)
            unet.model = kind; unet.downsamplings = down; unet.skips = true; unet.residual = true
            cases.append((unet, 16))
        }
        var masked = ModelConfiguration(height: 64, width: 64, channels: 3)
        masked.model = .ae; masked.downsamplings = 3; masked.skips = true; masked.residual = true; masked.maskChannel = true
        cases.append((masked, 16))
        var cosine = ModelConfiguration(height: 32, width: 32, channels: 3)
        cosine.quantizer = .cosine
        cases.append((cosine, 32))
        var fsq = ModelConfiguration(height: 32, width: 32, channels: 3)
        fsq.useFiniteScalarQuantizer(levels: [8, 5, 5, 5])
        cases.append((fsq, 32))
        var projected = ModelConfiguration(height: 32, width: 32, channels: 3)
        projected.codebookDimension = 8
        cases.append((projected, 32))
        var residualVQ = ModelConfiguration(height: 32, width: 32, channels: 3)
        residualVQ.codebooks = 4
        cases.append((residualVQ, 32))
        projected.quantizer = .cosine
        projected.codebookDimension = 256
        cases.append((projected, 32))
        var resized = ModelConfiguration(height: 64, width: 64, channels: 3)
        resized.downsamplings = 3; resized.codebooks = 4; resized.upsampling = .resize; resized.skips = true
        cases.append((resized, 16))
        // Hole fills: their buffers grow on the first forward pass with missing pixels.
        for fill in [HoleFill.smooth, .plate] {
            var filled = masked
            filled.holeFill = fill
            cases.append((filled, 16))
        }
        for (c, batch) in cases {
            let model = try VQVAE(configuration: c, maxBatch: batch)
            if c.maskChannel && c.holeFill != .zero {
                let pixels = c.height * c.width
                let images = [Float](repeating: 0.5, count: batch * pixels * c.channels)
                let masks = (0..<(batch * pixels)).map { Float(($0 % pixels) % 7 == 0 ? 1 : 0) }
                let before = model.allocatedFloatCount
                model.initialize(seed: 1)
                model.forward(images: images, masks: masks, batch: batch, training: false)
                XCTAssertGreaterThan(model.allocatedFloatCount, before, "the fill's buffers are counted")
            }
            XCTAssertEqual(c.parameterCountEstimate, Double(model.parameters.count + (model.quantizer?.emaState.count ?? 0)),
                           "\(c.model): parameters and codebook state")
            let allocated = 4 * Double(model.allocatedFloatCount + 2 * model.parameters.count)
            let estimate = c.trainingBytesEstimate(maxBatch: batch)
            XCTAssertGreaterThanOrEqual(estimate, allocated, "\(c.model) \(c.height)x\(c.width) batch \(batch)")
            XCTAssertLessThanOrEqual(estimate, 3 * allocated, "\(c.model) \(c.height)x\(c.width) batch \(batch)")
        }
    }

    /// Settings that would overflow index arithmetic or exceed memory are refused with a message.
    func testAbsurdConfigurationsAreRefused() {
        var c = ModelConfiguration(height: 32, width: 32, channels: 3)
        c.codes = 1 << 62
        XCTAssertThrowsError(try VQVAE(configuration: c, maxBatch: 1)) { XCTAssertTrue("\($0)".contains("--codes must be at most"), "\($0)") }
        c = ModelConfiguration(height: 32, width: 32, channels: 3)
        c.hidden = 1 << 20
        XCTAssertThrowsError(try VQVAE(configuration: c, maxBatch: 1)) { XCTAssertTrue("\($0)".contains("needs about"), "\($0)") }
        c = ModelConfiguration(height: 32, width: 32, channels: 3)
        XCTAssertThrowsError(try c.checkFitsInMemory(maxBatch: 32, memory: 10_000_000)) {
            XCTAssertTrue("\($0)".contains("with a batch of 32 needs about"), "\($0)")
        }
        XCTAssertNoThrow(try c.checkFitsInMemory(maxBatch: 32, memory: 1_000_000_000))
    }
}
