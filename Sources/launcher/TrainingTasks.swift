import ArgumentParser

/// `vqvae train --task NAME`: built-in defaults for restoration tasks. A preset only sets flags,
/// laid under the run file and the command line (docs/usage.md, "Run files and task presets").
struct TrainingTask: ExpressibleByArgument {
    /// The restoration model the tasks train: the residual autoencoder with a short warmup and a
    /// cosine decay (plain for deblurring, as measured there). The gradient clip guards the rate of
    /// 2e-3: without it, one denoising run that held that rate for thousands of steps (a cosine over
    /// a long `--steps` with a `--time-budget`) lost every ReLU of its correction path near step
    /// 2,000 and returned its noisy input from then on; clipped at 0.05 (about 5x the usual
    /// gradient norm) the same run trained on to 30.50 dB on the benchmark's photos.
    static let restoration = "--model ae --down 1 --residual --lr 2e-3 --lr-schedule cosine --warmup-steps 100 --clip-grad-norm 0.05"
    /// The denoisers add a deeper, wider full-resolution correction path: the recipe that passed
    /// BM3D on the six held-out photos (bench/restoration.md, denoise-deep and blind-deep).
    static let denoiser = restoration + " --detail-layers 6 --detail-channels 64"

    /// Every preset and the flags it sets, in the order `--help` lists them: adding a preset is
    /// adding a line.
    static let all: KeyValuePairs<String, String> = [
        "denoise": denoiser + " --corrupt noise:0.1",
        // Noise levels log-uniform over 0.02...0.2 and the loss weighted by each image's damage, so
        // the light levels get their share; the weight EMA restores (bench/restoration.md:
        // blind-weighted, within 0.3 dB of BM3D at sigma 0.05 with --ensemble; blind-tone, the same
        // on patches with clipped channels, past BM3D at sigma 0.05, 0.1 and 0.2).
        "blind-denoise": denoiser + " --corrupt noise:0.02~0.2 --loss-weight damage --weight-ema 0.999",
        // Trained on blurred images rounded to 8 bits, as saved photos are: without the rounding
        // the model amplified it on whole photos (bench/restoration.md, deblur-task against deblur-8bit).
        "deblur": restoration + " --corrupt blur:2,quantize:255",
        // The inpainter measured best: deeper (a wider view for large holes), with skips, reading
        // the mask, correcting a smooth fill of the holes (inpaint-smooth: +1.1 and +1.0 dB on
        // holes and strokes over the same with the holes blanked), the plate fill's stiffer
        // shape, each image's error through a log (inpaint-plate-log: the best single model,
        // +0.13 and +0.04 dB over inpaint-plate-more in 1,800 s on the same machine), restored with
        // its weight average, at the restoration models' rate and schedule (bench/restoration.md;
        // trained there on whole photos with --crop 64 --crops-per-image 64 --augment dihedral).
        "inpaint": "--model ae --down 3 --residual --skips --mask-channel --hole-fill plate --loss-weight log --lr 2e-3 --lr-schedule cosine --warmup-steps 100 --clip-grad-norm 0.05 --weight-ema 0.999 --corrupt holes:8",
    ]

    let name: String
    /// The flags the preset sets, as on a command line.
    let flags: [String]

    init?(argument: String) {
        guard let preset = Self.all.first(where: { $0.key == argument }) else { return nil }
        name = preset.key
        flags = preset.value.split(separator: " ").map(String.init)
    }

    static var allValueStrings: [String] { all.map(\.key) }

    /// One line per preset for `vqvae train --help`.
    static var help: String {
        all.map { "\($0.key): \($0.value)" }.joined(separator: "\n")
    }
}
