namespace Srlm.Model;

/// <summary>
/// Attention of every query of an inference forward with a KV cache (a prefill, or a decode step libtorch runs), each
/// query computed on its own over the cached slots it may see: scores 8 keys at a time from keys laid out transposed
/// (a lane per slot, summing over the head dimension in a fixed order), then the exponentials summed and the values
/// accumulated in slot order (<see cref="DecodeKernel.Attend"/> one query at a time where 256-bit vectors are missing).
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
        int threads = Math.Max(1, get_num_threads());
        int rep = heads / kvHeads;

        if (!Vector256.IsHardwareAccelerated || d % 8 != 0)
        {
            // One query at a time through the decode kernel's attention (the same invariance, slower).
            int rows = b * t;
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
        else
        {
            // Keys transposed (D x lanes, one lane per slot) and values as float32, once per (row, kv head); then one
            // task per (row, kv head, block of queries) attends each query of the block with every head of the group.
            int lanes = (int)((slots + 7) & ~7L);
            int pairs = b * kvHeads;
            var kt = new float[(long)pairs * d * lanes];
            bool copyValues = cacheType != ScalarType.Float32;
            var vf = copyValues ? new float[(long)pairs * slots * d] : [];
            Parallel.For(0, pairs, new ParallelOptions { MaxDegreeOfParallelism = threads }, pair =>
            {
                int bi = pair / kvHeads, kvh = pair % kvHeads;
                long head = (long)kvh * capacity * d;
                nint kRow = kAt + (nint)(bi * rowBytes), vRow = vAt + (nint)(bi * rowBytes);
                fixed (float* pkt = kt, pvf = vf)
                {
                    float* dst = pkt + (long)pair * d * lanes;
                    float* key = stackalloc float[d];
                    for (int s = 0; s < slots; s++)
                    {
                        DecodeKernel.WidenRow(kRow, cacheType, head + (long)s * d, key, d);
                        for (int j = 0; j < d; j++) dst[(long)j * lanes + s] = key[j];
                    }
                    if (copyValues) DecodeKernel.WidenRow(vRow, cacheType, head, pvf + (long)pair * slots * d, checked((int)(slots * d)));
                }
            });
            const int QueryBlock = 64;
            int blocks = (t + QueryBlock - 1) / QueryBlock;
            Parallel.For(0, pairs * blocks, new ParallelOptions { MaxDegreeOfParallelism = threads },
                () => new float[lanes],
                (task, _, scores) =>
                {
                    int pair = task / blocks, block = task % blocks;
                    int bi = pair / kvHeads, kvh = pair % kvHeads;
                    int i0 = block * QueryBlock, i1 = Math.Min(t, i0 + QueryBlock);
                    fixed (float* pkt = kt, pvf = vf, ps = scores)
                    {
                        float* keysT = pkt + (long)pair * d * lanes;
                        float* vals = copyValues ? pvf + (long)pair * slots * d : (float*)(vAt + (nint)(bi * rowBytes)) + (long)kvh * capacity * d;
                        for (int i = i0; i < i1; i++)
                        {
                            int length = (int)(past + i + 1);
                            bool* valid = maskAt == 0 ? null : (bool*)maskAt + ((long)bi * t + i) * slots;
                            for (int h = kvh * rep; h < (kvh + 1) * rep; h++)
                            {
                                long at = (((long)bi * t + i) * heads + h) * d;
                                AttendQuery((float*)qAt + at, (float*)outAt + at, keysT, lanes, vals, d, length, valid, ps);
                            }
                        }
                    }
                    return scores;
                },
                _ => { });
        }
        GC.KeepAlive(queries);
        GC.KeepAlive(allowed);
        var result = q.dtype == ScalarType.Float32 ? output : output.to(q.dtype);
        return result.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// One query of one head: scores for 8 keys at a time, lane s holding q·k_s summed over the head dimension in
    /// order (so a key's score is the same bits in whatever lane it lands); softmax over the valid keys with the
    /// exponentials summed in slot order; the output accumulated key by key in slot order, a masked key adding nothing.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AttendQuery(float* q, float* output, float* kt, int lanes, float* v, int d, int length, bool* valid, float* scores)
    {
        float scale = 1f / MathF.Sqrt(d);
        var scaleV = Vector256.Create(scale);
        int s = 0;
        for (; s + 32 <= length; s += 32)
        {
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (int j = 0; j < d; j++)
            {
                var qj = Vector256.Create(q[j]);
                float* row = kt + (long)j * lanes + s;
                a0 = Vector256.FusedMultiplyAdd(qj, Vector256.Load(row), a0);
                a1 = Vector256.FusedMultiplyAdd(qj, Vector256.Load(row + 8), a1);
                a2 = Vector256.FusedMultiplyAdd(qj, Vector256.Load(row + 16), a2);
                a3 = Vector256.FusedMultiplyAdd(qj, Vector256.Load(row + 24), a3);
            }
            (a0 * scaleV).Store(scores + s);
            (a1 * scaleV).Store(scores + s + 8);
            (a2 * scaleV).Store(scores + s + 16);
            (a3 * scaleV).Store(scores + s + 24);
        }
        for (; s < length; s += 8) // the last lanes may run past length into zero-filled keys; they are never read
        {
            Vector256<float> a = default;
            for (int j = 0; j < d; j++) a = Vector256.FusedMultiplyAdd(Vector256.Create(q[j]), Vector256.Load(kt + (long)j * lanes + s), a);
            (a * scaleV).Store(scores + s);
        }

        float max = float.NegativeInfinity;
        for (int k = 0; k < length; k++)
            if ((valid == null || valid[k]) && scores[k] > max) max = scores[k];
        var maxV = Vector256.Create(max);
        for (int k = 0; k < length; k += 8) Vector256.Exp(Vector256.Load(scores + k) - maxV).Store(scores + k);
        float sum = 0;
        for (int k = 0; k < length; k++)
        {
            if (valid != null && !valid[k]) scores[k] = 0f;
            sum += scores[k];
        }
        float inv = 1f / sum;

        if (d == 64)
        {
            Vector256<float> o0 = default, o1 = default, o2 = default, o3 = default, o4 = default, o5 = default, o6 = default, o7 = default;
            for (int k = 0; k < length; k++)
            {
                float p = scores[k] * inv;
                if (p == 0f) continue;
                var pv = Vector256.Create(p);
                float* vk = v + (long)k * 64;
                // Multiply, then add (no fused multiply-add), in slot order.
                o0 += pv * Vector256.Load(vk); o1 += pv * Vector256.Load(vk + 8);
                o2 += pv * Vector256.Load(vk + 16); o3 += pv * Vector256.Load(vk + 24);
                o4 += pv * Vector256.Load(vk + 32); o5 += pv * Vector256.Load(vk + 40);
                o6 += pv * Vector256.Load(vk + 48); o7 += pv * Vector256.Load(vk + 56);
            }
            o0.Store(output); o1.Store(output + 8); o2.Store(output + 16); o3.Store(output + 24);
            o4.Store(output + 32); o5.Store(output + 40); o6.Store(output + 48); o7.Store(output + 56);
            return;
        }
        new Span<float>(output, d).Clear();
        for (int k = 0; k < length; k++)
        {
            float p = scores[k] * inv;
            if (p == 0f) continue;
            var pv = Vector256.Create(p);
            float* vk = v + (long)k * d;
            for (int j = 0; j < d; j += 8) (Vector256.Load(output + j) + pv * Vector256.Load(vk + j)).Store(output + j);
        }
    }
}
