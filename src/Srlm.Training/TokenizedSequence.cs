namespace Srlm.Training;

/// <summary>A tokenized (prompt, completion) sequence; the completion includes the end-of-sequence token.</summary>
public sealed record TokenizedSequence(int[] Prompt, int[] Completion)
{
    public int Length => Prompt.Length + Completion.Length;
}

/// <summary>Training's view of <see cref="LogProbs"/>, the single log-prob implementation (right padded, pad id 0).</summary>
public static class TokenLogProbs
{
    /// <summary>The sequences collated on <paramref name="device"/> (the model's).</summary>
    public static LogProbBatch Collate(IEnumerable<TokenizedSequence> seqs, Device device) =>
        LogProbBatch.Collate(seqs.Select(s => ((IReadOnlyList<int>)s.Prompt, (IReadOnlyList<int>)s.Completion)).ToList(), device);
}
