using TorchSharp;
using static TorchSharp.torch;

namespace Srlm.Model;

/// <summary>
/// Tensor + tensor and tensor - tensor with a scale factor that stays alive for the whole native call.
/// TorchSharp's <c>a + b</c> is <c>a.add(b, 1)</c> with an implicit Scalar whose native handle is passed
/// on while nothing keeps the Scalar object reachable, so a garbage collection during the call can
/// finalize it and free the handle under libtorch's feet (seen in CI as "toFloat: Expected false to be
/// true" from add_Tensor). The hot paths of the model use these instead.
/// </summary>
internal static class TensorMath
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
}
