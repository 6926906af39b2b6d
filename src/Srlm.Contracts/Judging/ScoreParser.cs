namespace Srlm.Contracts.Judging;

/// <summary>The outcome of parsing one judge sample: a score in 0..max, or unparseable with the reason.
/// An unparseable sample is stored with its raw text and counted; it never becomes a number.</summary>
public readonly record struct ParsedScore(int? Score, string? Error)
{
    public bool IsValid => Score is not null;

    public static ParsedScore Valid(int score) => new(score, null);

    public static ParsedScore Unparseable(string error) => new(null, error);
}

/// <summary>Reads the judge's verdict: the LAST `Score:` label in the text decides (a justification may
/// quote earlier scores), and it must be followed by a whole number in 0..max (optionally written `n/max`).
/// Markdown emphasis around the label or number is tolerated; anything else is unparseable.</summary>
public static partial class ScoreParser
{
    // The label: "Score:" in any case, possibly wrapped in ** or __ (e.g. "**Score:** 4").
    [GeneratedRegex(@"score\s*[*_]*\s*:", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex Label();

    // What must follow the last label: optional emphasis, a number, an optional "/ max", then a boundary.
    [GeneratedRegex(@"\A[ \t*_]*(?<n>[+-]?\d+(?:\.\d+)?)(?:\s*/\s*(?<d>\d+))?(?![\d.]*\d)", RegexOptions.CultureInvariant)]
    private static partial Regex Value();

    /// <summary>Whether the text holds a `Score:` label at all (readable or not).</summary>
    public static bool HasLabel(string? text) => !string.IsNullOrEmpty(text) && Label().IsMatch(text);

    public static ParsedScore Parse(string? text, int maxScore = 5)
    {
        if (string.IsNullOrWhiteSpace(text)) return ParsedScore.Unparseable("empty output");
        var labels = Label().Matches(text);
        if (labels.Count == 0) return ParsedScore.Unparseable("no `Score:` label");
        var last = labels[^1];
        var rest = text.AsSpan(last.Index + last.Length).ToString();
        var m = Value().Match(rest);
        if (!m.Success) return ParsedScore.Unparseable("the last `Score:` is not followed by a number");
        var raw = m.Groups["n"].Value;
        if (!decimal.TryParse(raw, NumberStyles.Float, CultureInfo.InvariantCulture, out var value))
            return ParsedScore.Unparseable($"score '{raw}' is not a number");
        if (value != decimal.Truncate(value)) return ParsedScore.Unparseable($"score {raw} is not a whole number");
        if (m.Groups["d"].Success && m.Groups["d"].Value != maxScore.ToString(CultureInfo.InvariantCulture))
            return ParsedScore.Unparseable($"score {raw}/{m.Groups["d"].Value} is not out of {maxScore}");
        if (value < 0 || value > maxScore) return ParsedScore.Unparseable($"score {raw} is outside 0..{maxScore}");
        return ParsedScore.Valid((int)value);
    }

    /// <summary>The candidate's score: the mean of the valid samples, or null when none is valid.</summary>
    public static double? Mean(IEnumerable<ParsedScore> samples) => Mean(samples.Select(s => s.IsValid ? (double?)s.Score!.Value : null));

    /// <summary>The candidate's score from stored samples (null: a sample that did not parse): the mean of the valid
    /// ones, or null when none is valid. The one definition the judge, the pair builder and resumption use.</summary>
    public static double? Mean(IEnumerable<double?> scores)
    {
        var valid = scores.Where(s => s is not null).Select(s => s!.Value).ToList();
        return valid.Count == 0 ? null : valid.Average();
    }
}
