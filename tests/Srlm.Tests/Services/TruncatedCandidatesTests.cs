namespace Srlm.Tests.Services;

/// <summary>Issue 20 end to end: `srlm run` on the smoke spec with candidates cut at a few new tokens. Finish reasons are
/// stored on prompts' candidates and judgements, `truncated` is counted in the report, no exported pair has a cut
/// chosen answer, "lowest" lets cut answers be rejected only, and an iteration left with no pair fails the run in one
/// line that gives the reasons.</summary>
[Collection(TrainingCollection.Name)]
public sealed class TruncatedCandidatesTests
{
    private static string Smoke
    {
        get
        {
            for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
                if (File.Exists(Path.Combine(d.FullName, "Pipeline.sln"))) return Path.Combine(d.FullName, "samples", "smoke");
            throw new DirectoryNotFoundException("Pipeline.sln not found above " + AppContext.BaseDirectory);
        }
    }

    /// <summary>The smoke spec, one iteration, no evaluation or control, candidates limited to <paramref name="maxNew"/> tokens.</summary>
    private static string WriteSpec(string dir, int maxNew, string? truncated)
    {
        var spec = JsonNode.Parse(File.ReadAllText(Path.Combine(Smoke, "run.json")), documentOptions: new() { CommentHandling = System.Text.Json.JsonCommentHandling.Skip })!.AsObject();
        spec["iterations"] = 1;
        spec.Remove("evaluation");
        spec.Remove("control");
        spec["models"] = new JsonObject { ["m1"] = Path.Combine(Smoke, "m1") };
        spec["seed_data"] = new JsonObject { ["ift"] = Path.Combine(Smoke, "seed", "ift.jsonl"), ["eft"] = Path.Combine(Smoke, "seed", "eft.jsonl") };
        spec["prompts"]!["pool_file"] = Path.Combine(Smoke, "seed", "prompts.jsonl");
        spec["responses"]!["sampling"]!["max_new_tokens"] = maxNew;
        if (truncated is not null) spec["pairs"]!["truncated"] = truncated;
        var path = Path.Combine(dir, "run.json");
        File.WriteAllText(path, spec.ToJsonString());
        return path;
    }

    private static async Task<(RunPipelineResult Result, List<JsonObject> Pairs, IReadOnlyList<CandidateRecord> Candidates, IReadOnlyList<JudgementRecord> Judgements)> RunAsync(
        string root, int maxNew, string? truncated)
    {
        Directory.CreateDirectory(root);
        var spec = WriteSpec(root, maxNew, truncated);
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(8));
        var result = await RunPipeline.ExecuteAsync(new RunPipelineOptions { SpecPath = spec, Directory = Path.Combine(root, "run"), Quiet = true }, TextWriter.Null, timeout.Token);
        await using var store = await SqliteArtifactStore.OpenAsync(Path.Combine(root, "run", PipelineHost.StoreFile));
        var text = new StringWriter();
        await PairExport.WriteJsonlAsync(store, result.RunId, null, text);
        var pairs = text.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        var candidates = await store.ListAsync<CandidateRecord>(ArtifactQuery.OfRun(result.RunId, 1));
        var judgements = await store.ListAsync<JudgementRecord>(ArtifactQuery.OfRun(result.RunId, 1));
        return (result, pairs, candidates, judgements);
    }

    [Fact]
    public async Task Cut_candidates_are_counted_stored_with_their_reason_and_never_chosen()
    {
        using var dir = new Tiny.TempDir();
        var (drop, dropPairs, candidates, judgements) = await RunAsync(dir.Sub("drop"), maxNew: 3, truncated: null);
        Assert.Equal(RunState.Completed, drop.State);
        var entry = drop.Report!.Iterations[0];
        Assert.All(candidates, c => Assert.Contains(c.FinishReason, new[] { FinishReasons.Eos, FinishReasons.Stop, FinishReasons.Length }));
        Assert.All(judgements, j => Assert.NotNull(j.FinishReason));
        long cut = candidates.Count(c => c.FinishReason == FinishReasons.Length);
        Assert.True(cut > 0, "no candidate was cut at 3 new tokens");
        Assert.True(cut < candidates.Count, "every candidate was cut at 3 new tokens");
        Assert.Equal(cut, entry.Truncated);
        // A cut answer wrote exactly the limit; an answer ended by its end token wrote fewer (the EOS is not counted).
        Assert.All(candidates.Where(c => c.FinishReason == FinishReasons.Length), c => Assert.Equal(3, c.TokenCount));
        Assert.NotEmpty(dropPairs);
        Assert.All(dropPairs, p => Assert.NotEqual(FinishReasons.Length, (string?)p["chosen_finish_reason"]));
        Assert.All(dropPairs, p => Assert.NotEqual(FinishReasons.Length, (string?)p["rejected_finish_reason"]));
        Assert.Equal(entry.Prompts, entry.Pairs + entry.DroppedTies + entry.DroppedOther + entry.DroppedTruncated + entry.TooLong);
        var md = File.ReadAllText(Path.Combine(drop.Directory, "report.md"));
        Assert.Contains("| truncated |", md);

        var (lowest, lowestPairs, _, _) = await RunAsync(dir.Sub("lowest"), maxNew: 3, truncated: "lowest");
        Assert.Equal(RunState.Completed, lowest.State);
        Assert.All(lowestPairs, p => Assert.NotEqual(FinishReasons.Length, (string?)p["chosen_finish_reason"]));
        Assert.Contains(lowestPairs, p => (string?)p["rejected_finish_reason"] == FinishReasons.Length);
    }

    [Fact]
    public async Task An_iteration_with_no_pair_fails_the_run_with_the_reason_counts()
    {
        using var dir = new Tiny.TempDir();
        // One new token: no answer of the addition task ends within it.
        var (run, pairs, candidates, _) = await RunAsync(dir.Sub("none"), maxNew: 1, truncated: null);
        Assert.Equal(RunState.Failed, run.State);
        Assert.Empty(pairs);
        var entry = run.Report!.Iterations[0];
        Assert.Equal(candidates.Count, entry.Truncated);
        Assert.Equal(entry.Prompts, entry.DroppedTruncated + entry.DroppedOther + entry.DroppedTies);
        var reason = run.Report.FailureReason!;
        Assert.DoesNotContain('\n', reason);
        Assert.Contains($"{entry.DroppedTruncated} had too few candidates not cut by the token limit ({candidates.Count} of {candidates.Count} candidates ended by length)", reason);
    }
}
