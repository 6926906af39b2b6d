namespace Srlm.Tests.Cli;

/// <summary>Issue 20: token limits sized for a real instruct model, and a spec whose prompts plus a limit cannot fit
/// the starting model's context refused at submission with one line naming the field (never cut at run time).</summary>
public sealed class ContextFitTests() : StoreFolderTest("srlm-fit-")
{
    private static string Smoke => Path.Combine(Srlm.Tests.Deployment.ComposeConfig.RepoRoot, "samples", "smoke");

    /// <summary>samples/smoke/run.json edited; the smoke M1 has a 256-position context and nearly one token a character.</summary>
    private static RunSpec SmokeSpec(Action<JsonObject> edit)
    {
        var node = JsonNode.Parse(File.ReadAllText(Path.Combine(Smoke, "run.json")), documentOptions: new System.Text.Json.JsonDocumentOptions
        { CommentHandling = System.Text.Json.JsonCommentHandling.Skip, AllowTrailingCommas = true })!.AsObject();
        edit(node);
        return RunSpecJson.Parse(node.ToJsonString());
    }

    private Task<UploadedRun> Upload(RunSpec spec, string runId) => RunUpload.UploadAsync(Stores.Artifacts, Stores.Checkpoints, spec, Smoke, runId, default);

    [Fact]
    public void Defaults_are_sized_for_an_instruct_model_and_a_partial_sampling_object_keeps_its_stages_defaults()
    {
        var spec = RunSpecJson.Parse("""{ "schema_version": 1, "name": "d", "models": { "m1": "m1" }, "seed_data": { "ift": "i.jsonl" }, "evaluation": { "held_out": "h.jsonl", "evaluator": "addition" } }""");
        Assert.Equal((1024, 512, 256, 1024),
            (spec.Responses.Sampling.MaxNewTokens, spec.Judge.Sampling.MaxNewTokens, spec.Prompts.Sampling.MaxNewTokens, spec.Evaluation!.MaxNewTokens));

        // Only a temperature given: the judge keeps its 512 tokens and top-p, the prompts their 256 tokens.
        var partial = RunSpecJson.Parse("""
            { "schema_version": 1, "name": "d", "models": { "m1": "m1" }, "seed_data": { "ift": "i.jsonl" },
              "judge": { "sampling": { "temperature": 0 } }, "prompts": { "sampling": { "top_p": 0.5 } },
              "responses": { "sampling": { "max_new_tokens": 7 } } }
            """);
        Assert.Equal((0.0, 0.9, 512), (partial.Judge.Sampling.Temperature, partial.Judge.Sampling.TopP, partial.Judge.Sampling.MaxNewTokens));
        Assert.Equal((0.6, 0.5, 256), (partial.Prompts.Sampling.Temperature, partial.Prompts.Sampling.TopP, partial.Prompts.Sampling.MaxNewTokens));
        Assert.Equal((0.7, 0.9, 7), (partial.Responses.Sampling.Temperature, partial.Responses.Sampling.TopP, partial.Responses.Sampling.MaxNewTokens));

        // A stored spec (every field written) reads back unchanged.
        Assert.Equal(RunSpecJson.Serialize(partial), RunSpecJson.Serialize(RunSpecJson.Parse(RunSpecJson.Serialize(partial))));
    }

    [Fact]
    public async Task The_smoke_spec_fits_its_model()
    {
        var up = await Upload(SmokeSpec(_ => { }), "fit-ok");
        Assert.NotNull(await Stores.Artifacts.GetRunAsync(up.RunId));
    }

