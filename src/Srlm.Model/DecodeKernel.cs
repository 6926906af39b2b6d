// Over 300 lines on purpose: one kernel: the step, its vector products and their bf16 twins stay together so the one summation order every row count shares is visible.
namespace Srlm.Model;

/// <summary>
/// One decode step of a few rows (each adds one token) computed in C# directly on the weights' memory, the way
/// llama2.c's run.c does it: every weight is read once per step by a vectorised matrix-vector product with float32
/// accumulation, split by rows over the libtorch thread count; norms, rotary embeddings, attention over the KV cache
/// and SwiGLU run on float32 activations in between. Weights may be float32 or bfloat16 (a bfloat16 value is the high
/// half of a float32, so widening is a shift); the KV cache may be float32, bfloat16 or float16.
/// </summary>
/// <remarks>
/// Why not libtorch for this step: at batch 1 a decode step is ~500 small libtorch calls around 85 matrix-vector
/// products, and libtorch 2.10's bfloat16 matrix-vector kernel reads at about half the speed of its float32 one here.
/// The step computes what <see cref="LlamaForCausalLM.Forward"/> computes (same formulas, float32 everywhere except
/// the stored weights and cache); tests compare the two.
/// The hot methods are marked AggressiveOptimization. Left to tiered compilation, a short generation ran much of its
/// time in unoptimised code (tier 0 and on-stack replacement); measured on the bench's 134M model in bfloat16, the
/// products took 17 ms per token that way against 4.8-7 ms compiled at once, which is what made the bench's bfloat16
/// figures swing between runs.
/// </remarks>
internal static unsafe class DecodeKernel
{
    [DllImport("LibTorchSharp")]
    private static extern IntPtr THSTensor_data(IntPtr handle);

    /// <summary>The address of a contiguous CPU tensor's first element.</summary>
    internal static nint Data(Tensor t) => THSTensor_data(t.Handle);

    /// <summary>A (Rows, Cols) row-major weight in float32 or bfloat16, optionally with a float32-convertible bias.</summary>
    internal readonly record struct Matrix(nint Ptr, bool Bf16, int Rows, int Cols, nint Bias, bool BiasBf16)
    {
        public static Matrix Of(Tensor w, Tensor? bias = null) => new(Data(w), w.dtype == ScalarType.BFloat16, (int)w.shape[0], (int)w.shape[1],
            bias is null ? 0 : Data(bias), bias is not null && bias.dtype == ScalarType.BFloat16);
    }

    /// <summary>Weight dtypes the kernel reads.</summary>
    internal static bool SupportsWeights(ScalarType t) => t is ScalarType.Float32 or ScalarType.BFloat16;

    /// <summary>Cache dtypes the kernel reads and writes.</summary>
    internal static bool SupportsCache(ScalarType t) => t is ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16;

    // ---------------------------------------------------------------- matrix-vector products

    /// <summary>y[b, n] = sum_k W[n, k] x[b, k] (+ bias[n]) for several matrices at once, rows split over the threads.
    /// x (B, Cols) and y (B, Rows) are float32 and row-major.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void MatVec(ReadOnlySpan<(Matrix W, nint X, nint Y)> jobs, int batch, int threads)
    {
        long total = 0;
        foreach (var j in jobs) total += j.W.Rows;
        if (threads <= 1 || total < 64)
        {
            foreach (var j in jobs) Rows(j.W, (float*)j.X, (float*)j.Y, batch, 0, j.W.Rows);
            return;
        }
        var copy = jobs.ToArray();
        // Chunks a little smaller than an even split, so a thread that was descheduled does not hold the others up.
        int parts = threads * 4;
        Parallel.For(0, parts, new ParallelOptions { MaxDegreeOfParallelism = threads }, part =>
        {
            long from = total * part / parts, to = total * (part + 1) / parts;
            long offset = 0;
            foreach (var j in copy)
            {
                long lo = Math.Max(from, offset), hi = Math.Min(to, offset + j.W.Rows);
                if (lo < hi) Rows(j.W, (float*)j.X, (float*)j.Y, batch, (int)(lo - offset), (int)(hi - offset));
                offset += j.W.Rows;
            }
        });
    }

