namespace Srlm.Generator;

/// <summary>Self-instruction (the paper's step 1): a few-shot prompt of seed instructions plus a few
/// prompts generated earlier in the run; the model continues with one new task. Every draw is seeded
/// from (run seed, iteration, shard, index), so a redelivered shard writes the same prompts.</summary>
public static class SelfInstruct
{
    public const string Header = "Below are some example tasks. Write one new task in the same style.\n\n";

    /// <summary>The few-shot text for one new prompt; the model's continuation is the new task.</summary>
    public static string BuildFewShot(IReadOnlyList<string> seedInstructions, IReadOnlyList<string> generated, FewShotSpec shots, long seed)
    {
        var rng = new Random(unchecked((int)(seed ^ (seed >> 32))));
        var examples = Sample(seedInstructions, shots.SeedExamples, rng)
            .Concat(Sample(generated, shots.GeneratedExamples, rng))
            .ToList();
        // Shuffle so the generated examples are not always last.
        for (int i = examples.Count - 1; i > 0; i--) { int j = rng.Next(i + 1); (examples[i], examples[j]) = (examples[j], examples[i]); }
        var sb = new StringBuilder(Header);
        for (int i = 0; i < examples.Count; i++) sb.Append("Task ").Append(i + 1).Append(": ").Append(OneLine(examples[i])).Append('\n');
        sb.Append("Task ").Append(examples.Count + 1).Append(':');
        return sb.ToString();
    }

    /// <summary>The new task from the model's continuation: its first line (later lines would be the next
    /// "Task n:" the model went on to write).</summary>
    public static string ExtractTask(string continuation)
    {
        var text = continuation.TrimStart();
        int nl = text.IndexOf('\n');
        if (nl >= 0) text = text[..nl];
        // A chat model answering the few-shot text as a message may repeat the "Task n:" label.
        var label = System.Text.RegularExpressions.Regex.Match(text, @"^Task \d+:\s*");
        if (label.Success) text = text[label.Length..];
        int next = text.IndexOf(" Task ", StringComparison.Ordinal);
        if (next > 0 && next + 6 < text.Length && char.IsDigit(text[next + 6])) text = text[..next];
        return text.Trim();
    }

    private static string OneLine(string s) => string.Join(' ', s.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries));

    private static IEnumerable<string> Sample(IReadOnlyList<string> pool, int count, Random rng)
    {
        if (pool.Count == 0 || count <= 0) return [];
        var idx = Enumerable.Range(0, pool.Count).ToArray();
        int take = Math.Min(count, pool.Count);
        for (int i = 0; i < take; i++) { int j = i + rng.Next(idx.Length - i); (idx[i], idx[j]) = (idx[j], idx[i]); }
        return idx.Take(take).Select(i => pool[i]);
    }
}

/// <summary>Prompt pool (a task family's prompt file): one fixed permutation of the pool per run, and
/// iteration t takes the next slice, so no pool prompt is reused across iterations while the pool lasts.</summary>
public static class PromptPool
{
    /// <summary>The pool indexes shard `shard` of iteration `iteration` turns into prompts.</summary>
    public static IReadOnlyList<int> Slice(int poolSize, long runSeed, int iteration, int shard, int shardCount, int perIteration)
    {
        if (poolSize == 0) return [];
        var perm = Enumerable.Range(0, poolSize).ToArray();
        var rng = new Random(unchecked((int)Ids.Seed(runSeed, "pool")));
        for (int i = perm.Length - 1; i > 0; i--) { int j = rng.Next(i + 1); (perm[i], perm[j]) = (perm[j], perm[i]); }
        var (start, count) = ShardRange(perIteration, shard, shardCount);
        long offset = (long)(iteration - 1) * perIteration + start;
        return Enumerable.Range(0, count).Select(k => perm[(int)((offset + k) % poolSize)]).ToList();
    }

    /// <summary>Shard s of S gets a contiguous share of `total` (the first total % S shards one more).</summary>
    public static (int Start, int Count) ShardRange(int total, int shard, int shardCount)
    {
        int baseCount = total / shardCount, extra = total % shardCount;
        int count = baseCount + (shard < extra ? 1 : 0);
        int start = shard * baseCount + Math.Min(shard, extra);
        return (start, count);
    }
}
