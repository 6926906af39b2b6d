namespace Srlm.IntegrationTests.Pipeline;

[Collection(SmokeRunCollection.Name)]
public sealed class SmokeRunTests(SmokeRunFixture run, ITestOutputHelper output)
{
    private static readonly string[] EntryFields =
    [
        "model", "iteration", "checkpoint", "accuracy", "judge_pairwise_accuracy", "judge_spearman", "judge_kendall_tau",
        "control_accuracy", "prompts", "candidates", "judgments", "unparseable", "pairs", "dropped_ties", "too_long",
        "mean_response_tokens", "mean_chosen_tokens", "mean_rejected_tokens", "dpo_rewards_accuracies", "seconds",
    ];

    [Fact]
    public void Smoke_run_completes_with_pairs_parseable_judgements_and_dpo_steps()
    {
        output.WriteLine(run.Output);
        output.WriteLine($"smoke run took {run.Elapsed.TotalSeconds:0} s");
        Assert.False(run.Result.Interrupted);
        Assert.Equal(RunState.Completed, run.Result.State);
        var report = run.Result.Report!;
        Assert.Equal(["M1", "M2", "M3"], report.Iterations.Select(e => e.Model));
        foreach (var e in report.Iterations.Take(2))
        {
            Assert.True(e.Pairs > 0, $"{e.Model}: no pairs");
            Assert.True(e.Unparseable < e.Judgments, $"{e.Model}: every judgement unparseable");
            Assert.Equal(e.Candidates * 3, e.Judgments);
            Assert.True(e.DpoSteps > 0, $"{e.Model}: no DPO steps");
            Assert.Equal(e.Prompts, e.Pairs + e.DroppedTies + e.DroppedOther + e.TooLong);
        }
        Assert.Null(report.Iterations[2].Pairs);
        Assert.Equal(0, report.Leakage);
        Assert.Equal(0, report.Duplicates);
        Assert.All(report.Iterations, e => Assert.NotNull(e.Accuracy));
        // The control chain: C1 is M1 itself, C2 and C3 were trained and evaluated beside M2 and M3.
        Assert.All(report.Iterations, e => Assert.NotNull(e.ControlAccuracy));
        Assert.Equal(report.Iterations[0].Accuracy, report.Iterations[0].ControlAccuracy);
    }

    [Fact]
    public void Report_json_has_the_schema_with_one_entry_per_model()
    {
        var dir = run.Result.Directory;
        Assert.True(File.Exists(Path.Combine(dir, "report.md")));
        Assert.True(File.Exists(Path.Combine(dir, "accuracy.png")));
        Assert.True(File.Exists(Path.Combine(dir, "length.png")));
        Assert.True(File.Exists(Path.Combine(dir, "judge_scores_i1.png")));
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "report.json")));
        var root = doc.RootElement;
        Assert.Equal(run.Result.RunId, root.GetProperty("run_id").GetString());
        Assert.Equal(7, root.GetProperty("seed").GetInt64());
        Assert.Equal("pool", root.GetProperty("prompt_source").GetString());
        Assert.Equal(0, root.GetProperty("leakage").GetInt32());
        var entries = root.GetProperty("iterations").EnumerateArray().ToList();
        Assert.Equal(3, entries.Count);
        foreach (var e in entries)
            foreach (var f in EntryFields)
                Assert.True(e.TryGetProperty(f, out _), $"report.json iteration entry lacks \"{f}\"");
    }

    [Fact]
    public async Task Every_checkpoint_loads_and_generates()
    {
        await using var store = await SqliteArtifactStore.OpenAsync(Path.Combine(run.Result.Directory, PipelineHost.StoreFile));
        var checkpoints = await store.ListAsync<CheckpointRecord>(ArtifactQuery.OfRun(run.Result.RunId));
        Assert.Equal([1, 2, 3], checkpoints.Where(c => c.IsMain).Select(c => c.Iteration).Order());
        Assert.Equal([2, 3], checkpoints.Where(c => !c.IsMain).Select(c => c.Iteration).Order());
        Assert.All(checkpoints.Where(c => !c.IsMain), c => Assert.Equal(CheckpointRecord.ControlOrigin, c.Origin));
        var hashes = new HashSet<string>();
        foreach (var c in checkpoints)
        {
            using var lm = LanguageModel.Load(c.Location);
            var gen = new TextGenerator(lm.Model, lm.Tokenizer);
            var outputs = gen.Generate([lm.Template.Format("What is 12 + 34?")], [1UL], new SamplingOptions { Temperature = 0, MaxNewTokens = 4, StopAtEos = false });
            Assert.Equal(4, outputs[0].TokenIds.Length);
            hashes.Add(c.Files.Single(f => f.Path.EndsWith(".safetensors", StringComparison.Ordinal)).Sha256);
        }
        Assert.Equal(5, hashes.Count); // every DPO round (main and control) changed the weights
    }
}
