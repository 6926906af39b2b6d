using F = TorchSharp.torch.nn.functional;

namespace Srlm.Model;

/// <summary>Prompt+completion sequences laid out for one forward, on the model's device: right padded, with a mask of
/// the completion targets. Right padding keeps plain causal attention exact for every real token (pads only follow
/// them), so no attention mask and no position ids are needed, and a row's values do not depend on its neighbours.</summary>
/// <remarks>The one layout every log-prob in srlm uses: DPO's policy and reference, SFT's loss, replay, and
/// <see cref="ServedModel.LogProbsAsync"/>.</remarks>
public sealed class LogProbBatch : IDisposable
{
    /// <summary>(B, T) int64: prompt then completion, then padding.</summary>
    public required Tensor InputIds { get; init; }
    /// <summary>(B, T-1) int64: the target of each position, InputIds[:, 1:] (a view).</summary>
    public required Tensor Labels { get; init; }
    /// <summary>(B, T-1) float32: 1 where the target Labels[:, j] is a completion token.</summary>
    public required Tensor CompletionMask { get; init; }
    /// <summary>(N) int64: the flat indexes into the (B, T-1) grid where CompletionMask is 1, in order; computed on
    /// the host at collation, so scoring needs no device-to-host read of the mask (nonzero would wait for the GPU).</summary>
    public required Tensor CompletionRows { get; init; }
    public required int[] PromptLengths { get; init; }
    public required int[] CompletionLengths { get; init; }

    /// <summary>Builds the batch on <paramref name="device"/> (the model's: <see cref="LlamaForCausalLM.Device"/>).
    /// Every prompt needs at least one token (BOS); a completion may be empty (it then scores 0).</summary>
    public static LogProbBatch Collate(IReadOnlyList<(IReadOnlyList<int> Prompt, IReadOnlyList<int> Completion)> pairs, Device device, int padId = 0)
    {
        if (pairs.Count == 0) throw new ArgumentException("no sequences to score");
        int b = pairs.Count;
        int t = pairs.Max(p => p.Prompt.Count + p.Completion.Count);
        if (t < 2) throw new ArgumentException("sequences need at least two tokens");
        var ids = new long[b * t];
        var mask = new float[b * (t - 1)];
        var completionRows = new List<long>();
        for (int i = 0; i < b; i++)
        {
            var (prompt, completion) = pairs[i];
            int p = prompt.Count, length = p + completion.Count;
            if (p == 0) throw new ArgumentException($"sequence {i}: the prompt is empty (it needs at least one token, e.g. BOS, before its completion)");
            for (int j = 0; j < t; j++)
                ids[i * t + j] = j < p ? prompt[j] : j < length ? completion[j - p] : padId;
            // label position j predicts token j+1; it is a completion token when p <= j+1 < length
            for (int j = p - 1; j < length - 1; j++) { mask[i * (t - 1) + j] = 1f; completionRows.Add(i * (t - 1) + j); }
        }
        using var scope = NewDisposeScope();
        var idsT = tensor(ids, [b, t], device: device);
        var labels = idsT.narrow(1, 1, t - 1);
        var maskT = tensor(mask, [b, t - 1], device: device);
        var rowsT = tensor(completionRows.ToArray(), [completionRows.Count], device: device);
        return new LogProbBatch
        {
            InputIds = idsT.DetachFromDisposeScope(), // the batch owns its tensors
            Labels = labels.DetachFromDisposeScope(),
            CompletionMask = maskT.DetachFromDisposeScope(),
            CompletionRows = rowsT.DetachFromDisposeScope(),
            PromptLengths = pairs.Select(x => x.Prompt.Count).ToArray(),
            CompletionLengths = pairs.Select(x => x.Completion.Count).ToArray(),
        };
    }

    public void Dispose()
    {
        Labels.Dispose();
        InputIds.Dispose();
        CompletionMask.Dispose();
        CompletionRows.Dispose();
    }
}

/// <summary>Log-probability of each sequence's completion given its prompt. Row i is independent of the others.</summary>
public sealed record SequenceLogProb(double Sum, float[] PerToken);

