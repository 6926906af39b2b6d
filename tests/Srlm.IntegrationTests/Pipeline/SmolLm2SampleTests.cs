using Srlm.Model.ChatTemplates;

namespace Srlm.IntegrationTests.Pipeline;

/// <summary>The SmolLM2 sample's recipe (samples/smollm2/run.json) run on its CI fixture (samples/smollm2/fixture/m1):
/// a real ChatML instruct tokenizer and chat template (Qwen2.5's, default system turn included, end of turn
/// <c>&lt;|im_end|&gt;</c>) over a shrunken model that the fixture script trained on the sample's seed data. The spec is
/// the sample's, with the fixture as M1 (it already is the SFT of that seed data), one iteration and small counts.</summary>
public sealed class SmolLm2SampleTests(ITestOutputHelper output) : IDisposable
{
    private const string DefaultSystemTurn = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n";

    private readonly string _root = Path.Combine(Path.GetTempPath(), $"srlm-smollm2-{Guid.NewGuid():N}");

    public void Dispose()
    {
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    private static readonly string[] PoolInstructions =
    [
        "Name a fruit that is red.", "What is the capital of Spain?", "Give a synonym for small.",
        "How many months are in a year?", "Suggest a name for a pet cat.", "What do birds use to fly?",
        "Name a vegetable that is green.", "What is the opposite of up?",
    ];

    private static string Sample => Path.Combine(SmokeRunFixture.RepoRoot(), "samples", "smollm2");

    private static string Fixture => Path.Combine(Sample, "fixture", "m1");

    /// <summary>The sample's spec and seed files copied under the test folder, with the test's changes applied.</summary>
    private string SampleCopy(Action<JsonObject> edit)
    {
        var to = Path.Combine(_root, "spec");
        Directory.CreateDirectory(Path.Combine(to, "seed"));
        foreach (var f in Directory.GetFiles(Path.Combine(Sample, "seed"), "*.jsonl")) File.Copy(f, Path.Combine(to, "seed", Path.GetFileName(f)));
        var spec = JsonNode.Parse(File.ReadAllText(Path.Combine(Sample, "run.json")), documentOptions: new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true })!.AsObject();
        File.WriteAllLines(Path.Combine(to, "pool.jsonl"), PoolInstructions.Select(i => JsonSerializer.Serialize(new { instruction = i })));
        edit(spec);
        var path = Path.Combine(to, "run.json");
        File.WriteAllText(path, spec.ToJsonString());
        return path;
    }

    [SkippableFact]
    public async Task The_sample_recipe_runs_an_iteration_on_a_real_chat_template_and_tokenizer()
    {
        Skip.IfNot(File.Exists(Path.Combine(Fixture, "model.safetensors")), $"no fixture checkpoint at {Fixture} (samples/smollm2/fixture/make-fixture.sh writes it)");
        var spec = SampleCopy(s =>
        {
            s["models"] = new JsonObject { ["m1"] = Fixture };
            s["iterations"] = 1;
            // The fixture is too small to write a new task from raw few-shot text (it ends the line at once), so this
            // run draws its prompts from a pool; self-instruction itself is covered on the smoke model (PipelinePathsTests).
            s["prompts"]!["source"] = "pool";
            s["prompts"]!["pool_file"] = "pool.jsonl";
            s["prompts"]!["per_iteration"] = 6;
            s["prompts"]!["shards"] = 1;
            s["prompts"]!["oversample"] = 2.0;
            s["responses"]!["sampling"]!["max_new_tokens"] = 40;
            s["judge"]!["sampling"]!["max_new_tokens"] = 48;
            s["training"]!["dpo"]!["micro_batch_size"] = 2;
            s["evaluation"]!["max_items"] = 2;
            s["evaluation"]!["max_new_tokens"] = 24;
        });
        Environment.SetEnvironmentVariable("SRLM_THREADS", Environment.GetEnvironmentVariable("SRLM_THREADS") ?? "2");
        var text = new StringWriter();
        var sw = System.Diagnostics.Stopwatch.StartNew();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(10));
        var result = await RunPipeline.ExecuteAsync(new RunPipelineOptions { SpecPath = spec, Directory = Path.Combine(_root, "run"), Quiet = true }, text, timeout.Token);
        output.WriteLine($"{sw.Elapsed.TotalSeconds:0} s");
        output.WriteLine(text.ToString());
        Assert.Equal(RunState.Completed, result.State);

        await using var store = await SqliteArtifactStore.OpenAsync(Path.Combine(result.Directory, PipelineHost.StoreFile));
        var m1Id = Ids.Checkpoint(result.RunId, 0);
        var checkpoints = (await store.ListAsync<CheckpointRecord>(ArtifactQuery.OfRun(result.RunId))).ToDictionary(c => c.Id);
        using var m1 = LanguageModel.Load(checkpoints[m1Id].Location);

