import Data
import Foundation
import Model

/// What `vqvae probe` is told.
public struct ProbeOptions: Sendable {
    /// The checkpoint whose encoder is probed.
    public var checkpoint = ""
    /// HDF5 dataset with `images` and `labels` to fit the classifier on.
    public var train = ""
    /// HDF5 dataset with `images` and `labels` to measure accuracy on.
    public var test = ""
    public var epochs = 30
    /// Images per encoder pass and per classifier minibatch.
    public var batch = 128
    public var lr: Float = 1e-3
    public var weightDecay: Float = 1e-4
    /// Seed of the minibatch order.
    public var seed: UInt64 = 1
    /// Use only the first N images of each dataset (0 = all).
    public var limit = 0
    public var threads = 1
    /// Use the checkpoint's trained weights even when it holds a weight EMA (`--raw-weights`).
    public var rawWeights = false

    public init() {}
}

/// The result of a linear probe.
public struct ProbeReport: Sendable {
    public var testAccuracy: Double
    public var trainAccuracy: Double
    public var trainLoss: Double
    public var classes: Int
    public var features: Int
    public var trainImages: Int
    public var testImages: Int
    public var model: ModelKind
    public var checkpoint: String
    public var epochs: Int
    public var seconds: Double

    /// The `--json` object.
    public var json: [String: Any] {
        ["test_accuracy": testAccuracy, "train_accuracy": trainAccuracy, "train_loss": trainLoss, "classes": classes,
         "features": features, "train_images": trainImages, "test_images": testImages,
         "model": model.rawValue, "checkpoint": checkpoint]
    }

    public var lines: [String] {
        [String(format: "probe of %@ (%@): %d features per image, %d classes, %d epochs in %.1f s",
                checkpoint, model.rawValue, features, classes, epochs, seconds),
         String(format: "train accuracy %.4f (%d images, final loss %.4f)", trainAccuracy, trainImages, trainLoss),
         String(format: "test accuracy  %.4f (%d images)", testAccuracy, testImages)]
    }
}

/// `vqvae probe`: how much class information the frozen encoder's codes keep. Extracts the
/// decoder's input for every image (the VQ-VAE's quantized vectors, the VAE's mean, the
/// autoencoder's latent), fits a softmax classifier on the training set's features (standardised
/// with its mean and deviation) and measures its accuracy on the test set.
public struct LinearProbe {
    let options: ProbeOptions

    public init(options: ProbeOptions) { self.options = options }

    public func run() throws -> ProbeReport {
        let o = options
        guard o.epochs >= 1, o.batch >= 1, o.limit >= 0 else { throw ProbeError("--epochs and --batch must be at least 1, --limit not negative") }
        setBLASThreads(o.threads)
        let trained = try TrainedModel(checkpoint: o.checkpoint, batch: o.batch, weights: TrainedModel.weights(raw: o.rawWeights))
        let (trainFeatures, trainLabels) = try features(trained, path: o.train, flag: "--train")
        let (testFeatures, testLabels) = try features(trained, path: o.test, flag: "--test")
        let classes = Int((trainLabels + testLabels).max() ?? 0) + 1
        let featureCount = trained.model.latentCount * trained.configuration.codeDimension
        let classifier = try SoftmaxClassifier(featureCount: featureCount, classCount: max(classes, 2))
        let started = monotonicSeconds()
        let loss = try trainFeatures.withUnsafeBufferPointer {
            try classifier.fit(features: $0.baseAddress!, labels: trainLabels, count: trainLabels.count, epochs: o.epochs,
                               batch: o.batch, learningRate: o.lr, weightDecay: o.weightDecay, seed: o.seed)
        }
        func accuracy(_ features: [Float], _ labels: [Int32]) -> Double {
            let predicted = features.withUnsafeBufferPointer { classifier.predict(features: $0.baseAddress!, count: labels.count) }
            return Double(zip(predicted, labels).filter { $0 == Int($1) }.count) / Double(labels.count)
        }
        return ProbeReport(testAccuracy: accuracy(testFeatures, testLabels), trainAccuracy: accuracy(trainFeatures, trainLabels),
                           trainLoss: Double(loss), classes: classes, features: featureCount, trainImages: trainLabels.count,
                           testImages: testLabels.count, model: trained.configuration.model, checkpoint: trained.path,
                           epochs: o.epochs, seconds: monotonicSeconds() - started)
    }

    /// The decoder inputs `[N, h*w*D]` of a dataset's images, and its labels.
    func features(_ trained: TrainedModel, path: String, flag: String) throws -> ([Float], [Int32]) {
        let dataset = try ImageDataset(paths: [path])
        guard dataset.hasLabels else { throw ProbeError("\(flag) \(path) has no `labels` dataset; the probe needs class labels") }
        try trained.checkImageSize(height: dataset.height, width: dataset.width, channels: dataset.channels, source: "\(flag) \(path)")
        let total = options.limit > 0 ? min(options.limit, dataset.count) : dataset.count
        let model = trained.model
        let perImage = model.latentCount * trained.configuration.codeDimension
        var features = [Float](repeating: 0, count: total * perImage)
        let images = FloatBuffer(count: options.batch * model.imageCount)
        var start = 0
        while start < total {
            let n = min(options.batch, total - start)
            try dataset.read(indices: Array(start..<(start + n)), into: images.pointer)
            model.forward(images: images.pointer, batch: n, training: false)
            let source = model.decoderInput
            features.withUnsafeMutableBufferPointer { ($0.baseAddress! + start * perImage).update(from: source, count: n * perImage) }
            start += n
        }
        withExtendedLifetime(images) {}
        let labels = try dataset.labels(indices: Array(0..<total))
        guard labels.allSatisfy({ $0 >= 0 && $0 < 1 << 20 }) else {
            throw ProbeError("\(flag) \(path): labels must be class numbers 0, 1, 2, ...")
        }
        return (features, labels.map { Int32($0) })
    }
}
