namespace Srlm.Model;

/// <summary>Rotary position embeddings (HF "rotate_half" layout) with the scaling kinds of HF configs.
/// cos/sin are computed once per forward and handed to every layer.</summary>
public static class Rope
{
    /// <summary>Inverse frequencies (D/2) as doubles, and the attention scale yarn applies to cos/sin.</summary>
    public static (double[] InvFreq, double AttentionScale) Frequencies(LlamaConfig c, long seqLen)
    {
        int d = c.HeadDimension;
        var s = c.RopeScaling;
        double theta = c.RopeTheta;
        if (s.Kind == "dynamic" && seqLen > c.MaxPositionEmbeddings)
        {
            // NTK-aware: grow the base with the sequence length (HF _compute_dynamic_ntk_parameters).
            theta *= Math.Pow(s.Factor * seqLen / c.MaxPositionEmbeddings - (s.Factor - 1), d / (d - 2.0));
        }
        var inv = new double[d / 2];
        for (int i = 0; i < inv.Length; i++) inv[i] = 1.0 / Math.Pow(theta, 2.0 * i / d);
        double scale = 1.0;
        switch (s.Kind)
        {
            case "linear":
                for (int i = 0; i < inv.Length; i++) inv[i] /= s.Factor;
                break;
            case "llama3":
            {
                double orig = s.OriginalMaxPositionEmbeddings ?? 8192;
                double lowWave = orig / s.LowFreqFactor, highWave = orig / s.HighFreqFactor;
                for (int i = 0; i < inv.Length; i++)
                {
                    double wave = 2 * Math.PI / inv[i];
                    if (wave > lowWave) inv[i] /= s.Factor;
                    else if (wave >= highWave)
                    {
                        double smooth = (orig / wave - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
                        inv[i] = (1 - smooth) * inv[i] / s.Factor + smooth * inv[i];
                    }
                }
                break;
            }
            case "yarn":
            {
                double orig = s.OriginalMaxPositionEmbeddings ?? c.MaxPositionEmbeddings;
                double Dim(double rot) => d * Math.Log(orig / (rot * 2 * Math.PI)) / (2 * Math.Log(c.RopeTheta));
                double low = Math.Max(Math.Floor(Dim(s.BetaFast)), 0), high = Math.Min(Math.Ceiling(Dim(s.BetaSlow)), d - 1);
                if (low == high) high += 0.001;
                for (int i = 0; i < inv.Length; i++)
                {
                    double ramp = Math.Clamp((i - low) / (high - low), 0, 1);
                    double extrapolation = 1 - ramp; // 1 keeps the original frequency
                    inv[i] = inv[i] / s.Factor * (1 - extrapolation) + inv[i] * extrapolation;
                }
                scale = s.AttentionFactor ?? (s.Factor <= 1 ? 1.0 : 0.1 * Math.Log(s.Factor) + 1.0);
                break;
            }
        }
        return (inv, scale);
    }

    /// <summary>cos and sin for the given positions: (B, 1, T, D) each, in <paramref name="dtype"/>.</summary>
    public static (Tensor Cos, Tensor Sin) CosSin(LlamaConfig c, Tensor positionIds /* (B, T) */, ScalarType dtype, long maxPosition)
    {
        var (invFreq, scale) = Frequencies(c, maxPosition);
        using var scope = NewDisposeScope();
        var inv = tensor(invFreq.Select(x => (float)x).ToArray(), device: positionIds.device);          // (D/2)
        var freqs = positionIds.to(ScalarType.Float32).unsqueeze(-1) * inv;                             // (B, T, D/2)
        var emb = cat([freqs, freqs], -1).unsqueeze(1);                                                  // (B, 1, T, D)
        var cos = emb.cos(); var sin = emb.sin();
        if (scale != 1.0) { cos = cos * scale; sin = sin * scale; }
        return (cos.to(dtype).MoveToOuterDisposeScope(), sin.to(dtype).MoveToOuterDisposeScope());
    }

    /// <summary>sin with its first half negated, so that rotate_half(x) * sin == roll(x, D/2) * SignedSin(sin):
    /// rotate_half(x) = [-x2, x1] and roll(x, D/2) = [x2, x1]. Computed once per forward, used by every layer.</summary>
    public static Tensor SignedSin(Tensor sin)
    {
        long half = sin.shape[^1] / 2;
        using var first = sin.narrow(-1, 0, half);
        using var second = sin.narrow(-1, half, half);
        using var negated = first.neg();
        return cat([negated, second], -1);
    }

    /// <summary>x * cos + rotate_half(x) * sin for x (B, H, T, D), given <paramref name="signedSin"/> = SignedSin(sin):
    /// one roll, one product and one fused multiply-add (forward and backward), where rotate_half took a negation,
    /// a concatenation and slices whose gradients are zero-filled copies.</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor signedSin)
    {
        long half = x.shape[^1] / 2;
        using var rolled = MetaFallback.Roll(x, half); // [x2, x1]
        using var one = 1.ToScalar();
        var y = x.mul(cos);
        return y.addcmul_(rolled, signedSin, one);
    }
}