/// <summary>Completion log-probabilities: the single implementation behind DPO, SFT, replay and scoring.</summary>
public static class LogProbs
{
    /// <summary>Differentiable: (B) sum of completion log-probs and (B, T-1) per-target log-probs, zero outside the
    /// completion, both on the model's device. Runs with grad unless the caller holds no_grad (DPO and SFT train
    /// through it).</summary>
    public static (Tensor Sum, Tensor PerToken) Compute(LlamaForCausalLM model, LogProbBatch batch)
    {
        using var scope = NewDisposeScope();
        long b = batch.InputIds.shape[0], t = batch.InputIds.shape[1];
        // Logits only where a completion token is predicted (the mask's ones): prompt and padding positions would be
        // multiplied by 0 anyway, and with a judge prompt of hundreds of tokens before a short judgement they are most
        // of the (B, T, V) logits. Row r of the (B, T-1) grid is position r + r / (T-1) of the (B, T) input.
        using var tm1 = (t - 1).ToScalar();
        var rows = batch.CompletionRows;                                                   // (N) into B*(T-1)
        var positions = TensorMath.Add(rows, rows.div(tm1, rounding_mode: RoundingMode.floor)); // (N) into B*T
        var logits = model.Forward(batch.InputIds, rows: positions);                       // (N, V)
        if (logits.dtype != ScalarType.Float32) logits = logits.to(ScalarType.Float32);  // softmax statistics in float32
        var labels = MetaFallback.IndexSelect(batch.Labels.reshape(-1), rows);              // (N)
        var nll = F.cross_entropy(logits, labels, reduction: nn.Reduction.None);            // fused log-softmax + gather
        var perToken = MetaFallback.IndexCopy(zeros(b * (t - 1), ScalarType.Float32, device: logits.device), rows, nll.neg())
            .view(b, t - 1);                                                                // (B, T-1), 0 outside the completions
        var sum = perToken.sum(1);                                                         // (B)
        return (sum.MoveToOuterDisposeScope(), perToken.MoveToOuterDisposeScope());
    }

    /// <summary>Per-target log p(label) (B, T-1) from logits (B, T, V) of the collated ids.</summary>
    /// <remarks>The loss runs over all T positions of the contiguous logits, the last one with an ignored label, and
    /// drops that column afterwards: slicing the logits first copied all of them (and the slice's gradient was a
    /// zero-filled copy of them again), while every row's log-softmax is the same either way.</remarks>
    public static Tensor TokenLogps(Tensor logits, Tensor labels)
    {
        using var scope = NewDisposeScope();
        long b = logits.shape[0], t = logits.shape[1], v = logits.shape[2];
        const long ignored = -100;
        using var ignoredValue = ignored.ToScalar();
        var padded = cat([labels, full(b, 1, ignoredValue, ScalarType.Int64, device: labels.device)], 1); // (B, T)
        var flat = logits.is_contiguous() ? logits.view(b * t, v) : logits.reshape(b * t, v);           // (B*T, V)
        var nll = F.cross_entropy(flat, padded.view(-1), ignore_index: ignored, reduction: nn.Reduction.None); // fused log-softmax + gather
        return nll.view(b, t).narrow(1, 0, t - 1).neg().MoveToOuterDisposeScope();
    }

    /// <summary>Scores pairs in batches of <paramref name="batchSize"/> without grad, in eval mode; results in input
    /// order, copied to the host. Every completion needs at least one token.</summary>
    public static IReadOnlyList<SequenceLogProb> Score(LlamaForCausalLM model, IReadOnlyList<(IReadOnlyList<int> Prompt, IReadOnlyList<int> Completion)> pairs, int padId, int batchSize = 8)
    {
        for (int i = 0; i < pairs.Count; i++)
            if (pairs[i].Completion.Count == 0) throw new ArgumentException($"sequence {i}: the completion is empty");
        var result = new List<SequenceLogProb>(pairs.Count);
        using var _ = no_grad();
        bool wasTraining = model.training;
        if (wasTraining) model.eval();
        try
        {
            var device = model.Device;
            for (int start = 0; start < pairs.Count; start += batchSize)
            {
                using var scope = NewDisposeScope();
                var chunk = pairs.Skip(start).Take(batchSize).ToList();
                using var batch = LogProbBatch.Collate(chunk, device, padId);
                var (sum, perToken) = Compute(model, batch);
                // The numbers leave the engine here.
                var sums = sum.to(ScalarType.Float64).cpu().data<double>().ToArray();
                var tokens = perToken.cpu().data<float>().ToArray();
                long width = perToken.shape[1];
                for (int i = 0; i < chunk.Count; i++)
                {
                    int n = batch.CompletionLengths[i], from = batch.PromptLengths[i] - 1;
                    var row = new float[n];
                    Array.Copy(tokens, i * width + from, row, 0, n);
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
