using System.Security.Cryptography;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace Srlm.Tasks;

/// <summary>How many records each split gets.</summary>
public sealed record SeedSizes
{
    /// <summary>IFT records (one per instruction): instruction -> a correct answer.</summary>
    public int Ift { get; init; }
    /// <summary>EFT records: instruction + answer of some quality -> judgement + score, scores balanced 0..5.</summary>
    public int Eft { get; init; }
    /// <summary>EFT answers per instruction (different answers to one instruction teach the judge to read the answer).</summary>
    public int EftAnswersPerInstruction { get; init; } = 2;
    /// <summary>Instructions for a run that takes prompts from the task family instead of self-instruction.</summary>
    public int Prompts { get; init; }
    /// <summary>Dev instructions (with a reference answer), for any tuning.</summary>
    public int Dev { get; init; }
    /// <summary>Held-out test instructions (with a reference answer); no stage may see them.</summary>
    public int Test { get; init; }
    /// <summary>Dev/test instructions that also get graded answers for judge metrics (dev_judge / test_judge).</summary>
    public int JudgeEval { get; init; }
    /// <summary>Graded answers per judge-eval instruction, with distinct scores.</summary>
    public int JudgeEvalAnswers { get; init; } = 3;

    public void Validate()
    {
        foreach (var (name, v) in new[] { ("ift", Ift), ("eft", Eft), ("prompts", Prompts), ("dev", Dev), ("test", Test), ("judge-eval", JudgeEval) })
            if (v < 0) throw new ArgumentException($"seed size --{name} must be >= 0, got {v}");
        if (EftAnswersPerInstruction is < 1 or > 6) throw new ArgumentException($"EFT answers per instruction must be 1..6, got {EftAnswersPerInstruction}");
        if (JudgeEvalAnswers is < 2 or > 6) throw new ArgumentException($"judge-eval answers per instruction must be 2..6, got {JudgeEvalAnswers}");
        if (JudgeEval > Math.Min(Dev, Test) && JudgeEval > 0)
            throw new ArgumentException($"judge-eval instructions ({JudgeEval}) cannot exceed the dev ({Dev}) or test ({Test}) split");
    }
}

/// <summary>One JSONL record. IFT/dev/test: instruction + answer; EFT and judge-eval: + judgement + score;
/// prompts: instruction only.</summary>
public sealed record SeedRecord(string Instruction, string? Answer = null, string? Judgement = null, int? Score = null);

/// <summary>All splits of one task family for one seed. Instructions are disjoint across splits.</summary>
public sealed record SeedSet(
    string Task, long Seed, SeedSizes Sizes, string JudgeTemplate,
    IReadOnlyList<SeedRecord> Ift, IReadOnlyList<SeedRecord> Eft, IReadOnlyList<SeedRecord> Prompts,
    IReadOnlyList<SeedRecord> Dev, IReadOnlyList<SeedRecord> Test,
    IReadOnlyList<SeedRecord> DevJudge, IReadOnlyList<SeedRecord> TestJudge)
{
    /// <summary>File name -> records, in the order they are written.</summary>
    public IEnumerable<(string File, IReadOnlyList<SeedRecord> Records)> Files()
    {
        yield return ("ift.jsonl", Ift);
        yield return ("eft.jsonl", Eft);
        yield return ("prompts.jsonl", Prompts);
        yield return ("dev.jsonl", Dev);
        yield return ("dev_judge.jsonl", DevJudge);
        yield return ("test.jsonl", Test);
        yield return ("test_judge.jsonl", TestJudge);
    }

    public const string JudgeTemplateFile = "judge_template.txt";
    public const string ManifestFile = "manifest.json";

    /// <summary>The held-out instructions (test split) that no stage may see.</summary>
    public IReadOnlyList<string> HeldOutInstructions => Test.Select(r => r.Instruction).ToList();
}

