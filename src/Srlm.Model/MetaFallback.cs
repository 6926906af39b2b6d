using F = TorchSharp.torch.nn.functional;

namespace Srlm.Model;

/// <summary>
/// The few ops of the forward, log-prob and DPO paths for which the C++ libtorch that TorchSharp ships registers no
/// kernel on libtorch's <c>meta</c> device (PyTorch registers those from Python): the embedding lookup and row
/// gathers (<c>index_select</c>, also inside the backward of the log-probs' <c>index_copy</c>), the RoPE rotation
/// (<c>roll</c>), attention (<c>scaled_dot_product_attention</c>, through <c>where</c>) and the DPO loss
/// (<c>log_sigmoid</c>).
/// </summary>
/// <remarks>
/// On meta, where tensors have shapes and a device but no values, each is computed from ops that have a meta kernel
/// and give the same shape; on every other device the op itself runs, so CPU and CUDA arithmetic is exactly what it
/// was. Meta is never a device a user can choose (SRLM_DEVICE rejects it): it exists so that tests can run the whole
/// forward, log-prob and DPO step with the model "elsewhere" and see every tensor the code creates land beside it
/// (DeviceTests). The stand-ins check their index and mask arguments' device themselves, as a GPU would, because
/// libtorch's meta shape functions for indexing and masked_fill do not.
/// </remarks>
public static class MetaFallback
{
    private static bool OnMeta(Tensor t) => t.device_type == DeviceType.META;

    /// <summary>Rows <paramref name="index"/> (N) of <paramref name="x"/> along dim 0: <c>index_select(0, index)</c>.</summary>
    public static Tensor IndexSelect(Tensor x, Tensor index) =>
        OnMeta(x) ? GatherRows(x, index) : x.index_select(0, index);

    /// <summary><paramref name="x"/> with rows <paramref name="index"/> (N) along dim 0 replaced by
    /// <paramref name="source"/>: <c>index_copy(0, index, source)</c> (its backward runs index_select).</summary>
    public static Tensor IndexCopy(Tensor x, Tensor index, Tensor source) =>
        OnMeta(x) ? PutRows(x, index, source) : x.index_copy(0, index, source);

    /// <summary>The embedding of <paramref name="ids"/> (any shape): (…, C).</summary>
    public static Tensor Embedding(TorchSharp.Modules.Embedding embedding, Tensor ids) =>
        OnMeta(ids) || OnMeta(embedding.weight!) ? GatherRows(embedding.weight!, ids) : embedding.forward(ids);

    /// <summary><c>x.roll(shift, -1)</c>.</summary>
    public static Tensor Roll(Tensor x, long shift) => OnMeta(x) ? RollByParts(x, shift) : x.roll(shift, -1);

    /// <summary><c>log σ(x)</c>.</summary>
    public static Tensor LogSigmoid(Tensor x) => OnMeta(x) ? LogSigmoidByParts(x) : F.logsigmoid(x);

    /// <summary>
    /// <c>scaled_dot_product_attention(q, k, v, mask, dropout, causal)</c> for q (B, H, T, D) and k, v (B, H, S, D);
    /// <paramref name="mask"/> bool (B|1, 1, T, S), true = may attend.
    /// </summary>
    public static Tensor Attention(Tensor q, Tensor k, Tensor v, Tensor? mask, double dropout, bool causal)
        => OnMeta(q) ? AttentionByParts(q, k, v, mask, causal) : F.scaled_dot_product_attention(q, k, v, mask, dropout, causal);

    /// <summary>Attention as softmax(q kᵀ / √D + mask) v, from ops that have meta kernels: the meta stand-in of
    /// scaled_dot_product_attention (tests compare the two on the CPU). Without dropout: meta has no values to drop.</summary>
    public static Tensor AttentionByParts(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal)
    {
        using var scope = NewDisposeScope();
        long t = q.shape[^2], s = k.shape[^2];
        using var scale = (1.0 / Math.Sqrt(q.shape[^1])).ToScalar();
        var scores = q.matmul(k.transpose(-2, -1)).mul_(scale); // (B, H, T, S)
        if (causal && mask is null)
            mask = ones(t, s, ScalarType.Bool, device: q.device).tril(); // libtorch's is_causal: query i sees keys 0..i
        if (mask is not null)
        {
            // bool -> 0 where allowed, -1e30 where not; an elementwise add, so a mask on another device is an error.
            using var one = 1.ToScalar();
            using var big = 1e30.ToScalar();
            var additive = mask.to(scores.dtype).sub(one).mul_(big);
            scores = TensorMath.Add(scores, additive);
        }
        return scores.softmax(-1).matmul(v).MoveToOuterDisposeScope();
    }

    /// <summary><c>source[index]</c> along dim 0 (index of any shape), checking the index's device as index_select
    /// does on a GPU; the meta stand-in of index_select and of the embedding lookup.</summary>
    public static Tensor GatherRows(Tensor source, Tensor index)
    {
        SameDevice(source, index);
        return source[index];
    }

    private static void SameDevice(Tensor x, Tensor index)
    {
        if (index.device_type != x.device_type || index.device_index != x.device_index)
            throw new ArgumentException($"Expected all tensors to be on the same device, but found at least two devices, {x.device} and {index.device}!");
    }

    /// <summary>A copy of <c>x</c> with <c>[index] = source</c> (an index_put, whose backward indexes), checking the
    /// index's device; the meta stand-in of index_copy along dim 0.</summary>
    public static Tensor PutRows(Tensor x, Tensor index, Tensor source)
    {
        SameDevice(x, index);
        return x.clone().index_put_(source, [index], false);
    }

    /// <summary><c>x.roll(shift, -1)</c> as a concatenation of the two slices; the meta stand-in of roll.</summary>
    public static Tensor RollByParts(Tensor x, long shift)
    {
        long d = x.shape[^1], s = ((shift % d) + d) % d;
        using var tail = x.narrow(-1, d - s, s);
        using var head = x.narrow(-1, 0, d - s);
        return cat([tail, head], -1);
    }

    /// <summary><c>log σ(x) = -softplus(-x)</c>; the meta stand-in of log_sigmoid (it rounds differently, so it is not
    /// used where values exist).</summary>
    public static Tensor LogSigmoidByParts(Tensor x)
    {
        using var minus = x.neg();
        using var softplus = F.softplus(minus);
        return softplus.neg();
    }
}