        // Prompts go through the checkpoint's own chat template: Qwen2.5's default system turn, then the user turn, then
        // the assistant's header. Every candidate's stored prompt length is that rendering's token count.
        var chat = ChatFormat.Load(checkpoints[m1Id].Location)!;
        Assert.Equal("<|im_end|>", chat.EndOfTurn);
        var prompts = (await store.ListAsync<PromptRecord>(ArtifactQuery.OfRun(result.RunId))).ToDictionary(p => p.Id);
        Assert.NotEmpty(prompts);
        Assert.All(prompts.Values, p => Assert.Contains(p.Text, PoolInstructions));
        var candidates = await store.ListAsync<CandidateRecord>(ArtifactQuery.OfRun(result.RunId));
        Assert.NotEmpty(candidates);
        foreach (var c in candidates)
        {
            var rendered = m1.Template.Format(prompts[c.PromptId].Text);
            Assert.Equal(chat.Render([new ChatMessage("user", prompts[c.PromptId].Text)], addGenerationPrompt: true), rendered);
            Assert.StartsWith(DefaultSystemTurn + "<|im_start|>user\n", rendered, StringComparison.Ordinal);
            Assert.EndsWith("<|im_end|>\n<|im_start|>assistant\n", rendered, StringComparison.Ordinal);
            Assert.Equal(m1.Tokenizer.Encode(rendered, addBos: false, addEos: false).Count, c.PromptTokens);
        }

        // Generation ends at the end-of-turn token (finish reason eos; the token itself is not in the text), and every
        // candidate and judgement stores why it ended.
        Assert.All(candidates, c => Assert.Contains(c.FinishReason, new[] { FinishReasons.Eos, FinishReasons.Length }));
        Assert.All(candidates, c => Assert.DoesNotContain("<|im_end|>", c.Text, StringComparison.Ordinal));
        int eos = candidates.Count(c => c.FinishReason == FinishReasons.Eos);
        output.WriteLine($"candidates: {candidates.Count}, ended at <|im_end|>: {eos}");
        Assert.True(eos * 2 >= candidates.Count, $"only {eos} of {candidates.Count} candidates ended at <|im_end|>");
        var judgements = await store.ListAsync<JudgementRecord>(ArtifactQuery.OfRun(result.RunId));
        Assert.NotEmpty(judgements);
        Assert.All(judgements, j => Assert.NotNull(j.FinishReason));
        Assert.Contains(judgements, j => j.FinishReason == FinishReasons.Eos && j.RawText.Contains("Score: ", StringComparison.Ordinal));
        foreach (var j in judgements.Take(3)) output.WriteLine($"judgement ({j.FinishReason}): {j.RawText}");

        // Pairs formed from the judge's scores, and DPO trained M2 on them.
        var pairs = await store.ListAsync<PairRecord>(ArtifactQuery.OfRun(result.RunId));
        output.WriteLine($"pairs: {pairs.Count}");
        Assert.NotEmpty(pairs);
        var m2Id = Ids.Checkpoint(result.RunId, 1);
        var m2 = checkpoints[m2Id];
        Assert.Equal(m1Id, m2.ParentCheckpointId);
        Assert.True(result.Report!.Iterations.Sum(e => e.DpoSteps ?? 0) > 0, "no DPO steps");
        Assert.Contains(await store.ListJobsAsync(result.RunId), j => (j.Kind, j.State, j.OutputCheckpointId) == (JobKind.Dpo, JobState.Completed, m2Id));

        // M2 loads, and keeps the template, its end-of-turn token and the end ids of generation_config.json.
        using var loaded = LanguageModel.Load(m2.Location);
        var chat2 = ChatFormat.Load(m2.Location)!;
        Assert.Equal(chat.EndOfTurn, chat2.EndOfTurn);
        Assert.Equal(chat.Prompt("Name a colour."), chat2.Prompt("Name a colour."));
        Assert.Equal(m1.Template.Format("Name a colour."), loaded.Template.Format("Name a colour."));
        Assert.Equal(m1.Template.StopTokenIds(m1.Tokenizer), loaded.Template.StopTokenIds(loaded.Tokenizer));
        Assert.Equal(File.ReadAllText(Path.Combine(Fixture, "tokenizer.json")), File.ReadAllText(Path.Combine(m2.Location, "tokenizer.json")));

        // The evaluation of the sample (every checkpoint against M1, pairwise) ran for M2; M1 has no score against itself.
        var evaluations = (await store.ListAsync<EvaluationRecord>(ArtifactQuery.OfRun(result.RunId))).ToDictionary(e => e.CheckpointId);
        Assert.False(evaluations[m1Id].Metrics.ContainsKey("win_rate"));
        var m2Eval = evaluations[m2Id].Metrics;
        Assert.Equal(2, m2Eval["wins"] + m2Eval["losses"] + m2Eval["ties"] + m2Eval["win_rate_unjudged"]);
    }
}
