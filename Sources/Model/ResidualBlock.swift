/// The residual block of spec/model.md on NHWC activations `[N, H, W, hidden]`:
/// `y = x + conv1x1(relu(conv3x3(relu(x))))`, `conv3x3` hidden -> residualHidden (padding 1),
/// `conv1x1` residualHidden -> hidden.
///
/// The block keeps `relu(x)` and `relu(conv3x3(...))` for its backward pass in buffers the
/// caller owns (`saved`), sized by `savedCount`.
public struct ResidualBlock {
    public let conv3x3: Conv2d
    public let conv1x1: Conv2d

    init(name: String, channels: Int, residualChannels: Int, parameters: ParameterStore) {
        conv3x3 = Conv2d(name: "\(name)/conv3x3", inputChannels: channels, outputChannels: residualChannels,
                         window: Window(kernel: 3, stride: 1, padding: 1), parameters: parameters)
        conv1x1 = Conv2d(name: "\(name)/conv1x1", inputChannels: residualChannels, outputChannels: channels,
                         window: Window(kernel: 1), parameters: parameters)
    }

    var channels: Int { conv3x3.inputChannels }
    var residualChannels: Int { conv3x3.outputChannels }

    /// Floats of saved activations for `positions = N*H*W`.
    func savedCount(positions: Int) -> Int { positions * (channels + residualChannels) }

    func workspaceCount(batch: Int, height: Int, width: Int) -> Int {
        conv3x3.workspaceCount(batch: batch, height: height, width: width)
    }

    /// `output = input + conv1x1(relu(conv3x3(relu(input))))`; `output` must not alias `input`.
    func forward(
        output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, saved: UnsafeMutablePointer<Float>,
        batch: Int, height: Int, width: Int,
        parameters: UnsafePointer<Float>, workspace: UnsafeMutablePointer<Float>
    ) {
        let positions = batch * height * width
        let activated = saved                              // relu(x)      [positions, channels]
        let inner = saved + positions * channels           // relu(conv3)  [positions, residualChannels]
        relu(activated, input, count: positions * channels)
        conv3x3.forward(output: inner, input: activated, batch: batch, height: height, width: width, relu: true,
                        parameters: parameters, workspace: workspace)
        conv1x1.forward(output: output, input: inner, batch: batch, height: height, width: width,
                        parameters: parameters, workspace: workspace)
        add(output, input, count: positions * channels)
    }

    /// Given `dL/doutput`, accumulates parameter gradients and WRITES `dL/dinput`.
    /// `scratch` holds `positions * residualChannels` floats; `inputGradient` must not alias `outputGradient`.
    func backward(
        inputGradient: UnsafeMutablePointer<Float>, outputGradient: UnsafePointer<Float>,
        saved: UnsafePointer<Float>, batch: Int, height: Int, width: Int,
        parameters: UnsafePointer<Float>, gradients: UnsafeMutablePointer<Float>,
        workspace: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>
    ) {
        let positions = batch * height * width
        let activated = saved
        let inner = saved + positions * channels
        conv1x1.backward(inputGradient: scratch, outputGradient: outputGradient, input: inner,
                         batch: batch, height: height, width: width,
                         parameters: parameters, gradients: gradients, workspace: workspace)
        reluBackward(scratch, scratch, output: inner, count: positions * residualChannels)
        conv3x3.backward(inputGradient: inputGradient, outputGradient: scratch, input: activated,
                         batch: batch, height: height, width: width,
                         parameters: parameters, gradients: gradients, workspace: workspace)
        reluBackward(inputGradient, inputGradient, output: activated, count: positions * channels)
        add(inputGradient, outputGradient, count: positions * channels)
    }
}
