/// An error worded for the user: one line that names the problem and what to do about it.
public protocol UserFacingError: Error, CustomStringConvertible {
    init(_ description: String)
}

/// A failure while setting up or running training (`vqvae train`).
public struct TrainingError: UserFacingError {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A failure that every rank reaches at the same point from the same reduced values (a non-finite
/// global loss, diverged ranks): rank 0 reports it once and all ranks exit together.
public struct CollectiveError: UserFacingError {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A failure of `vqvae eval`.
public struct EvaluationError: UserFacingError {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A failure of `vqvae restore`.
public struct RestorationError: UserFacingError {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A failure of `vqvae encode` or `vqvae decode`.
public struct CodeFileError: UserFacingError {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A failure of `vqvae probe`.
public struct ProbeError: UserFacingError {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A failure of `vqvae bench`.
public struct BenchmarkError: UserFacingError {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A checkpoint that cannot be used as a trained model (`TrainedModel`).
public struct ModelLoadError: UserFacingError {
    public let description: String
    public init(_ description: String) { self.description = description }
}
