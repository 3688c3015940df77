/// The version of `vqvae`, printed by `vqvae --version`.
public enum VQVAEVersion {
    public static let current = "0.1.0"
}
