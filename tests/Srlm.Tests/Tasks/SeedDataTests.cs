namespace Srlm.Tests.Tasks;

public class SeedDataTests
{
    private static readonly SeedSet Tiny = SeedBuilder.Build(new LettersTask(), seed: 1);

    public static TheoryData<string> FamilyNames() => new(TaskFamilies.All.Select(f => f.Name));

    [Fact]
    public void Splits_are_disjoint_and_the_test_split_has_at_least_1000_items()
    {
        var splits = new Dictionary<string, HashSet<string>>
        {
            ["ift"] = Tiny.Ift.Select(r => r.Instruction).ToHashSet(),
            ["eft"] = Tiny.Eft.Select(r => r.Instruction).ToHashSet(),
            ["prompts"] = Tiny.Prompts.Select(r => r.Instruction).ToHashSet(),
            ["dev"] = Tiny.Dev.Select(r => r.Instruction).ToHashSet(),
            ["test"] = Tiny.Test.Select(r => r.Instruction).ToHashSet(),
        };
        foreach (var (a, sa) in splits)
            foreach (var (b, sb) in splits)
                if (string.CompareOrdinal(a, b) < 0)
                    Assert.False(sa.Overlaps(sb), $"splits {a} and {b} share an instruction");
        Assert.True(Tiny.Test.Count >= 1000);
        Assert.Equal(Tiny.Test.Count, splits["test"].Count);
        Assert.Equal(Tiny.Ift.Count, splits["ift"].Count);
        Assert.Subset(splits["test"], Tiny.TestJudge.Select(r => r.Instruction).ToHashSet());
        Assert.Subset(splits["dev"], Tiny.DevJudge.Select(r => r.Instruction).ToHashSet());
    }

    [Theory]
    [MemberData(nameof(FamilyNames))]
    public void Every_answered_record_is_graded_as_the_checker_grades_it(string name)
    {
        var family = TaskFamilies.Find(name)!;
        var set = name == Tiny.Task ? Tiny : SeedBuilder.Build(family, seed: 1);
        foreach (var r in set.Ift.Concat(set.Dev).Concat(set.Test))
            Assert.True(family.CheckKnown(r.Instruction, r.Answer!).Correct, $"{r.Instruction} -> {r.Answer}");
        foreach (var r in set.Eft.Concat(set.DevJudge).Concat(set.TestJudge))
        {
            var g = family.CheckKnown(r.Instruction, r.Answer!);
            Assert.Equal(g.Score, r.Score);
            Assert.Equal(g.Judgement, r.Judgement);
            Assert.EndsWith($"Score: {r.Score}", r.Judgement);
        }
    }

    [Fact]
    public void Eft_scores_are_balanced_across_0_to_5()
    {
        var counts = Tiny.Eft.GroupBy(r => r.Score!.Value).ToDictionary(g => g.Key, g => g.Count());
        Assert.Equal(Enumerable.Range(0, 6), counts.Keys.Order());
        Assert.True(counts.Values.Max() - counts.Values.Min() <= 1, string.Join(", ", counts.OrderBy(c => c.Key).Select(c => $"{c.Key}:{c.Value}")));
        // Answers of one instruction differ, so the judge must read the answer, not the instruction.
        foreach (var g in Tiny.Eft.GroupBy(r => r.Instruction))
            Assert.Equal(g.Count(), g.Select(r => r.Answer).Distinct().Count());
    }

    [Fact]
    public void Judge_eval_answers_of_one_instruction_have_distinct_scores()
    {
        foreach (var g in Tiny.TestJudge.GroupBy(r => r.Instruction))
        {
            Assert.Equal(Tiny.Sizes.JudgeEvalAnswers, g.Count());
            Assert.Equal(g.Count(), g.Select(r => r.Score).Distinct().Count());
        }
    }

    [Theory]
    [MemberData(nameof(FamilyNames))]
    public void Generation_is_deterministic_per_seed(string name)
    {
        var family = TaskFamilies.Find(name)!;
        var sizes = family.DefaultSizes with { Ift = 200, Eft = 120, Prompts = 50, Dev = 30, Test = 100, JudgeEval = 10 };
        byte[] Bytes(long seed) => SeedBuilder.Build(family, seed, sizes).Files().SelectMany(f => SeedBuilder.ToJsonl(f.Records)).ToArray();
        Assert.Equal(Bytes(5), Bytes(5));
        Assert.NotEqual(Bytes(5), Bytes(6));
    }

    [Fact]
    public void The_test_split_does_not_depend_on_the_sizes_of_other_splits()
    {
        var small = SeedBuilder.Build(new LettersTask(), 1, Tiny.Sizes with { Ift = 10, Eft = 12, Prompts = 5 });
        Assert.Equal(Tiny.Test, small.Test);
    }

    [Fact]
    public void Asking_for_more_instructions_than_the_family_has_fails_with_a_clear_message()
    {
        var e = Assert.Throws<InvalidOperationException>(() =>
            SeedBuilder.Build(new AdditionTask(), 1, new SeedSizes { Ift = 9000, Test = 10 }));
        Assert.Contains("ran out of distinct instructions", e.Message);
    }

    [Fact]
    public void Written_files_are_jsonl_in_the_seed_formats_and_match_the_manifest()
    {
        var dir = Directory.CreateTempSubdirectory("srlm-seed-").FullName;
        try
        {
            var set = SeedBuilder.Build(new AdditionTask(), 3);
            var entries = SeedBuilder.Write(set, dir);
            foreach (var (file, records) in set.Files())
            {
                var lines = File.ReadAllLines(Path.Combine(dir, file));
                Assert.Equal(records.Count, lines.Length);
                Assert.Equal(records.Count, entries[file].Records);
                foreach (var line in lines)
                {
                    using var doc = JsonDocument.Parse(line);
                    var keys = doc.RootElement.EnumerateObject().Select(p => p.Name).ToArray();
                    string[] expected = file switch
                    {
                        "eft.jsonl" or "dev_judge.jsonl" or "test_judge.jsonl" => ["instruction", "answer", "judgement", "score"],
                        "prompts.jsonl" => ["instruction"],
                        _ => ["instruction", "answer"],
                    };
                    Assert.Equal(expected, keys);
                }
                // Every split reads back through the run's seed reader of its kind, unchanged.
                var path = Path.Combine(dir, file);
                IReadOnlyList<SeedRecord> back = file switch
                {
                    "eft.jsonl" or "dev_judge.jsonl" or "test_judge.jsonl" =>
                        SeedReader.ReadEft(path).OrThrow().Select(r => new SeedRecord(r.Instruction, r.Answer, r.Judgement, r.Score)).ToList(),
                    "prompts.jsonl" => SeedReader.ReadPrompts(path).OrThrow().Select(r => new SeedRecord(r.Instruction)).ToList(),
                    _ => SeedReader.ReadIft(path).OrThrow().Select(r => new SeedRecord(r.Instruction, r.Answer)).ToList(),
                };
                Assert.Equal(records, back);
            }
            var template = File.ReadAllText(Path.Combine(dir, SeedSet.JudgeTemplateFile));
            Assert.Contains("{instruction}", template);
            Assert.Contains("{response}", template);
            Assert.Contains("Score: <0-5>", template);
            using var manifest = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, SeedSet.ManifestFile)));
            Assert.Equal("addition", manifest.RootElement.GetProperty("task").GetString());
            Assert.Equal(entries["test.jsonl"].Sha256, manifest.RootElement.GetProperty("files").GetProperty("test.jsonl").GetProperty("sha256").GetString());
        }
        finally { Directory.Delete(dir, true); }
    }
}
