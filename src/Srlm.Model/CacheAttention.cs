using TorchSharp;
using static TorchSharp.torch;

namespace Srlm.Model;

/// <summary>
/// Attention of every query of an inference forward with a KV cache (a prefill, or a decode step libtorch runs),
/// each query computed on its own by <see cref="DecodeKernel.Attend"/> over the cached slots it may see, in slot order.
/// </summary>
/// <remarks>
/// Why not libtorch's scaled_dot_product_attention here: on the CPU it walks the keys in fixed-size blocks with a
/// running maximum, so a query's output changes in the last bits with the number of slots and with where padding sits
/// (measured: the same prompt prefilled whole and as prefix then rest gives keys that differ from layer 1 on). A
/// token's keys and values must be the same bits however its prompt was laid out: a shared prefix computed once
/// (<see cref="SharedPrefill"/>) must give the texts a whole-prompt prefill gives. Here a masked slot adds nothing to
/// any sum and the valid ones are summed in order, so the layout does not matter. Training and log-probs (no cache, or
/// with autograd) keep libtorch's kernel.
/// </remarks>
internal static unsafe class CacheAttention
{
    /// <summary>Whether the forward's attention may run here: CPU tensors, no autograd, a cache dtype the kernel reads.</summary>
    internal static bool Applies(Tensor q, KvCache cache)
    {
        if (is_grad_enabled() || q.device_type != DeviceType.CPU) return false;
        var (k, _) = cache.Layer(0);
        return k.device_type == DeviceType.CPU && DecodeKernel.SupportsCache(k.dtype);
    }

    /// <summary>
    /// Attention output (B, T, H*D) in q's dtype. <paramref name="q"/> (B, H, T, D) has its rotary embedding; the cache
    /// of <paramref name="layer"/> already holds this forward's keys and values at slots [past, past + T).
    /// <paramref name="mask"/>: bool, broadcastable to (B, 1, T, past + T), true = may attend; null = causal (query i
    /// sees slots 0..past + i).
    /// </summary>
    internal static Tensor Run(Tensor q, KvCache cache, int layer, Tensor? mask, long past)
    {
        using var scope = NewDisposeScope();
        int b = (int)q.shape[0], heads = (int)q.shape[1], t = (int)q.shape[2], d = (int)q.shape[3];
        long slots = past + t;
        var (keys, values) = cache.Layer(layer); // (B, KvH, Capacity, D), contiguous
        int kvHeads = (int)keys.shape[1];
        long capacity = keys.shape[2];
        var cacheType = keys.dtype;
        long rowBytes = kvHeads * capacity * d * keys.ElementSize;

        var queries = q.transpose(1, 2).to(ScalarType.Float32).contiguous();     // (B, T, H, D)
        var output = empty([b, t, heads * d], ScalarType.Float32, device: CPU);  // (B, T, H*D)
        var allowed = mask?.to(ScalarType.Bool).expand(b, 1, t, slots).contiguous(); // (B, 1, T, S)

        nint qAt = DecodeKernel.Data(queries), outAt = DecodeKernel.Data(output);
        nint kAt = DecodeKernel.Data(keys), vAt = DecodeKernel.Data(values);
        nint maskAt = allowed is null ? 0 : DecodeKernel.Data(allowed);
        int rows = b * t;
        int threads = Math.Max(1, get_num_threads());

        void Span(int from, int to, float[] scores, float[] kbuf)
        {
            fixed (float* ps = scores, pk = kbuf)
                for (int row = from; row < to; row++)
                {
                    int bi = row / t, i = row % t;
                    bool* valid = maskAt == 0 ? null : (bool*)maskAt + (long)row * slots;
                    DecodeKernel.Attend((float*)qAt + (long)row * heads * d, (float*)outAt + (long)row * heads * d,
                        kAt + (nint)(bi * rowBytes), vAt + (nint)(bi * rowBytes), cacheType, heads, kvHeads, d,
                        capacity, (int)(past + i + 1), valid, ps, pk);
                }
        }

        if (threads == 1 || rows == 1) Span(0, rows, new float[slots], new float[d]);
        else
        {
            // Small chunks, so a thread that was descheduled does not hold the others up; a row's arithmetic is the same on any thread.
            int parts = Math.Min(rows, threads * 8);
            Parallel.For(0, parts, new ParallelOptions { MaxDegreeOfParallelism = threads },
                () => (new float[slots], new float[d]),
                (part, _, scratch) =>
                {
                    Span((int)((long)rows * part / parts), (int)((long)rows * (part + 1) / parts), scratch.Item1, scratch.Item2);
                    return scratch;
                },
                _ => { });
        }
        GC.KeepAlive(queries);
        GC.KeepAlive(allowed);
        var result = q.dtype == ScalarType.Float32 ? output : output.to(q.dtype);
        return result.MoveToOuterDisposeScope();
    }
}