    /// <summary>Output rows [from, to) of y = W x for every input row. Two weight rows meet two input rows at a time
    /// (<see cref="Dot2x2"/>): each weight load serves two inputs and each input load two weights, so a batch of rows
    /// reads the weights once per pair instead of once per row. Every product keeps <see cref="Dot"/>'s summation
    /// order, so a row's outputs have the same bits alone and in any batch.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows(Matrix w, float* x, float* y, int batch, int from, int to)
    {
        int cols = w.Cols;
        long outStride = w.Rows;
        int n = from;
        for (; n + 1 < to; n += 2)
        {
            int b = 0;
            for (; b + 1 < batch; b += 2)
            {
                float* x0 = x + (long)b * cols, x1 = x0 + cols;
                float* y0 = y + b * outStride + n, y1 = y0 + outStride;
                if (w.Bf16)
                {
                    ushort* r0 = (ushort*)w.Ptr + (long)n * cols;
                    Dot2x2Bf16(r0, r0 + cols, x0, x1, cols, y0, y1);
                }
                else
                {
                    float* r0 = (float*)w.Ptr + (long)n * cols;
                    Dot2x2(r0, r0 + cols, x0, x1, cols, y0, y1);
                }
            }
            for (; b < batch; b++) { One(w, x, y, b, n); One(w, x, y, b, n + 1); }
            if (w.Bias != 0)
                for (int bb = 0; bb < batch; bb++) { y[bb * outStride + n] += BiasAt(w, n); y[bb * outStride + n + 1] += BiasAt(w, n + 1); }
        }
        for (; n < to; n++)
            for (int b = 0; b < batch; b++) { One(w, x, y, b, n); if (w.Bias != 0) y[b * outStride + n] += BiasAt(w, n); }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float BiasAt(Matrix w, int n) => w.BiasBf16 ? Bf16ToFloat(((ushort*)w.Bias)[n]) : ((float*)w.Bias)[n];

    /// <summary>y[b, n] = W[n] . x[b], without the bias.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void One(Matrix w, float* x, float* y, int b, int n)
    {
        int cols = w.Cols;
        float* xb = x + (long)b * cols;
        y[(long)b * w.Rows + n] = w.Bf16 ? DotBf16((ushort*)w.Ptr + (long)n * cols, xb, cols) : Dot((float*)w.Ptr + (long)n * cols, xb, cols);
    }

    /// <summary>The four products of weight rows a0, a1 with inputs b0, b1: y0[0] = a0.b0, y0[1] = a1.b0, y1[0] = a0.b1,
    /// y1[1] = a1.b1, each summed exactly as <see cref="Dot"/> sums it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Dot2x2(float* a0, float* a1, float* b0, float* b1, int n, float* y0, float* y1)
    {
        if (!Vector512.IsHardwareAccelerated || n < 64)
        {
            y0[0] = Dot(a0, b0, n); y0[1] = Dot(a1, b0, n); y1[0] = Dot(a0, b1, n); y1[1] = Dot(a1, b1, n);
            return;
        }
        // Accumulators: p = a0.b0, q = a1.b0, r = a0.b1, t = a1.b1, four lanes each as in Dot.
        Vector512<float> p0 = default, p1 = default, p2 = default, p3 = default, q0 = default, q1 = default, q2 = default, q3 = default;
        Vector512<float> r0 = default, r1 = default, r2 = default, r3 = default, t0 = default, t1 = default, t2 = default, t3 = default;
        int k = 0;
        for (; k + 64 <= n; k += 64)
        {
            var u0 = Vector512.Load(b0 + k); var v0 = Vector512.Load(b1 + k);
            var w = Vector512.Load(a0 + k); var z = Vector512.Load(a1 + k);
            p0 = Vector512.FusedMultiplyAdd(w, u0, p0); q0 = Vector512.FusedMultiplyAdd(z, u0, q0);
            r0 = Vector512.FusedMultiplyAdd(w, v0, r0); t0 = Vector512.FusedMultiplyAdd(z, v0, t0);
            u0 = Vector512.Load(b0 + k + 16); v0 = Vector512.Load(b1 + k + 16);
            w = Vector512.Load(a0 + k + 16); z = Vector512.Load(a1 + k + 16);
            p1 = Vector512.FusedMultiplyAdd(w, u0, p1); q1 = Vector512.FusedMultiplyAdd(z, u0, q1);
            r1 = Vector512.FusedMultiplyAdd(w, v0, r1); t1 = Vector512.FusedMultiplyAdd(z, v0, t1);
            u0 = Vector512.Load(b0 + k + 32); v0 = Vector512.Load(b1 + k + 32);
            w = Vector512.Load(a0 + k + 32); z = Vector512.Load(a1 + k + 32);
            p2 = Vector512.FusedMultiplyAdd(w, u0, p2); q2 = Vector512.FusedMultiplyAdd(z, u0, q2);
            r2 = Vector512.FusedMultiplyAdd(w, v0, r2); t2 = Vector512.FusedMultiplyAdd(z, v0, t2);
            u0 = Vector512.Load(b0 + k + 48); v0 = Vector512.Load(b1 + k + 48);
            w = Vector512.Load(a0 + k + 48); z = Vector512.Load(a1 + k + 48);
            p3 = Vector512.FusedMultiplyAdd(w, u0, p3); q3 = Vector512.FusedMultiplyAdd(z, u0, q3);
            r3 = Vector512.FusedMultiplyAdd(w, v0, r3); t3 = Vector512.FusedMultiplyAdd(z, v0, t3);
        }
        for (; k + 16 <= n; k += 16)
        {
            var u0 = Vector512.Load(b0 + k); var v0 = Vector512.Load(b1 + k);
            var w = Vector512.Load(a0 + k); var z = Vector512.Load(a1 + k);
            p0 = Vector512.FusedMultiplyAdd(w, u0, p0); q0 = Vector512.FusedMultiplyAdd(z, u0, q0);
            r0 = Vector512.FusedMultiplyAdd(w, v0, r0); t0 = Vector512.FusedMultiplyAdd(z, v0, t0);
        }
        float sp = Vector512.Sum((p0 + p1) + (p2 + p3)), sq = Vector512.Sum((q0 + q1) + (q2 + q3));
        float sr = Vector512.Sum((r0 + r1) + (r2 + r3)), st = Vector512.Sum((t0 + t1) + (t2 + t3));
        for (; k < n; k++)
        {
            sp += a0[k] * b0[k]; sq += a1[k] * b0[k]; sr += a0[k] * b1[k]; st += a1[k] * b1[k];
        }
        y0[0] = sp; y0[1] = sq; y1[0] = sr; y1[1] = st;
    }

    /// <summary><see cref="Dot2x2"/> for bfloat16 weight rows, each product summed exactly as <see cref="DotBf16"/> sums it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Dot2x2Bf16(ushort* a0, ushort* a1, float* b0, float* b1, int n, float* y0, float* y1)
    {
        if (!Vector512.IsHardwareAccelerated || n < 64)
        {
            y0[0] = DotBf16(a0, b0, n); y0[1] = DotBf16(a1, b0, n); y1[0] = DotBf16(a0, b1, n); y1[1] = DotBf16(a1, b1, n);
            return;
        }
        Vector512<float> p0 = default, p1 = default, p2 = default, p3 = default, q0 = default, q1 = default, q2 = default, q3 = default;
        Vector512<float> r0 = default, r1 = default, r2 = default, r3 = default, t0 = default, t1 = default, t2 = default, t3 = default;
        int k = 0;
        for (; k + 64 <= n; k += 64)
        {
            var wa = Vector512.Load(a0 + k); var za = Vector512.Load(a1 + k);
            var w = Widen(Vector512.WidenLower(wa)); var z = Widen(Vector512.WidenLower(za));
            var u0 = Vector512.Load(b0 + k); var v0 = Vector512.Load(b1 + k);
            p0 = Vector512.FusedMultiplyAdd(w, u0, p0); q0 = Vector512.FusedMultiplyAdd(z, u0, q0);
            r0 = Vector512.FusedMultiplyAdd(w, v0, r0); t0 = Vector512.FusedMultiplyAdd(z, v0, t0);
            w = Widen(Vector512.WidenUpper(wa)); z = Widen(Vector512.WidenUpper(za));
            u0 = Vector512.Load(b0 + k + 16); v0 = Vector512.Load(b1 + k + 16);
            p1 = Vector512.FusedMultiplyAdd(w, u0, p1); q1 = Vector512.FusedMultiplyAdd(z, u0, q1);
            r1 = Vector512.FusedMultiplyAdd(w, v0, r1); t1 = Vector512.FusedMultiplyAdd(z, v0, t1);
            wa = Vector512.Load(a0 + k + 32); za = Vector512.Load(a1 + k + 32);
            w = Widen(Vector512.WidenLower(wa)); z = Widen(Vector512.WidenLower(za));
            u0 = Vector512.Load(b0 + k + 32); v0 = Vector512.Load(b1 + k + 32);
            p2 = Vector512.FusedMultiplyAdd(w, u0, p2); q2 = Vector512.FusedMultiplyAdd(z, u0, q2);
            r2 = Vector512.FusedMultiplyAdd(w, v0, r2); t2 = Vector512.FusedMultiplyAdd(z, v0, t2);
            w = Widen(Vector512.WidenUpper(wa)); z = Widen(Vector512.WidenUpper(za));
            u0 = Vector512.Load(b0 + k + 48); v0 = Vector512.Load(b1 + k + 48);
            p3 = Vector512.FusedMultiplyAdd(w, u0, p3); q3 = Vector512.FusedMultiplyAdd(z, u0, q3);
            r3 = Vector512.FusedMultiplyAdd(w, v0, r3); t3 = Vector512.FusedMultiplyAdd(z, v0, t3);
        }
        float sp = Vector512.Sum((p0 + p1) + (p2 + p3)), sq = Vector512.Sum((q0 + q1) + (q2 + q3));
        float sr = Vector512.Sum((r0 + r1) + (r2 + r3)), st = Vector512.Sum((t0 + t1) + (t2 + t3));
        for (; k < n; k++)
        {
            float wa = Bf16ToFloat(a0[k]), za = Bf16ToFloat(a1[k]);
            sp += wa * b0[k]; sq += za * b0[k]; sr += wa * b1[k]; st += za * b1[k];
        }
        y0[0] = sp; y0[1] = sq; y1[0] = sr; y1[1] = st;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Bf16ToFloat(ushort v) => BitConverter.Int32BitsToSingle(v << 16);

    /// <summary>bfloat16 by round-to-nearest-even, as libtorch converts (NaN stays NaN).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static ushort FloatToBf16(float f)
    {
        uint bits = BitConverter.SingleToUInt32Bits(f);
        if (float.IsNaN(f)) return (ushort)((bits >> 16) | 0x40);
        return (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float Dot(float* a, float* b, int n)
    {
        int k = 0;
        float sum = 0;
        if (Vector512.IsHardwareAccelerated && n >= 64)
        {
            Vector512<float> s0 = default, s1 = default, s2 = default, s3 = default;
            for (; k + 64 <= n; k += 64)
            {
                s0 = Vector512.FusedMultiplyAdd(Vector512.Load(a + k), Vector512.Load(b + k), s0);
                s1 = Vector512.FusedMultiplyAdd(Vector512.Load(a + k + 16), Vector512.Load(b + k + 16), s1);
                s2 = Vector512.FusedMultiplyAdd(Vector512.Load(a + k + 32), Vector512.Load(b + k + 32), s2);
                s3 = Vector512.FusedMultiplyAdd(Vector512.Load(a + k + 48), Vector512.Load(b + k + 48), s3);
            }
            for (; k + 16 <= n; k += 16) s0 = Vector512.FusedMultiplyAdd(Vector512.Load(a + k), Vector512.Load(b + k), s0);
            sum = Vector512.Sum((s0 + s1) + (s2 + s3));
        }
        else if (Vector256.IsHardwareAccelerated && n >= 32)
        {
            Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default;
            for (; k + 32 <= n; k += 32)
            {
                s0 = Vector256.FusedMultiplyAdd(Vector256.Load(a + k), Vector256.Load(b + k), s0);
                s1 = Vector256.FusedMultiplyAdd(Vector256.Load(a + k + 8), Vector256.Load(b + k + 8), s1);
                s2 = Vector256.FusedMultiplyAdd(Vector256.Load(a + k + 16), Vector256.Load(b + k + 16), s2);
                s3 = Vector256.FusedMultiplyAdd(Vector256.Load(a + k + 24), Vector256.Load(b + k + 24), s3);
            }
            sum = Vector256.Sum((s0 + s1) + (s2 + s3));
        }
        for (; k < n; k++) sum += a[k] * b[k];
        return sum;
    }

    /// <summary>A bfloat16 row times a float32 vector, accumulated in float32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float DotBf16(ushort* a, float* b, int n)
    {
        int k = 0;
        float sum = 0;
        if (Vector512.IsHardwareAccelerated && n >= 64)
        {
            Vector512<float> s0 = default, s1 = default, s2 = default, s3 = default;
            for (; k + 64 <= n; k += 64)
            {
                var w0 = Vector512.Load(a + k);      // 32 bfloat16
                var w1 = Vector512.Load(a + k + 32);
                s0 = Vector512.FusedMultiplyAdd(Widen(Vector512.WidenLower(w0)), Vector512.Load(b + k), s0);
                s1 = Vector512.FusedMultiplyAdd(Widen(Vector512.WidenUpper(w0)), Vector512.Load(b + k + 16), s1);
                s2 = Vector512.FusedMultiplyAdd(Widen(Vector512.WidenLower(w1)), Vector512.Load(b + k + 32), s2);
                s3 = Vector512.FusedMultiplyAdd(Widen(Vector512.WidenUpper(w1)), Vector512.Load(b + k + 48), s3);
            }
            sum = Vector512.Sum((s0 + s1) + (s2 + s3));
        }
        else if (Vector256.IsHardwareAccelerated && n >= 32)
        {
            Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default;
            for (; k + 32 <= n; k += 32)
            {
                var w0 = Vector256.Load(a + k);
                var w1 = Vector256.Load(a + k + 16);
                s0 = Vector256.FusedMultiplyAdd(Widen(Vector256.WidenLower(w0)), Vector256.Load(b + k), s0);
                s1 = Vector256.FusedMultiplyAdd(Widen(Vector256.WidenUpper(w0)), Vector256.Load(b + k + 8), s1);
                s2 = Vector256.FusedMultiplyAdd(Widen(Vector256.WidenLower(w1)), Vector256.Load(b + k + 16), s2);
                s3 = Vector256.FusedMultiplyAdd(Widen(Vector256.WidenUpper(w1)), Vector256.Load(b + k + 24), s3);
            }
            sum = Vector256.Sum((s0 + s1) + (s2 + s3));
        }
        for (; k < n; k++) sum += Bf16ToFloat(a[k]) * b[k];
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Widen(Vector512<uint> v) => Vector512.ShiftLeft(v, 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Widen(Vector256<uint> v) => Vector256.ShiftLeft(v, 16).AsSingle();

    // ---------------------------------------------------------------- element-wise parts

    /// <summary>out = x / sqrt(mean(x^2) + eps) * weight for one row, in float32 (weight float32 or bfloat16).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void RmsNorm(float* x, float* output, int n, nint weight, bool weightBf16, float eps)
    {
        float ss = Dot(x, x, n);
        float inv = 1f / MathF.Sqrt(ss / n + eps);
        for (int i = 0; i < n; i++)
        {
            float w = weightBf16 ? Bf16ToFloat(((ushort*)weight)[i]) : ((float*)weight)[i];
            output[i] = x[i] * inv * w;
        }
    }

    /// <summary>x * cos + roll(x, D/2) * signedSin for each of <paramref name="heads"/> heads of size d (see <see cref="Rope.Apply"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Rotate(float* x, int heads, int d, float* cos, float* signedSin)
    {
        int half = d / 2;
        for (int h = 0; h < heads; h++)
        {
            float* v = x + h * d;
            for (int i = 0; i < half; i++)
            {
                float a = v[i], b = v[i + half];
                v[i] = a * cos[i] + b * signedSin[i];
                v[i + half] = b * cos[i + half] + a * signedSin[i + half];
            }
        }
    }

    internal static float Load(nint p, ScalarType t, long i) => t switch
    {
        ScalarType.Float32 => ((float*)p)[i],
        ScalarType.BFloat16 => Bf16ToFloat(((ushort*)p)[i]),
        _ => (float)((Half*)p)[i],
    };

    internal static void Store(nint p, ScalarType t, long i, float v)
    {
        switch (t)
        {
            case ScalarType.Float32: ((float*)p)[i] = v; break;
            case ScalarType.BFloat16: ((ushort*)p)[i] = FloatToBf16(v); break;
            default: ((Half*)p)[i] = (Half)v; break;
        }
    }

    /// <summary>
    /// Attention of one query row over cached keys and values (positions 0..length-1 of one sequence, all heads):
    /// softmax(q k^T / sqrt(D)) v over the positions where <paramref name="valid"/> is true (null: all).
    /// keys/values point at the sequence's (KvH, Capacity, D) block. Every sum runs over the valid positions in slot
    /// order and a masked slot adds nothing, so the result does not depend on where padding sits or how many slots
    /// follow: the prefill (<see cref="CacheAttention"/>) and the decode step both attend through here.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Attend(float* q, float* output, nint keys, nint values, ScalarType cacheType, int heads, int kvHeads, int d,
        long capacity, int length, bool* valid, float* scores, float* kbuf)
    {
        int rep = heads / kvHeads;
        float scale = 1f / MathF.Sqrt(d);
        for (int h = 0; h < heads; h++)
        {
            int kvh = h / rep;
            long block = (long)kvh * capacity * d;
            float* qh = q + h * d;
            float max = float.NegativeInfinity;
            for (int s = 0; s < length; s++)
            {
                if (valid != null && !valid[s]) { scores[s] = float.NegativeInfinity; continue; }
                float dot;
                if (cacheType == ScalarType.Float32) dot = Dot(qh, (float*)keys + block + (long)s * d, d);
                else
                {
                    WidenRow(keys, cacheType, block + (long)s * d, kbuf, d);
                    dot = Dot(qh, kbuf, d);
                }
                scores[s] = dot * scale;
                if (scores[s] > max) max = scores[s];
            }
            float sum = 0;
            for (int s = 0; s < length; s++)
            {
                float e = scores[s] == float.NegativeInfinity ? 0f : MathF.Exp(scores[s] - max);
                scores[s] = e;
                sum += e;
            }
            float* oh = output + h * d;
            new Span<float>(oh, d).Clear();
            float inv = 1f / sum;
            for (int s = 0; s < length; s++)
            {
                float p = scores[s] * inv;
                if (p == 0f) continue;
                long at = block + (long)s * d;
                float* vs = (float*)values + at;
                if (cacheType != ScalarType.Float32) { WidenRow(values, cacheType, at, kbuf, d); vs = kbuf; }
                int i = 0;
                // Multiply, then add (no fused multiply-add): the same two roundings as the scalar loop.
                if (Vector256.IsHardwareAccelerated)
                    for (; i + 8 <= d; i += 8) (Vector256.Load(oh + i) + Vector256.Create(p) * Vector256.Load(vs + i)).Store(oh + i);
                for (; i < d; i++) oh[i] += p * vs[i];
            }
        }
    }

    /// <summary>dst[i] = element at + i of a float32, bfloat16 or float16 array, for n elements (widening is exact, so
    /// the values are what <see cref="Load"/> gives one by one). bfloat16 widens 32 at a time.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void WidenRow(nint p, ScalarType t, long at, float* dst, int n)
    {
        int i = 0;
        switch (t)
        {
            case ScalarType.BFloat16:
                ushort* b = (ushort*)p + at;
                if (Vector512.IsHardwareAccelerated)
                    for (; i + 32 <= n; i += 32)
                    {
                        var w = Vector512.Load(b + i);
                        Widen(Vector512.WidenLower(w)).Store(dst + i);
                        Widen(Vector512.WidenUpper(w)).Store(dst + i + 16);
                    }
                for (; i < n; i++) dst[i] = Bf16ToFloat(b[i]);
                break;
            case ScalarType.Float16:
                Half* h = (Half*)p + at;
                for (; i < n; i++) dst[i] = (float)h[i];
                break;
            default:
                new ReadOnlySpan<float>((float*)p + at, n).CopyTo(new Span<float>(dst, n));
                break;
        }
    }
}

/// <summary>Runs <see cref="DecodeKernel"/> for a model: one new token per row, the KV cache written in place.</summary>
internal static unsafe class DecodeStep
{
    /// <summary>Most rows the kernel takes. Up to here its 2x2-blocked products beat libtorch's matrix products on the
    /// bench model (`srlm bench generate`, decode_kernel_vs_libtorch_by_rows); larger batches go to libtorch.</summary>
    internal const int MaxRows = 32;

    internal static bool Applies(LlamaForCausalLM m, Tensor inputIds, KvCache cache)
    {
        if (!m.UseDecodeKernel || m.training || is_grad_enabled()) return false;
        if (inputIds.shape[0] > MaxRows || inputIds.device_type != DeviceType.CPU) return false;
        if (m.Config.RopeScaling.Kind == "dynamic") return false;
        var head = m.HeadWeight;
        if (head.device_type != DeviceType.CPU || !DecodeKernel.SupportsWeights(head.dtype)) return false;
        var (k, _) = cache.Layer(0);
        return k.device_type == DeviceType.CPU && DecodeKernel.SupportsCache(k.dtype) && cache.Length < cache.Capacity;
    }

    /// <summary>Logits (B, 1, V) float32 of the next token of every row, after appending this step's keys and values.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static Tensor Run(LlamaForCausalLM m, Tensor inputIds, Tensor? attentionMask, Tensor? positionIds, KvCache cache)
    {
        var c = m.Config;
        int rows = (int)inputIds.shape[0];
        int C = c.HiddenSize, H = c.NumAttentionHeads, KvH = c.NumKeyValueHeads, D = c.HeadDimension, I = c.IntermediateSize, V = c.VocabSize;
        int past = (int)cache.Length, total = past + 1;
        int threads = Math.Max(1, torch.get_num_threads());

        var ids = inputIds.to(ScalarType.Int64).contiguous().data<long>().ToArray();
        bool[][]? valid = null;
        var pos = new long[rows];
        if (attentionMask is not null)
        {
            var mask = attentionMask.to(ScalarType.Int64).contiguous().data<long>().ToArray(); // (B, total)
            valid = new bool[rows][];
            for (int b = 0; b < rows; b++)
            {
                valid[b] = new bool[total];
                long count = 0;
                for (int s = 0; s < total; s++) if (valid[b][s] = mask[b * total + s] != 0) count++;
                pos[b] = Math.Max(count - 1, 0);
                valid[b][total - 1] = true; // a padded query sees itself, as the libtorch path's diagonal
            }
        }
        else for (int b = 0; b < rows; b++) pos[b] = past;
        if (positionIds is not null) pos = positionIds.to(ScalarType.Int64).contiguous().reshape(-1).data<long>().ToArray();
        long maxPos = pos.Max();
        var table = m.RopeTable(maxPos + 1, inputIds.device);
        float* rope = (float*)DecodeKernel.Data(table);

        var embed = m.Decoder.EmbedWeight;
        var embedType = embed.dtype;
        nint embedPtr = DecodeKernel.Data(embed);
        foreach (var id in ids)
            if (id < 0 || id >= embed.shape[0]) throw new ArgumentException($"token id {id} is outside the vocabulary (0..{embed.shape[0] - 1})");

        var x = new float[rows * C];
        var xn = new float[rows * C];
        var q = new float[rows * H * D];
        var k = new float[rows * KvH * D];
        var v = new float[rows * KvH * D];
        var att = new float[rows * H * D];
        var g = new float[rows * I];
        var u = new float[rows * I];
        var scores = new float[total];
        var kbuf = new float[D];
        var logits = empty([rows, 1, V], ScalarType.Float32, device: CPU); // the kernel runs only where the weights are on the CPU (Applies)
        float eps = (float)c.RmsNormEps;

        fixed (float* px = x, pxn = xn, pq = q, pk = k, pv = v, patt = att, pg = g, pu = u, pscores = scores, pkbuf = kbuf)
        {
            for (int b = 0; b < rows; b++)
                for (int i = 0; i < C; i++) px[b * C + i] = DecodeKernel.Load(embedPtr, embedType, ids[b] * C + i);

            var layers = m.Decoder.Layers;
            for (int l = 0; l < layers.Count; l++)
            {
                var layer = layers[l];
                var (wq, wk, wv, wo) = layer.Attention.Projections;
                var (gate, up, down) = layer.Mlp.Projections;
                var (keys, values) = cache.Layer(l);
                var cacheType = keys.dtype;
                nint kPtr = DecodeKernel.Data(keys), vPtr = DecodeKernel.Data(values);
                long capacity = keys.shape[2];

                Norm(layer.InputNorm, px, pxn, rows, C, eps);
                DecodeKernel.MatVec([(Of(wq), (nint)pxn, (nint)pq), (Of(wk), (nint)pxn, (nint)pk), (Of(wv), (nint)pxn, (nint)pv)], rows, threads);
                long rowBytes = (long)KvH * capacity * D * keys.ElementSize;
                // Each row appends to and attends over its own block of the cache, so rows run on separate threads,
                // each with its own scratch; a row's arithmetic is the same on any thread.
                nint ropeAt = (nint)rope, qAt = (nint)pq, kAt = (nint)pk, vAt = (nint)pv, attAt = (nint)patt;
                void AttendRow(int b, float* rowScores, float* rowK)
                {
                    float* pq = (float*)qAt, pk = (float*)kAt, pv = (float*)vAt, patt = (float*)attAt;
                    float* cos = (float*)ropeAt + pos[b] * 2 * D, sin = cos + D;
                    DecodeKernel.Rotate(pq + b * H * D, H, D, cos, sin);
                    DecodeKernel.Rotate(pk + b * KvH * D, KvH, D, cos, sin);
                    // Append this step's keys and values at position `past` of row b: (B, KvH, Capacity, D).
                    for (int h = 0; h < KvH; h++)
                    {
                        long at = ((long)(b * KvH + h) * capacity + past) * D;
                        for (int i = 0; i < D; i++)
                        {
                            DecodeKernel.Store(kPtr, cacheType, at + i, pk[(b * KvH + h) * D + i]);
                            DecodeKernel.Store(vPtr, cacheType, at + i, pv[(b * KvH + h) * D + i]);
                        }
                    }
                    fixed (bool* rowValid = valid?[b])
                        DecodeKernel.Attend(pq + b * H * D, patt + b * H * D, kPtr + (nint)(b * rowBytes), vPtr + (nint)(b * rowBytes), cacheType, H, KvH, D,
                            capacity, total, rowValid, rowScores, rowK);
                }
                if (rows == 1 || threads <= 1)
                    for (int b = 0; b < rows; b++) AttendRow(b, pscores, pkbuf);
                else
                    Parallel.For(0, rows, new ParallelOptions { MaxDegreeOfParallelism = threads },
                        () => (new float[total], new float[D]),
                        (b, _, scratch) =>
                        {
                            fixed (float* rs = scratch.Item1, rk = scratch.Item2) AttendRow(b, rs, rk);
                            return scratch;
                        },
                        _ => { });
                DecodeKernel.MatVec([(Of(wo), (nint)patt, (nint)pxn)], rows, threads);
                Add(px, pxn, rows * C);

                Norm(layer.PostAttentionNorm, px, pxn, rows, C, eps);
                DecodeKernel.MatVec([(Of(gate), (nint)pxn, (nint)pg), (Of(up), (nint)pxn, (nint)pu)], rows, threads);
                SwiGlu(pg, pu, rows * I, threads);
                DecodeKernel.MatVec([(Of(down), (nint)pg, (nint)pxn)], rows, threads);
                Add(px, pxn, rows * C);
            }
            Norm(m.Decoder.Norm, px, pxn, rows, C, eps);
            DecodeKernel.MatVec([(DecodeKernel.Matrix.Of(m.HeadWeight), (nint)pxn, DecodeKernel.Data(logits))], rows, threads);
        }
        cache.Advance(1);
        GC.KeepAlive(table);
        return logits;
    }

    private static DecodeKernel.Matrix Of(TorchSharp.Modules.Linear l) => DecodeKernel.Matrix.Of(l.weight!, l.bias);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Norm(LlamaRMSNorm norm, float* x, float* output, int rows, int n, float eps)
    {
        var w = norm.Weight;
        nint p = DecodeKernel.Data(w);
        bool bf16 = w.dtype == ScalarType.BFloat16;
        if (w.dtype != ScalarType.Float32 && !bf16) throw new InvalidOperationException($"norm weight dtype {w.dtype} is not supported by the decode kernel");
        for (int b = 0; b < rows; b++) DecodeKernel.RmsNorm(x + b * n, output + b * n, n, p, bf16, eps);
    }

    /// <summary>gate[i] = silu(gate[i]) * up[i], split over the threads when there is enough of it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SwiGlu(float* gate, float* up, int n, int threads)
    {
        static void Span(float* g, float* u, int from, int to)
        {
            for (int i = from; i < to; i++)
            {
                float a = g[i];
                g[i] = a / (1f + MathF.Exp(-a)) * u[i];
            }
        }
        if (threads <= 1 || n < 16_384) { Span(gate, up, 0, n); return; }
        nint g0 = (nint)gate, u0 = (nint)up;
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads },
            part => Span((float*)g0, (float*)u0, (int)((long)n * part / threads), (int)((long)n * (part + 1) / threads)));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Add(float* x, float* y, int n)
    {
        for (int i = 0; i < n; i++) x[i] += y[i];
    }
}
