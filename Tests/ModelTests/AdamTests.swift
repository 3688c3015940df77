import Model
import TestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class AdamTests: XCTestCase {
    // Five scalars over three steps: ordinary values, a zero gradient (moved only by weight decay), a
    // large gradient, and a gradient of 1e-9 whose update is dominated by eps (it shows that eps is
    // added after the bias-corrected square root, as PyTorch does).
    let start: [Float] = [1.0, -0.5, 0.25, 2.0, 0.0]
    let exactGradients: [[Double]] = [
        [0.1, -0.2, 0.0, 3.0, 1e-9],
        [-0.3, 0.05, 0.0, 2.0, 1e-9],
        [0.2, 0.4, 0.0, -1.0, 1e-9],
    ]
    var gradients: [[Float]] { exactGradients.map { $0.map(Float.init) } }
    let learningRate: Float = 0.1

    /// PyTorch's `torch.optim.Adam` (single-tensor, no AMSGrad) in double, step by step:
    /// g += wd*p; m += (1-b1)(g-m); v = b2 v + (1-b2) g^2;
    /// p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps).
    private func reference(weightDecay: Double) -> [(p: [Double], m: [Double], v: [Double])] {
        // Decimal inputs exactly as written (as Python would see them); the float run differs from
        // them by float rounding of the inputs only (~1e-9 relative).
        let b1 = 0.9, b2 = 0.999, eps = 1e-8, lr = 0.1
        var p = start.map(Double.init), m = [Double](repeating: 0, count: p.count), v = m
        var result: [(p: [Double], m: [Double], v: [Double])] = []
        for (t0, g0) in exactGradients.enumerated() {
            let t = Double(t0 + 1)
            for i in p.indices {
                let g = g0[i] + weightDecay * p[i]
                m[i] += (1 - b1) * (g - m[i])
                v[i] = b2 * v[i] + (1 - b2) * g * g
                p[i] -= lr / (1 - pow(b1, t)) * m[i] / (v[i].squareRoot() / (1 - pow(b2, t)).squareRoot() + eps)
            }
            result.append((p, m, v))
        }
        return result
    }

    /// Test 7: three Adam steps against the double-precision formulas and against literal values
    /// (worked out in double, with Python floats, from the same formulas), with and without weight decay.
    func testThreeStepsMatchHandComputedValues() {
        // Literal parameters after steps 1, 2 and 3. Step 1 without decay is the textbook check:
        // m = 0.1 g, v = 0.001 g^2, so p -= lr * g / (|g| + eps/...) = p - 0.1 * sign(g) (for |g| >> eps),
        // and for g = 1e-9: 0.1 * 1e-9 / (1e-9 + 1e-8) = 0.1/11 = 0.0090909.
        let literal: [Double: [[Double]]] = [
            0.0: [
                [0.900000009999999, -0.40000000499999977, 0.25, 1.9000000003333333, -0.00909090909090909],
                [0.9494189911200654, -0.35305319110044686, 0.25, 1.802964787904343, -0.018181818181818177],
                [0.9475402217659346, -0.3932356492078345, 0.25, 1.7477755984856143, -0.027272727272727268],
            ],
            0.1: [
                [0.9000000049999998, -0.4000000039999998, 0.15000003999998401, 1.9000000003125, -0.00909090909090909],
                [0.9076998029693945, -0.3360234307621297, 0.05425106538737266, 1.8026712639656073, 0.06532154229819966],
                [0.8666539055617357, -0.36092556389728336, -0.0302082141559641, 1.742288467394002, 0.009974637532200743],
            ],
        ]
        let literalMoments: [Double: (m: [Double], v: [Double])] = [
            0.0: ([0.0011000000000000003, 0.0283, 0.0, 0.32299999999999995, 2.7099999999999994e-10],
                  [0.0001398900100000001, 0.0002024175400000002, 0.0, 0.013978009000000012, 2.9970010000000033e-21]),
            0.1: ([0.02637699807469394, 0.017289765656378707, 0.003917511013873582, 0.37432671264246853, 0.0005713975121638147],
                  [0.00016852312123209274, 0.00019672220549124932, 8.779575258366189e-07, 0.015682796124202907, 4.349466996481348e-08]),
        ]
        for weightDecay in [0.0, 0.1] {
            let expected = reference(weightDecay: weightDecay)
            let adam = Adam(count: start.count, learningRate: learningRate, weightDecay: weightDecay)
            let parameters = makeBuffer(start)
            for (t, g) in gradients.enumerated() {
                let gradient = makeBuffer(g)
                adam.update(parameters: parameters.pointer, gradients: gradient.pointer)
                XCTAssertEqual(adam.step, Int64(t + 1))
                assertClose(expected[t].p, literal[weightDecay]![t], tolerance: 1e-12,
                            "Adam wd=\(weightDecay) step \(t + 1): double formulas vs literals")
                assertClose(parameters.array, literal[weightDecay]![t], tolerance: 1e-6,
                            "Adam wd=\(weightDecay) step \(t + 1) parameters")
                assertClose(adam.firstMoment.array, expected[t].m, tolerance: 1e-5, floor: 1e-6,
                            "Adam wd=\(weightDecay) step \(t + 1) m")
                assertClose(adam.secondMoment.array, expected[t].v, tolerance: 1e-5, floor: 1e-20,
                            "Adam wd=\(weightDecay) step \(t + 1) v")
                XCTAssertEqual(gradient.array, g, "Adam must not modify the gradients")
            }
            assertClose(expected[2].m, literalMoments[weightDecay]!.m, tolerance: 1e-12, "Adam m literals wd=\(weightDecay)")
            assertClose(expected[2].v, literalMoments[weightDecay]!.v, tolerance: 1e-12, floor: 1e-30,
                        "Adam v literals wd=\(weightDecay)")
        }
    }

    /// AdamW (decoupled weight decay 0.1) over the same three steps against `torch.optim.AdamW`
    /// (PyTorch 2.13, lr 0.1, foreach=False): the literals are its parameters and moments in
    /// float64; its float32 run agrees with them to 3e-8. The moments equal plain Adam's (the
    /// gradient is not touched), the parameters shrink by 1 - lr * wd first.
    func testAdamWMatchesTorch() {
        let torchParameters: [[Double]] = [
            [0.890000009999999, -0.39500000499999977, 0.2475, 1.8800000003333333, -0.00909090909090909],
            [0.9305189910200654, -0.34410319105044684, 0.245025, 1.7641647879010096, -0.018090909090909088],
            [0.9193350317557338, -0.38084461724733, 0.24257474999999998, 1.691333950603271, -0.02700090909090909],
        ]
        let torchM = [0.001100000000000001, 0.028299999999999995, 0.0, 0.32299999999999995, 2.7099999999999994e-10]
        let torchV = [0.0001398900100000001, 0.0002024175400000002, 0.0, 0.013978009000000012, 2.9970010000000033e-21]
        let adam = Adam(count: start.count, learningRate: learningRate, weightDecay: 0.1, decoupled: true)
        let parameters = makeBuffer(start)
        for (t, g) in gradients.enumerated() {
            let gradient = makeBuffer(g)
            adam.update(parameters: parameters.pointer, gradients: gradient.pointer)
            assertClose(parameters.array, torchParameters[t], tolerance: 1e-6, "AdamW step \(t + 1) parameters")
            XCTAssertEqual(gradient.array, g, "AdamW must not modify the gradients")
        }
        assertClose(adam.firstMoment.array, torchM, tolerance: 1e-5, floor: 1e-6, "AdamW m")
        assertClose(adam.secondMoment.array, torchV, tolerance: 1e-5, floor: 1e-20, "AdamW v")

        // Without weight decay AdamW is Adam, bit for bit.
        let plain = Adam(count: start.count, learningRate: learningRate)
        let decoupled = Adam(count: start.count, learningRate: learningRate, decoupled: true)
        let a = makeBuffer(start), b = makeBuffer(start)
        for g in gradients {
            let gradient = makeBuffer(g)
            plain.update(parameters: a.pointer, gradients: gradient.pointer)
            decoupled.update(parameters: b.pointer, gradients: gradient.pointer)
        }
        XCTAssertEqual(a.array, b.array)
    }

    /// The schedules step by step: warmup, cosine to its minimum and beyond, step decay.
    func testLearningRateSchedules() {
        func rates(_ s: LearningRateSchedule, _ steps: Int) -> [Double] { (0..<steps).map { Double(s.rate(completedSteps: $0)) } }
        assertClose(rates(LearningRateSchedule(base: 0.1), 3), [0.1, 0.1, 0.1], tolerance: 1e-7, "constant")
        assertClose(rates(LearningRateSchedule(base: 0.1, warmupSteps: 4), 6), [0.025, 0.05, 0.075, 0.1, 0.1, 0.1],
                    tolerance: 1e-7, "constant with warmup")
        // Warmup 2, decay over steps 2..6 (4 steps) from 0.1 to 0.02, then flat.
        let cosine = LearningRateSchedule(kind: .cosine, base: 0.1, warmupSteps: 2, minimum: 0.02, decaySteps: 6)
        let mid = 0.02 + 0.08 * 0.5 * (1 + cos(Double.pi / 4)), late = 0.02 + 0.08 * 0.5 * (1 + cos(3 * Double.pi / 4))
        assertClose(rates(cosine, 9), [0.05, 0.1, 0.1, mid, 0.06, late, 0.02, 0.02, 0.02], tolerance: 1e-7, "cosine")
        let step = LearningRateSchedule(kind: .step, base: 0.1, stepEvery: 3, stepFactor: 0.5)
        assertClose(rates(step, 7), [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025], tolerance: 1e-7, "step")
        XCTAssertEqual(step.rate(completedSteps: 3), Float(0.05))
    }

    /// Clipping scales the whole gradient to the norm asked for (as clip_grad_norm_, with its
    /// 1e-6), and leaves a smaller gradient alone.
    func testGradientNormClipping() {
        let values = makeBuffer((0..<37).map { Float($0 % 7) - 3 })
        let exact = (0..<37).map { Double($0 % 7) - 3 }.reduce(0) { $0 + $1 * $1 }.squareRoot()
        let norm = euclideanNorm(values.pointer, count: values.count)
        XCTAssertEqual(norm, exact, accuracy: 1e-12)
        let before = values.array
        XCTAssertEqual(clipGradients(values.pointer, count: values.count, norm: norm, maxNorm: norm * 2), 1)
        XCTAssertEqual(values.array, before)
        let scale = clipGradients(values.pointer, count: values.count, norm: norm, maxNorm: 2)
        XCTAssertEqual(Double(scale), 2 / (exact + 1e-6), accuracy: 1e-7)
        XCTAssertEqual(euclideanNorm(values.pointer, count: values.count), 2, accuracy: 1e-5)
    }
}
