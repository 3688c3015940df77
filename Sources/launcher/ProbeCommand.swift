import ArgumentParser
import Data
import Foundation
import Model

struct Probe: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Linear probe: how much class information the frozen encoder's codes keep.",
        discussion: """
        Extracts the decoder's input for every image (the VQ-VAE's quantized vectors q, the VAE's \
        mean, the autoencoder's latent; h*w*D features per image) with the frozen model, fits a \
        softmax classifier on --train's features and `labels`, and reports its accuracy on --test. \
        Features are standardised with the training set's mean and deviation. Runs as one process.
        """)

    @Option(help: "Checkpoint (HDF5) whose encoder is probed.")
    var checkpoint: String
    @Option(help: "HDF5 dataset with `images` and `labels` to fit the classifier on.")
    var train: String
    @Option(help: "HDF5 dataset with `images` and `labels` to measure accuracy on.")
    var test: String
    @Option(help: "Passes over the training features.")
    var epochs = 30
    @Option(name: .customLong("batch"), help: "Images per encoder pass and per classifier minibatch.")
    var batch = 128
    @Option(help: "Adam learning rate of the classifier.")
    var lr: Float = 1e-3
    @Option(name: .customLong("weight-decay"), help: "L2 penalty on the classifier's weights.")
    var weightDecay: Float = 1e-4
    @Option(help: "Seed of the minibatch order.")
    var seed: UInt64 = 1
    @Option(help: "Use only the first N images of each dataset (0 = all).")
    var limit = 0
    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    func run() throws {
        try reportingErrors {
            guard epochs >= 1, batch >= 1, limit >= 0 else { throw TrainingError("--epochs and --batch must be at least 1, --limit not negative") }
            let trained = try TrainedModel(checkpoint: checkpoint, batch: batch)
            let (trainFeatures, trainLabels) = try features(trained, path: train, flag: "--train")
            let (testFeatures, testLabels) = try features(trained, path: test, flag: "--test")
            let classes = Int((trainLabels + testLabels).max() ?? 0) + 1
            let featureCount = trained.model.latentCount * trained.configuration.codeDimension
            let classifier = try SoftmaxClassifier(featureCount: featureCount, classCount: max(classes, 2))
            let started = monotonicSeconds()
            let loss = try trainFeatures.withUnsafeBufferPointer {
                try classifier.fit(features: $0.baseAddress!, labels: trainLabels, count: trainLabels.count, epochs: epochs,
                                   batch: batch, learningRate: lr, weightDecay: weightDecay, seed: seed)
            }
            func accuracy(_ features: [Float], _ labels: [Int32]) -> Double {
                let predicted = features.withUnsafeBufferPointer { classifier.predict(features: $0.baseAddress!, count: labels.count) }
                return Double(zip(predicted, labels).filter { $0 == Int($1) }.count) / Double(labels.count)
            }
            let trainAccuracy = accuracy(trainFeatures, trainLabels), testAccuracy = accuracy(testFeatures, testLabels)
            let result: [String: Any] = [
                "test_accuracy": testAccuracy, "train_accuracy": trainAccuracy, "train_loss": loss, "classes": classes,
                "features": featureCount, "train_images": trainLabels.count, "test_images": testLabels.count,
                "model": trained.configuration.model.rawValue, "checkpoint": trained.path,
            ]
            if json {
                let data = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys, .withoutEscapingSlashes])
                print(String(decoding: data, as: UTF8.self))
            } else {
                print(String(format: "probe of %@ (%@): %d features per image, %d classes, %d epochs in %.1f s",
                             trained.path, trained.configuration.model.rawValue, featureCount, classes, epochs, monotonicSeconds() - started))
                print(String(format: "train accuracy %.4f (%d images, final loss %.4f)", trainAccuracy, trainLabels.count, loss))
                print(String(format: "test accuracy  %.4f (%d images)", testAccuracy, testLabels.count))
            }
        }
    }

    /// The decoder inputs `[N, h*w*D]` of a dataset's images, and its labels.
    func features(_ trained: TrainedModel, path: String, flag: String) throws -> ([Float], [Int32]) {
        let dataset = try ImageDataset(paths: [path])
        guard dataset.hasLabels else { throw TrainingError("\(flag) \(path) has no `labels` dataset; the probe needs class labels") }
        try trained.checkImageSize(height: dataset.height, width: dataset.width, channels: dataset.channels, source: "\(flag) \(path)")
        let total = limit > 0 ? min(limit, dataset.count) : dataset.count
        let model = trained.model
        let perImage = model.latentCount * trained.configuration.codeDimension
        var features = [Float](repeating: 0, count: total * perImage)
        let images = FloatBuffer(count: batch * model.imageCount)
        var start = 0
        while start < total {
            let n = min(batch, total - start)
            try dataset.read(indices: Array(start..<(start + n)), into: images.pointer)
            model.forward(images: images.pointer, batch: n, training: false)
            let source = model.decoderInput
            features.withUnsafeMutableBufferPointer { ($0.baseAddress! + start * perImage).update(from: source, count: n * perImage) }
            start += n
        }
        withExtendedLifetime(images) {}
        let labels = try dataset.labels(indices: Array(0..<total))
        guard labels.allSatisfy({ $0 >= 0 && $0 < 1 << 20 }) else {
            throw TrainingError("\(flag) \(path): labels must be class numbers 0, 1, 2, ...")
        }
        return (features, labels.map { Int32($0) })
    }
}