/// <summary>Builds and writes seed sets. Deterministic: the same family, seed and sizes give the same bytes.</summary>
public static class SeedBuilder
{
    // One random stream per split (and per record inside a split), so a split's content does not depend
    // on how many records another split drew. Test is drawn first: it depends on the seed and its size only.
    private const int TestStream = 1, DevStream = 2, IftStream = 3, EftStream = 4, PromptStream = 5, AnswerOffset = 100, EftScoreStream = 200;

    public static SeedSet Build(ITaskFamily family, long seed, SeedSizes? sizes = null)
    {
        sizes ??= family.DefaultSizes;
        sizes.Validate();
        var used = new HashSet<string>(StringComparer.Ordinal);
        var test = Instructions(family, seed, TestStream, sizes.Test, used, "test");
        var dev = Instructions(family, seed, DevStream, sizes.Dev, used, "dev");
        var ift = Instructions(family, seed, IftStream, sizes.Ift, used, "ift");
        int eftInstructions = (sizes.Eft + sizes.EftAnswersPerInstruction - 1) / sizes.EftAnswersPerInstruction;
        var eftPrompts = Instructions(family, seed, EftStream, eftInstructions, used, "eft");
        var prompts = Instructions(family, seed, PromptStream, sizes.Prompts, used, "prompts");

        return new SeedSet(family.Name, seed, sizes, family.JudgeTemplate,
            Answered(family, seed, IftStream, ift),
            Eft(family, seed, eftPrompts, sizes),
            prompts.Select(i => new SeedRecord(i)).ToList(),
            Answered(family, seed, DevStream, dev),
            Answered(family, seed, TestStream, test),
            Graded(family, seed, DevStream, dev.Take(sizes.JudgeEval), sizes.JudgeEvalAnswers),
            Graded(family, seed, TestStream, test.Take(sizes.JudgeEval), sizes.JudgeEvalAnswers));
    }

    private static List<string> Instructions(ITaskFamily family, long seed, int stream, int count, HashSet<string> used, string split)
    {
        var rng = TaskRng.Derive(seed, stream);
        var list = new List<string>(count);
        long budget = 50L * count + 1000;
        while (list.Count < count)
        {
            if (budget-- == 0)
                throw new InvalidOperationException($"task '{family.Name}' ran out of distinct instructions while drawing the {split} split ({list.Count} of {count}); ask for fewer records");
            var i = family.NewInstruction(rng);
            if (used.Add(i)) list.Add(i);
        }
        return list;
    }

    private static List<SeedRecord> Answered(ITaskFamily family, long seed, int stream, List<string> instructions) =>
        instructions.Select((ins, k) => new SeedRecord(ins, family.Solve(ins, TaskRng.Derive(seed, AnswerOffset + stream, k)))).ToList();

    private static List<SeedRecord> Eft(ITaskFamily family, long seed, List<string> instructions, SeedSizes sizes)
    {
        // Scores balanced exactly (the paper resampled EFT because score 4 dominated): count/6 of each,
        // the remainder spread, in a seeded order.
        var scores = Enumerable.Range(0, sizes.Eft).Select(i => i % (Rubric.MaxScore + 1)).ToList();
        TaskRng.Derive(seed, EftScoreStream).Shuffle(scores);
        var records = new List<SeedRecord>(sizes.Eft);
        for (int r = 0; r < sizes.Eft; r++)
        {
            var ins = instructions[r / sizes.EftAnswersPerInstruction];
            var rng = TaskRng.Derive(seed, AnswerOffset + EftStream, r);
            string answer;
            int tries = 0;
            do answer = family.AnswerWithScore(ins, scores[r], rng);
            while (tries++ < 20 && records.Any(x => x.Instruction == ins && x.Answer == answer));
            records.Add(GradedRecord(family, ins, answer, scores[r]));
        }
        return records;
    }

