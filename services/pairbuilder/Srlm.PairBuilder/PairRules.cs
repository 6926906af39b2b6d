using Srlm.Contracts.Spec;

namespace Srlm.PairBuilder;

/// <summary>One judged candidate as the pair rules see it. Score is the mean of its valid judge
/// samples (null when none parsed); token counts are the ones the generator measured. Cut: its generation
/// ended by the token limit (finish reason `length`); such an answer is never chosen.</summary>
public sealed record JudgedCandidate(string CandidateId, int Index, double? Score, int ResponseTokens, bool Cut = false);

/// <summary>The decision for one prompt: a pair, or a drop with its reason (the stored <see cref="DropReason"/>).</summary>
public sealed record PairDecision(JudgedCandidate? Chosen, JudgedCandidate? Rejected, DropReason? Dropped)
{
    public bool IsPair => Dropped is null;

    public static string CounterName(DropReason reason) => reason switch
    {
        DropReason.DroppedOther => "dropped_other",
        DropReason.DroppedTies => "dropped_ties",
        DropReason.TooLong => "too_long",
        DropReason.DroppedTruncated => "dropped_truncated",
        _ => throw new ArgumentOutOfRangeException(nameof(reason)),
    };
}

/// <summary>Best-vs-worst pairing of one prompt's candidates (the paper's rule), with the optional
/// length control of Meta-Rewarding: prefer the shortest of the near-best and the longest of the
/// near-worst. Every tie is broken by candidate index, so the decision does not depend on the order in
/// which judgements arrived.</summary>
public static class PairRules
{
    private const double Epsilon = 1e-9;

    /// <param name="candidates">All N candidates of the prompt (unscored ones included).</param>
    /// <param name="promptTokens">Tokens of the templated prompt the answers follow.</param>
    /// <param name="maxTokens">Longest trainable sequence (prompt + answer).</param>
    /// <remarks>Cut candidates (finish reason `length`) are never chosen: with pairs.truncated "drop" they take no part,
    /// with "lowest" they may be the rejected side. "Best" is then the best uncut score, "worst" the worst of the pool.</remarks>
    public static PairDecision Decide(IReadOnlyList<JudgedCandidate> candidates, int promptTokens, int maxTokens, PairRulesSpec rules)
    {
        var allScored = candidates.Where(c => c.Score is not null).OrderBy(c => c.Index).ToList();
        var scored = rules.Truncated == PairRulesSpec.TruncatedLowest ? allScored : allScored.Where(c => !c.Cut).ToList();
        if (scored.Count < rules.MinValidScores)
            return new(null, null, allScored.Count >= rules.MinValidScores ? DropReason.DroppedTruncated : DropReason.DroppedOther);
        var uncut = scored.Where(c => !c.Cut).ToList();
        if (uncut.Count == 0) return new(null, null, DropReason.DroppedTruncated);

        double best = uncut.Max(c => c.Score!.Value), worst = scored.Min(c => c.Score!.Value);
        if (best - worst <= Epsilon || best - worst < rules.MinMargin - Epsilon) return new(null, null, DropReason.DroppedTies);

        JudgedCandidate chosen, rejected;
        if (!rules.LengthControl.Enabled)
        {
            chosen = uncut.First(c => c.Score!.Value >= best - Epsilon);
            rejected = scored.First(c => c.Score!.Value <= worst + Epsilon);
        }
        else
        {
            double margin = rules.LengthControl.Margin;
            chosen = Shortest(uncut.Where(c => c.Score!.Value >= best - margin - Epsilon));
            if (chosen.Score!.Value <= worst + Epsilon)
                // The whole spread is within the margin: the shortest near-best may be a worst one.
                // Fall back to the shortest of the strictly best.
                chosen = Shortest(uncut.Where(c => c.Score!.Value >= best - Epsilon));
            double chosenScore = chosen.Score!.Value;
            rejected = Longest(scored.Where(c => c.Score!.Value <= worst + margin + Epsilon && c.Score!.Value < chosenScore - Epsilon));
        }

        if (promptTokens + Math.Max(chosen.ResponseTokens, rejected.ResponseTokens) > maxTokens)
            return new(chosen, rejected, DropReason.TooLong);
        return new(chosen, rejected, null);
    }

    private static JudgedCandidate Shortest(IEnumerable<JudgedCandidate> set) =>
        set.OrderBy(c => c.ResponseTokens).ThenBy(c => c.Index).First();

    private static JudgedCandidate Longest(IEnumerable<JudgedCandidate> set) =>
        set.OrderByDescending(c => c.ResponseTokens).ThenBy(c => c.Index).First();
}
