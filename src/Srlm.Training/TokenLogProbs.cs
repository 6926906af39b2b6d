using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Srlm.Training;

/// <summary>A tokenized (prompt, completion) sequence; the completion includes the end-of-sequence token.</summary>
public sealed record TokenizedSequence(int[] Prompt, int[] Completion)
{
    public int Length => Prompt.Length + Completion.Length;
}

/// <summary>Right-padded batches with a completion mask, and per-sequence summed log-probabilities.</summary>
public static class TokenLogProbs
{
    /// <summary>
    /// Right-pads sequences into ids (B, T) and a completion mask (B, T-1) that is 1 where the label
    /// ids[:, t+1] is a completion token. Right padding keeps plain causal attention exact for every real
    /// token (pads only follow them), so no attention mask is needed.
    /// </summary>
    public static (Tensor Ids, Tensor Labels, Tensor Mask) Collate(IReadOnlyList<TokenizedSequence> seqs, int padId = 0)
    {
        int b = seqs.Count, t = seqs.Max(s => s.Length);
        if (t < 2) throw new ArgumentException("sequences need at least two tokens");
        var ids = new long[b * t];
        var mask = new float[b * (t - 1)];
        for (int i = 0; i < b; i++)
        {
            var s = seqs[i];
            int p = s.Prompt.Length;
            if (p == 0) throw new ArgumentException("a sequence needs at least one prompt token (e.g. BOS) before its completion");
            var row = i * t;
            for (int j = 0; j < t; j++)
                ids[row + j] = j < p ? s.Prompt[j] : j < s.Length ? s.Completion[j - p] : padId;
            // label position j predicts token j+1; it is a completion token when p <= j+1 < length
            for (int j = p - 1; j < s.Length - 1; j++) mask[i * (t - 1) + j] = 1f;
        }
        var idsT = tensor(ids, new long[] { b, t });
        var labels = idsT.narrow(1, 1, t - 1);
        return (idsT, labels, tensor(mask, new long[] { b, t - 1 }));
    }

    /// <summary>Per-token log p(label) (B, T-1) from logits (B, T, V) of the collated ids.</summary>
    /// <remarks>The loss runs over all T positions of the contiguous logits, the last one with an ignored label, and
    /// drops that column afterwards: slicing the logits first copied all of them (and the slice's gradient was a
    /// zero-filled copy of them again), while every row's log-softmax is the same either way.</remarks>
    public static Tensor TokenLogps(Tensor logits, Tensor labels)
    {
        using var scope = NewDisposeScope();
        long b = logits.shape[0], t = logits.shape[1], v = logits.shape[2];
        const long ignored = -100;
        using var ignoredValue = ignored.ToScalar();
        var padded = cat([labels, full(b, 1, ignoredValue, ScalarType.Int64, labels.device)], 1); // (B, T)
        var flat = logits.is_contiguous() ? logits.view(b * t, v) : logits.reshape(b * t, v); // (B*T, V)
        var nll = F.cross_entropy(flat, padded.view(-1), ignore_index: ignored, reduction: nn.Reduction.None); // fused log-softmax + gather
        return nll.view(b, t).narrow(1, 0, t - 1).neg().MoveToOuterDisposeScope();
    }

    /// <summary>Summed completion log-probabilities (B) from logits (B, T, V).</summary>
    public static Tensor Summed(Tensor logits, Tensor labels, Tensor mask)
    {
        using var scope = NewDisposeScope();
        return (TokenLogps(logits, labels) * mask).sum(1).MoveToOuterDisposeScope();
    }
}