    [Theory]
    [InlineData("responses", "responses.sampling.max_new_tokens", "a prompt of prompts.pool_file")]
    [InlineData("judge", "judge.sampling.max_new_tokens", "a judge prompt")]
    [InlineData("evaluation", "evaluation.max_new_tokens", "a prompt of evaluation.held_out")]
    [InlineData("self_instruct", "prompts.sampling.max_new_tokens", "the self-instruct few-shot prompt")]
    public async Task A_limit_past_the_models_context_is_refused_naming_the_field_and_no_run_is_stored(string stage, string field, string what)
    {
        var spec = SmokeSpec(s =>
        {
            switch (stage)
            {
                case "responses": s["responses"]!["sampling"]!["max_new_tokens"] = 250; break;
                case "judge": s["judge"]!["sampling"]!["max_new_tokens"] = 200; break;
                case "evaluation": s["evaluation"]!["max_new_tokens"] = 250; break;
                // The default 256 new tokens after a few-shot text of nearly as many characters.
                case "self_instruct": s["prompts"]!["source"] = "self_instruct"; break;
            }
        });
        var e = await Assert.ThrowsAsync<UsageException>(() => Upload(spec, "fit-" + stage));
        Assert.StartsWith($"spec.{field}: ", e.Message);
        Assert.Contains(what, e.Message);
        Assert.Contains("more than the 256 of models.m1 (config.json max_position_embeddings)", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.Null(await Stores.Artifacts.GetRunAsync("fit-" + stage));
    }

    [Fact]
    public async Task The_limit_that_just_fits_passes_and_one_more_token_is_refused()
    {
        // The longest held-out prompt, rendered by the smoke M1's layout, plus the answer limit: find the edge.
        var first = await Assert.ThrowsAsync<UsageException>(() => Upload(SmokeSpec(s => s["evaluation"]!["max_new_tokens"] = 256), "edge-0"));
        int prompt = int.Parse(System.Text.RegularExpressions.Regex.Match(first.Message, @"of up to (\d+) tokens").Groups[1].Value);
        Assert.InRange(prompt, 1, 255);
        await Upload(SmokeSpec(s => s["evaluation"]!["max_new_tokens"] = 256 - prompt), "edge-1");
        var over = await Assert.ThrowsAsync<UsageException>(() => Upload(SmokeSpec(s => s["evaluation"]!["max_new_tokens"] = 257 - prompt), "edge-2"));
        Assert.StartsWith($"spec.evaluation.max_new_tokens: {257 - prompt} new tokens after a prompt of evaluation.held_out of up to {prompt} tokens need 257 positions", over.Message);
    }

    [Fact]
    public async Task A_fixed_prompt_model_and_a_fixed_evaluation_judge_are_checked_against_their_own_context()
    {
        // The prompt model writes the self-instructed prompts: its few-shot text plus 256 new tokens do not fit.
        var prompts = await Assert.ThrowsAsync<UsageException>(() => Upload(SmokeSpec(s =>
        {
            s["prompts"]!["source"] = "self_instruct";
            s["models"]!["prompt_model"] = "m1";
        }), "fit-pm"));
        Assert.StartsWith("spec.prompts.sampling.max_new_tokens: 256 new tokens after the self-instruct few-shot prompt", prompts.Message);
        Assert.Contains("of models.prompt_model", prompts.Message);

        // The fixed judge of the win rate reads an instruction and two answers (pairwise): 100 tokens each are too many.
        var judge = await Assert.ThrowsAsync<UsageException>(() => Upload(SmokeSpec(s =>
        {
            s["evaluation"]!["evaluator"] = "judge_win_rate";
            s["evaluation"]!["judge_mode"] = "pairwise";
            s["evaluation"]!["judge_model"] = "m1";
            s["evaluation"]!["max_new_tokens"] = 100;
        }), "fit-ej"));
        Assert.StartsWith("spec.judge.sampling.max_new_tokens: 100 new tokens after an evaluation judge prompt", judge.Message);
        Assert.Contains("of evaluation.judge_model", judge.Message);
    }

    [Fact]
    public async Task A_run_of_no_iteration_is_not_checked_for_generation_limits()
    {
        // samples/smoke/sft.json: SFT only, with the default 1,024-token limits on a 256-position model.
        var spec = RunSpecJson.Load(Path.Combine(Smoke, "sft.json"));
        Assert.Equal(1024, spec.Responses.Sampling.MaxNewTokens);
        var up = await Upload(spec, "fit-sft");
        Assert.NotNull(await Stores.Artifacts.GetRunAsync(up.RunId));
    }
}
