namespace Srlm.Generator;

/// <summary>A raw generated prompt, ordered by (Shard, Index) so filtering never depends on which shard
/// finished first.</summary>
public sealed record RawPrompt(string PromptId, int Shard, int Index, string Text);

/// <summary>Why a raw prompt was left out of the final set (stored and counted).</summary>
public enum PromptRejection { Empty, TooShort, TooLong, BannedWord, ExactDuplicate, NearDuplicate, SeedOverlap, OverQuota }

public sealed record FilterResult(IReadOnlyList<RawPrompt> Kept, IReadOnlyList<(RawPrompt Prompt, PromptRejection Reason)> Rejected);

/// <summary>Filters an iteration's raw prompts across all shards: length, banned words, exact duplicates
/// (after normalising case and spaces), near-duplicates (ROUGE-L F1 over words above the threshold,
/// against every kept prompt and, optionally, the seed instructions), then the per-iteration quota.</summary>
public static class PromptFilter
{
    public static FilterResult Apply(IEnumerable<RawPrompt> raw, IReadOnlyList<string> seedInstructions, PromptFilterSpec spec, int quota)
    {
        var kept = new List<RawPrompt>();
        var keptWords = new List<string[]>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var rejected = new List<(RawPrompt, PromptRejection)>();
        var seedWords = spec.CompareWithSeed ? seedInstructions.Select(Words).ToList() : [];
        var seedExact = spec.CompareWithSeed ? seedInstructions.Select(Normalize).ToHashSet(StringComparer.Ordinal) : [];
        var banned = spec.BannedWords.Select(w => w.ToLowerInvariant()).ToList();

        foreach (var p in raw.OrderBy(p => p.Shard).ThenBy(p => p.Index).ThenBy(p => p.PromptId, StringComparer.Ordinal))
        {
            var text = p.Text.Trim();
            PromptRejection? why = null;
            var norm = Normalize(text);
            string[] words = Words(text);
            if (text.Length == 0) why = PromptRejection.Empty;
            else if (text.Length < spec.MinChars) why = PromptRejection.TooShort;
            else if (text.Length > spec.MaxChars) why = PromptRejection.TooLong;
            else if (banned.Any(b => words.Contains(b))) why = PromptRejection.BannedWord;
            else if (seen.Contains(norm)) why = PromptRejection.ExactDuplicate;
            else if (seedExact.Contains(norm) || seedWords.Any(s => RougeL(words, s) > spec.MaxRougeL)) why = PromptRejection.SeedOverlap;
            else if (keptWords.Any(k => RougeL(words, k) > spec.MaxRougeL)) why = PromptRejection.NearDuplicate;
            else if (kept.Count >= quota) why = PromptRejection.OverQuota;

            if (why is { } reason) { rejected.Add((p, reason)); continue; }
            seen.Add(norm);
            kept.Add(p with { Text = text });
            keptWords.Add(words);
        }
        return new FilterResult(kept, rejected);
    }

    /// <summary>Lower case with runs of white space collapsed: the key of exact duplicates.</summary>
    public static string Normalize(string text) => string.Join(' ', text.ToLowerInvariant().Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries));

    /// <summary>Lower-case word and number tokens (punctuation splits words and is dropped).</summary>
    public static string[] Words(string text)
    {
        var words = new List<string>();
        var sb = new StringBuilder();
        foreach (var ch in text.ToLowerInvariant())
        {
            if (char.IsLetterOrDigit(ch)) sb.Append(ch);
            else if (sb.Length > 0) { words.Add(sb.ToString()); sb.Clear(); }
        }
        if (sb.Length > 0) words.Add(sb.ToString());
        return words.ToArray();
    }

    /// <summary>ROUGE-L F1: 2PR/(P+R) with P = LCS/|a|, R = LCS/|b| (LCS = longest common word subsequence).</summary>
    public static double RougeL(IReadOnlyList<string> a, IReadOnlyList<string> b)
    {
        if (a.Count == 0 || b.Count == 0) return 0;
        var prev = new int[b.Count + 1];
        var cur = new int[b.Count + 1];
        for (int i = 1; i <= a.Count; i++)
        {
            for (int j = 1; j <= b.Count; j++)
                cur[j] = a[i - 1] == b[j - 1] ? prev[j - 1] + 1 : Math.Max(prev[j], cur[j - 1]);
            (prev, cur) = (cur, prev);
        }
        int lcs = prev[b.Count];
        if (lcs == 0) return 0;
        double p = (double)lcs / a.Count, r = (double)lcs / b.Count;
        return 2 * p * r / (p + r);
    }
}
