using TorchSharp;
using static TorchSharp.torch;

namespace Srlm.Model;

/// <summary>Prompt+completion pairs laid out for one forward: left padded, with a mask of the completion targets.</summary>
public sealed class LogProbBatch : IDisposable
{
    /// <summary>(B, L) int64: prompt then completion, left padded.</summary>
    public required Tensor InputIds { get; init; }
    /// <summary>(B, L) int64: 1 for real tokens.</summary>
    public required Tensor AttentionMask { get; init; }
    /// <summary>(B, L-1) float32: 1 where target InputIds[:, j+1] is a completion token.</summary>
    public required Tensor CompletionMask { get; init; }
    public required int[] CompletionLengths { get; init; }

    /// <summary>Builds the batch. Every completion needs at least one token; prompts need at least one (BOS).</summary>
    public static LogProbBatch Collate(IReadOnlyList<(IReadOnlyList<int> Prompt, IReadOnlyList<int> Completion)> pairs, int padId, Device? device = null)
    {
        if (pairs.Count == 0) throw new ArgumentException("no sequences to score");
        int b = pairs.Count;
        int len = pairs.Max(p => p.Prompt.Count + p.Completion.Count);
        var ids = new long[b * len];
        var mask = new long[b * len];
        var comp = new float[b * (len - 1)];
        for (int i = 0; i < b; i++)
        {
            var (prompt, completion) = pairs[i];
            if (prompt.Count == 0) throw new ArgumentException($"sequence {i}: the prompt is empty (it needs at least BOS)");
            if (completion.Count == 0) throw new ArgumentException($"sequence {i}: the completion is empty");
            int total = prompt.Count + completion.Count, pad = len - total;
            for (int j = 0; j < len; j++)
            {
                int k = j - pad;
                ids[i * len + j] = k < 0 ? padId : k < prompt.Count ? prompt[k] : completion[k - prompt.Count];
                mask[i * len + j] = k < 0 ? 0 : 1;
                if (j > 0 && k >= prompt.Count) comp[i * (len - 1) + j - 1] = 1f;
            }
        }
        return new LogProbBatch
        {
            InputIds = tensor(ids, [b, len], device: device).DetachFromDisposeScope(),
            AttentionMask = tensor(mask, [b, len], device: device).DetachFromDisposeScope(),
            CompletionMask = tensor(comp, [b, len - 1], device: device).DetachFromDisposeScope(),
            CompletionLengths = pairs.Select(p => p.Completion.Count).ToArray(),
        };
    }

    public void Dispose()
    {
        InputIds.Dispose();
        AttentionMask.Dispose();
        CompletionMask.Dispose();
    }
}

/// <summary>Log-probability of each sequence's completion given its prompt. Row i is independent of the others.</summary>
public sealed record SequenceLogProb(double Sum, float[] PerToken);

public static class LogProbs
{
    /// <summary>Differentiable: (B) sum of completion log-probs and (B, L-1) per-target log-probs (zero outside the
    /// completion). Runs with grad unless the caller holds no_grad; the training loop uses this for DPO.</summary>
    public static (Tensor Sum, Tensor PerToken) Compute(LlamaForCausalLM model, LogProbBatch batch)
    {
        using var scope = NewDisposeScope();
        long len = batch.InputIds.shape[1];
        var logits = model.Forward(batch.InputIds, batch.AttentionMask).narrow(1, 0, len - 1); // (B, L-1, V)
        var targets = batch.InputIds.narrow(1, 1, len - 1).unsqueeze(-1);                      // (B, L-1, 1)
        var logits32 = logits.dtype == ScalarType.Float32 ? logits : logits.to(ScalarType.Float32);
        var picked = logits32.gather(-1, targets).squeeze(-1) - logits32.logsumexp(-1);         // log softmax at the target
        var perToken = picked * batch.CompletionMask;                                           // (B, L-1)
        var sum = perToken.sum(-1);                                                             // (B)
        return (sum.MoveToOuterDisposeScope(), perToken.MoveToOuterDisposeScope());
    }

    /// <summary>Scores pairs in batches of <paramref name="batchSize"/> without grad; results in input order.</summary>
    public static IReadOnlyList<SequenceLogProb> Score(LlamaForCausalLM model, IReadOnlyList<(IReadOnlyList<int> Prompt, IReadOnlyList<int> Completion)> pairs, int padId, int batchSize = 8)
    {
        var result = new List<SequenceLogProb>(pairs.Count);
        using var _ = no_grad();
        bool wasTraining = model.training;
        if (wasTraining) model.eval();
        try
        {
            for (int start = 0; start < pairs.Count; start += batchSize)
            {
                using var scope = NewDisposeScope();
                var chunk = pairs.Skip(start).Take(batchSize).ToList();
                using var batch = LogProbBatch.Collate(chunk, padId);
                var (sum, perToken) = Compute(model, batch);
                var sums = sum.to(ScalarType.Float64).data<double>().ToArray();
                var tokens = perToken.data<float>().ToArray();
                long width = perToken.shape[1];
                for (int i = 0; i < chunk.Count; i++)
                {
                    int n = batch.CompletionLengths[i];
                    var row = new float[n];
                    Array.Copy(tokens, i * width + width - n, row, 0, n);
                    result.Add(new SequenceLogProb(sums[i], row));
                }
            }
        }
        finally
        {
            if (wasTraining) model.train();
        }
        return result;
    }
}
