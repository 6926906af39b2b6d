namespace Srlm.Tasks;

/// <summary>Shared mechanics of the additive five-point rubrics.</summary>
public static class Rubric
{
    public const int MaxScore = 5;

    /// <summary>One point per met criterion; the judgement lists each criterion's evidence with the running
    /// total after it, then "Score: k" on its own line (the form the judge parser and SEED_FORMATS.md expect).</summary>
    /// <param name="workings">Optional notes written before the clauses (e.g. the response's letters numbered one by
    /// one, so that its length is read off instead of counted); followed by ": ".</param>
    public static Grade Grade(IReadOnlyList<Criterion> criteria, string? workings = null)
    {
        if (criteria.Count != MaxScore) throw new ArgumentException($"a rubric has {MaxScore} criteria, got {criteria.Count}");
        int total = 0;
        var clauses = new List<string>(criteria.Count);
        foreach (var c in criteria)
        {
            if (c.Met) total++;
            clauses.Add($"{c.Evidence} {total}");
        }
        var prefix = string.IsNullOrEmpty(workings) ? "" : workings + ": ";
        return new Grade(total == MaxScore, total, criteria, $"{prefix}{string.Join(", ", clauses)}.\nScore: {total}");
    }

    /// <summary>Draws proposals until one grades exactly <paramref name="score"/> (rejection sampling on one
    /// seeded stream, so the result is deterministic).</summary>
    public static string Sample(int score, Func<string, int> grade, TaskRng rng, string instruction, Func<string> propose)
    {
        if (score is < 0 or > MaxScore) throw new ArgumentOutOfRangeException(nameof(score), score, "must be 0..5");
        for (int attempt = 0; attempt < 20_000; attempt++)
        {
            var answer = propose();
            if (answer.Trim().Length == answer.Length && answer.Length > 0 && grade(answer) == score) return answer;
        }
        throw new InvalidOperationException($"no answer with score {score} found for: {instruction}");
    }
}
