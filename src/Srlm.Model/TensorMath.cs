namespace Srlm.Model;

/// <summary>
/// Tensor + tensor and tensor - tensor with a scale factor that stays alive for the whole native call.
/// TorchSharp's <c>a + b</c> is <c>a.add(b, 1)</c> with an implicit Scalar whose native handle is passed
/// on while nothing keeps the Scalar object reachable, so a garbage collection during the call can
/// finalize it and free the handle under libtorch's feet (seen in CI as "toFloat: Expected false to be
/// true" from add_Tensor). The hot paths of the model use these instead.
/// </summary>
public static class TensorMath
{
    public static Tensor Add(Tensor a, Tensor b)
    {
        using var one = 1.ToScalar();
        return a.add(b, one);
    }

    public static Tensor Sub(Tensor a, Tensor b)
    {
        using var minusOne = (-1).ToScalar(); // a + (-1) * b: exact, like a - b
        return a.add(b, minusOne);
    }

    /// <summary>Fewest rows an inference matrix product is given (see <see cref="Linear"/>).</summary>
    public const int MinProductRows = 16;

    /// <summary>
    /// <paramref name="layer"/> applied to <paramref name="x"/> (…, C). Without autograd a product of fewer than
    /// <see cref="MinProductRows"/> rows gets zero rows added, and only the real ones are returned: libtorch 2.10's
    /// float32 product computes a row in other bits when it has few rows (measured on the bench model's shapes: 1-3,
    /// 5-7 and 9-11 rows differ from the same row in a larger product; 12 and more agree), and a token's keys, values
    /// and logits must not depend on how many other tokens its forward holds (<see cref="SharedPrefill"/>).
    /// </summary>
    public static Tensor Linear(TorchSharp.Modules.Linear layer, Tensor x) => Linear(x, layer.weight!, layer.bias);

    /// <summary>x W^T (+ bias) with <see cref="Linear(TorchSharp.Modules.Linear, Tensor)"/>'s padding of small products.</summary>
    public static Tensor Linear(Tensor x, Tensor weight, Tensor? bias = null)
    {
        long width = x.shape[^1];
        long rows = width == 0 ? 0 : x.numel() / width;
        if (rows == 0 || rows >= MinProductRows || is_grad_enabled()) return nn.functional.linear(x, weight, bias);
        using var scope = NewDisposeScope();
        var flat = x.reshape(rows, width);
        var padded = cat([flat, zeros([MinProductRows - rows, width], x.dtype, device: x.device)], 0);
        var y = nn.functional.linear(padded, weight, bias).narrow(0, 0, rows);
        var shape = x.shape.ToArray();
        shape[^1] = y.shape[1];
        return y.reshape(shape).MoveToOuterDisposeScope();
    }
}
