namespace Srlm.Contracts.Judging;

/// <summary>What one pairwise verdict says: the first answer (A), the second (B), or neither (a tie).</summary>
public enum PairwiseVerdict { A, B, Tie }

/// <summary>The outcome of one held-out item for the checkpoint being evaluated against its baseline.</summary>
public enum PairwiseOutcome { Win, Loss, Tie, Unjudged }

/// <summary>evaluation.judge_mode "pairwise": the fixed judge reads the instruction and both answers in one prompt
/// and ends with `Winner: A`, `Winner: B` or `Winner: tie`. Each item is judged twice, with the answers in both
/// orders, so a judge that prefers whichever answer comes first cannot hand out wins: a win needs both orders to
/// pick the same answer. A verdict that cannot be read makes the item unjudged, never a guess.</summary>
public static partial class PairwiseJudging
{
    /// <summary>Our wording; placeholders {instruction}, {response_a}, {response_b}, filled in one pass.</summary>
    public const string Template =
        """
        Compare two replies to the same user request. Decide which one answers the request better: which is more
        relevant, covers more of what was asked, answers its core more usefully, and is clearer and more expert,
        without filler. Length alone is no merit.

        Request: {instruction}
        <reply_a>{response_a}</reply_a>
        <reply_b>{response_b}</reply_b>

        Explain your choice in no more than 100 words, then end with exactly one line "Winner: A", "Winner: B" or "Winner: tie".
        """;

    [GeneratedRegex(@"\{(instruction|response_a|response_b)\}", RegexOptions.CultureInvariant)]
    private static partial Regex Placeholder();

    public static string Format(string instruction, string responseA, string responseB) =>
        Placeholder().Replace(Template, m => m.Groups[1].Value switch
        {
            "instruction" => instruction,
            "response_a" => responseA,
            _ => responseB,
        });

    // The label "Winner:" in any case, possibly wrapped in ** or __ (e.g. "**Winner:** A").
    [GeneratedRegex(@"winner\s*[*_]*\s*:", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex Label();

    // What must follow the LAST label: optional emphasis or brackets, then A, B or tie as a whole word.
    [GeneratedRegex(@"\A[ \t*_""'(\[]*(?<v>a|b|tie)(?![\w])", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex Value();

    /// <summary>The verdict of the last `Winner:` label, or null (with the reason) when there is none to read.</summary>
    public static (PairwiseVerdict? Verdict, string? Error) Parse(string? text)
    {
        if (string.IsNullOrWhiteSpace(text)) return (null, "empty output");
        var labels = Label().Matches(text);
        if (labels.Count == 0) return (null, "no `Winner:` label");
        var last = labels[^1];
        var m = Value().Match(text[(last.Index + last.Length)..]);
        if (!m.Success) return (null, "the last `Winner:` is not followed by A, B or tie");
        return (m.Groups["v"].Value.ToLowerInvariant() switch { "a" => PairwiseVerdict.A, "b" => PairwiseVerdict.B, _ => PairwiseVerdict.Tie }, null);
    }

    /// <summary>The item's outcome for the evaluated checkpoint from the verdict with its answer as A (checkpoint first)
    /// and the verdict with its answer as B (baseline first): a win or a loss only when both orders agree, a tie
    /// otherwise, unjudged when either verdict is missing.</summary>
    public static PairwiseOutcome Combine(PairwiseVerdict? checkpointFirst, PairwiseVerdict? baselineFirst)
    {
        if (checkpointFirst is null || baselineFirst is null) return PairwiseOutcome.Unjudged;
        if (checkpointFirst == PairwiseVerdict.A && baselineFirst == PairwiseVerdict.B) return PairwiseOutcome.Win;
        if (checkpointFirst == PairwiseVerdict.B && baselineFirst == PairwiseVerdict.A) return PairwiseOutcome.Loss;
        return PairwiseOutcome.Tie;
    }
}
