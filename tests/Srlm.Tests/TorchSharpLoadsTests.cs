namespace Srlm.Tests;

public class TorchSharpLoadsTests
{
    [Fact]
    public void A_tensor_op_runs_on_this_machine()
    {
        // Fails with TorchSharp's "doesn't contain a reference to libtorch-cpu-linux-x64" when the
        // native fix in build/TorchSharpNativeFix.targets did not run on this output.
        using var a = tensor(new float[] { 1, 2, 3, 4 }).reshape(2, 2);
        using var b = a.matmul(a);
        Assert.Equal(new float[] { 7, 10, 15, 22 }, b.data<float>().ToArray());
    }
}
