namespace Srlm.Tests.Tasks;

public class SampleSeedTests
{
    private static List<string> Dirs() =>
        Directory.GetDirectories(Path.Combine(ServiceIndependenceTests.RepoRoot(), "samples"))
            .Select(d => Path.Combine(d, "seed"))
            .Where(d => File.Exists(Path.Combine(d, SeedSet.ManifestFile)))
            .Select(d => Path.GetRelativePath(ServiceIndependenceTests.RepoRoot(), d))
            .ToList();

    public static TheoryData<string> SampleSeedDirs() => new(Dirs());

    [Fact]
    public void The_tiny_and_smoke_samples_have_seed_data()
    {
        var dirs = Dirs();
        Assert.Contains(Path.Combine("samples", "tiny", "seed"), dirs);
        Assert.Contains(Path.Combine("samples", "smoke", "seed"), dirs);
    }

    [Theory]
    [InlineData("smoke")]
    [InlineData("tiny")]
    [InlineData("smollm2")]
    public void Each_sample_run_spec_is_valid_and_names_files_that_exist(string sample)
    {
        var dir = Path.Combine(ServiceIndependenceTests.RepoRoot(), "samples", sample);
        var spec = Srlm.Contracts.Spec.RunSpecJson.Load(Path.Combine(dir, "run.json"));
        Assert.Empty(Srlm.Contracts.Spec.RunSpecValidator.Validate(spec));
        var files = new[] { spec.SeedData.Ift, spec.SeedData.Eft, spec.Prompts.PoolFile, spec.Judge.TemplateFile, spec.Evaluation?.HeldOut, spec.Evaluation?.JudgePairs };
        foreach (var f in files.OfType<string>())
            Assert.True(File.Exists(Path.Combine(dir, f)), $"samples/{sample}/run.json names {f}, which does not exist");
    }

    [Theory]
    [MemberData(nameof(SampleSeedDirs))]
    public void Committed_seed_files_equal_a_regeneration_from_their_manifest(string relDir)
    {
        var dir = Path.Combine(ServiceIndependenceTests.RepoRoot(), relDir);
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, SeedSet.ManifestFile)));
        var m = doc.RootElement;
        var family = TaskFamilies.Find(m.GetProperty("task").GetString()!)!;
        var z = m.GetProperty("sizes");
        var sizes = new SeedSizes
        {
            Ift = z.GetProperty("ift").GetInt32(), Eft = z.GetProperty("eft").GetInt32(),
            EftAnswersPerInstruction = z.GetProperty("eft_answers_per_instruction").GetInt32(),
            Prompts = z.GetProperty("prompts").GetInt32(), Dev = z.GetProperty("dev").GetInt32(), Test = z.GetProperty("test").GetInt32(),
            JudgeEval = z.GetProperty("judge_eval").GetInt32(), JudgeEvalAnswers = z.GetProperty("judge_eval_answers").GetInt32(),
        };
        var fresh = Directory.CreateTempSubdirectory("srlm-seed-").FullName;
        try
        {
            var entries = SeedBuilder.Write(SeedBuilder.Build(family, m.GetProperty("seed").GetInt64(), sizes), fresh);
            foreach (var (file, (_, sha)) in entries)
            {
                Assert.Equal(sha, m.GetProperty("files").GetProperty(file).GetProperty("sha256").GetString());
                Assert.Equal(sha, Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(Path.Combine(dir, file)))));
            }
        }
        finally { Directory.Delete(fresh, true); }
    }

    [Fact]
    public async Task Seed_verb_writes_every_file_and_refuses_a_non_empty_folder_or_unknown_task()
    {
        var dir = Directory.CreateTempSubdirectory("srlm-seed-").FullName;
        try
        {
            var cmd = new SeedCommand();
            Assert.Equal(0, await cmd.RunAsync(["--task", "addition", "--out", dir, "--seed", "4", "--test", "50"], default));
            foreach (var f in new[] { "ift.jsonl", "eft.jsonl", "prompts.jsonl", "dev.jsonl", "dev_judge.jsonl", "test.jsonl", "test_judge.jsonl", SeedSet.JudgeTemplateFile, SeedSet.ManifestFile })
                Assert.True(File.Exists(Path.Combine(dir, f)), f);
            Assert.Equal(50, File.ReadAllLines(Path.Combine(dir, "test.jsonl")).Length);

            var e = await Assert.ThrowsAsync<UsageException>(() => cmd.RunAsync(["--task", "addition", "--out", dir], default));
            Assert.Contains("not empty", e.Message);
            Assert.Equal(0, await cmd.RunAsync(["--task", "addition", "--out", dir, "--force"], default));
            e = await Assert.ThrowsAsync<UsageException>(() => cmd.RunAsync(["--task", "poems", "--out", dir + "-x"], default));
            Assert.Contains("unknown task 'poems'", e.Message);
            e = await Assert.ThrowsAsync<UsageException>(() => cmd.RunAsync(["--task", "addition", "--out", dir + "-y", "--ift", "-3"], default));
            Assert.Contains("--ift", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }
}
