/// A problem with a dataset or checkpoint file, worded for the user.
public struct DataError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