    private static List<SeedRecord> Graded(ITaskFamily family, long seed, int stream, IEnumerable<string> instructions, int perInstruction)
    {
        var records = new List<SeedRecord>();
        int k = 0;
        foreach (var ins in instructions)
        {
            var rng = TaskRng.Derive(seed, AnswerOffset + 10 + stream, k++);
            var scores = Enumerable.Range(0, Rubric.MaxScore + 1).ToList();
            rng.Shuffle(scores);
            foreach (var s in scores.Take(perInstruction))
                records.Add(GradedRecord(family, ins, family.AnswerWithScore(ins, s, rng), s));
        }
        return records;
    }

    private static SeedRecord GradedRecord(ITaskFamily family, string instruction, string answer, int score)
    {
        var g = family.CheckKnown(instruction, answer);
        if (g.Score != score) throw new InvalidOperationException($"task '{family.Name}': answer '{answer}' graded {g.Score}, wanted {score} ({instruction})");
        return new SeedRecord(instruction, answer, g.Judgement, g.Score);
    }

    /// <summary>Writes every split as JSONL, the judge template and a manifest (counts + SHA-256 per file)
    /// into <paramref name="dir"/>. Returns the manifest's file entries.</summary>
    public static IReadOnlyDictionary<string, (int Records, string Sha256)> Write(SeedSet set, string dir)
    {
        Directory.CreateDirectory(dir);
        var entries = new SortedDictionary<string, (int, string)>(StringComparer.Ordinal);
        foreach (var (file, records) in set.Files())
        {
            var bytes = ToJsonl(records);
            File.WriteAllBytes(Path.Combine(dir, file), bytes);
            entries[file] = (records.Count, Sha256(bytes));
        }
        var template = Encoding.UTF8.GetBytes(set.JudgeTemplate.ReplaceLineEndings("\n") + "\n");
        File.WriteAllBytes(Path.Combine(dir, SeedSet.JudgeTemplateFile), template);
        entries[SeedSet.JudgeTemplateFile] = (0, Sha256(template));

        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteString("task", set.Task);
            w.WriteNumber("seed", set.Seed);
            w.WriteStartObject("sizes");
            w.WriteNumber("ift", set.Sizes.Ift);
            w.WriteNumber("eft", set.Sizes.Eft);
            w.WriteNumber("eft_answers_per_instruction", set.Sizes.EftAnswersPerInstruction);
            w.WriteNumber("prompts", set.Sizes.Prompts);
            w.WriteNumber("dev", set.Sizes.Dev);
            w.WriteNumber("test", set.Sizes.Test);
            w.WriteNumber("judge_eval", set.Sizes.JudgeEval);
            w.WriteNumber("judge_eval_answers", set.Sizes.JudgeEvalAnswers);
            w.WriteEndObject();
            w.WriteString("judge_template", SeedSet.JudgeTemplateFile);
            w.WriteStartArray("held_out");
            w.WriteStringValue("test.jsonl");
            w.WriteStringValue("test_judge.jsonl");
            w.WriteEndArray();
            w.WriteStartObject("files");
            foreach (var (file, (count, sha)) in entries)
            {
                w.WriteStartObject(file);
                w.WriteNumber("records", count);
                w.WriteString("sha256", sha);
                w.WriteEndObject();
            }
            w.WriteEndObject();
            w.WriteEndObject();
        }
        File.WriteAllBytes(Path.Combine(dir, SeedSet.ManifestFile), [.. ms.ToArray(), (byte)'\n']);
        return entries.ToDictionary(e => e.Key, e => e.Value);
    }

    public static byte[] ToJsonl(IEnumerable<SeedRecord> records)
    {
        using var ms = new MemoryStream();
        var options = new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        foreach (var r in records)
        {
            using (var w = new Utf8JsonWriter(ms, options))
            {
                w.WriteStartObject();
                w.WriteString("instruction", r.Instruction);
                if (r.Answer is not null) w.WriteString("answer", r.Answer);
                if (r.Judgement is not null) w.WriteString("judgement", r.Judgement);
                if (r.Score is int s) w.WriteNumber("score", s);
                w.WriteEndObject();
            }
            ms.WriteByte((byte)'\n');
        }
        return ms.ToArray();
    }

    private static string Sha256(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));
}
