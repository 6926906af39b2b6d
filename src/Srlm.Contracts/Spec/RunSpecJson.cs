using System.Text.Json.Nodes;

namespace Srlm.Contracts.Spec;

/// <summary>A spec that cannot be used; the message names the field at fault, e.g.
/// `spec.judge.samples: must be >= 1`.</summary>
public sealed class RunSpecException(string message) : Exception(message);

/// <summary>Reading and writing run specs (snake_case JSON, unknown fields are errors).</summary>
public static class RunSpecJson
{
    public const int CurrentSchemaVersion = 1;

    public static JsonSerializerOptions Options { get; } = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DictionaryKeyPolicy = JsonNamingPolicy.SnakeCaseLower,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
        WriteIndented = true,
    };

    /// <summary>Parses and validates; throws RunSpecException naming the field at fault.</summary>
    public static RunSpec Parse(string json)
    {
        RefuseExternalLoopJudge(json);
        RunSpec? spec;
        try
        {
            spec = JsonSerializer.Deserialize<RunSpec>(WithStageDefaults(json), Options);
        }
        catch (JsonException e)
        {
            var path = FieldPath(e.Path);
            var what = e.Message.Contains("could not be mapped", StringComparison.Ordinal)
                ? "unknown field"
                : e.Message.Split(". Path:", 2)[0].Split(" Path:", 2)[0];
            throw new RunSpecException($"{path}: {what}");
        }
        if (spec is null) throw new RunSpecException("spec: must be a JSON object");
        RunSpecValidator.ThrowIfInvalid(spec);
        return spec;
    }

    /// <summary>Reads a spec file; errors start with the file name.</summary>
    public static RunSpec Load(string path)
    {
        if (!File.Exists(path)) throw new RunSpecException($"{path}: spec file not found");
        try
        {
            return Parse(File.ReadAllText(path));
        }
        catch (RunSpecException e)
        {
            throw new RunSpecException($"{path}: {e.Message}");
        }
    }

    /// <summary>The loop's judge is the model being trained (M_t judges its own candidates: that is what makes the loop
    /// self-rewarding), so `judge` takes no model and no endpoint; an external judge belongs in evaluation.judge_model.</summary>
    private static void RefuseExternalLoopJudge(string json)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(json, new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true }); }
        catch (JsonException) { return; } // the deserializer names the fault
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("judge", out var judge) || judge.ValueKind != JsonValueKind.Object) return;
            foreach (var field in new[] { "model", "judge_model", "endpoint", "api_key_env" })
                if (judge.TryGetProperty(field, out _))
                    throw new RunSpecException($"spec.judge.{field}: the loop's judge is always the model being trained (M_t judges its own candidates, " +
                        "which is what makes the loop self-rewarding), so it takes no other model or endpoint; a fixed external judge can evaluate checkpoints as evaluation.judge_model");
        }
    }

    public static string Serialize(RunSpec spec) => JsonSerializer.Serialize(spec, Options);

    /// <summary>A stage's `sampling` object given without some of its fields takes that stage's defaults for them
    /// (not SamplingSpec's): `"judge": {"sampling": {"temperature": 0}}` keeps the judge's 512 new tokens.</summary>
    private static string WithStageDefaults(string json)
    {
        JsonNode? root;
        try { root = JsonNode.Parse(json, documentOptions: new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true }); }
        catch (JsonException) { return json; } // the deserializer reports it with its path
        if (root is not JsonObject o) return json;
        bool changed = false;
        void Fill(string stage, double temperature, int tokens)
        {
            if (o[stage] is not JsonObject s || s["sampling"] is not JsonObject sampling) return;
            if (!sampling.ContainsKey("temperature")) { sampling["temperature"] = temperature; changed = true; }
            if (!sampling.ContainsKey("top_p")) { sampling["top_p"] = StageDefaults.TopP; changed = true; }
            if (!sampling.ContainsKey("max_new_tokens")) { sampling["max_new_tokens"] = tokens; changed = true; }
        }
        Fill("prompts", StageDefaults.PromptTemperature, StageDefaults.PromptTokens);
        Fill("responses", StageDefaults.Temperature, StageDefaults.CandidateTokens);
        Fill("judge", StageDefaults.Temperature, StageDefaults.JudgeTokens);
        return changed ? o.ToJsonString() : json;
    }

    /// <summary>"$.judge.samples" -> "spec.judge.samples"; "$.pairs['x']" stays readable.</summary>
    internal static string FieldPath(string? jsonPath) =>
        string.IsNullOrEmpty(jsonPath) || jsonPath == "$" ? "spec" : "spec" + jsonPath[1..];
}

/// <summary>Checks a parsed spec; each problem is reported as `spec.a.b: what is wrong`.</summary>
public static class RunSpecValidator
{
    public static IReadOnlyList<string> Validate(RunSpec spec)
    {
        var errors = new List<string>();
        void Check(bool ok, string field, string message) { if (!ok) errors.Add($"spec.{field}: {message}"); }
        void Trainer(TrainerSpec? t, string field)
        {
            if (t is null) { errors.Add($"spec.{field}: must be an object"); return; }
            Check(t.LearningRate > 0, $"{field}.learning_rate", "must be > 0");
            Check(t.MinLearningRate >= 0 && t.MinLearningRate <= t.LearningRate, $"{field}.min_learning_rate", "must be in [0, learning_rate]");
            Check(t.WarmupSteps >= 0, $"{field}.warmup_steps", "must be >= 0");
            Check(t.Epochs >= 1, $"{field}.epochs", "must be >= 1");
            Check(t.MaxSteps is null or >= 1, $"{field}.max_steps", "must be >= 1");
            Check(t.BatchSize >= 1, $"{field}.batch_size", "must be >= 1");
            Check(t.MicroBatchSize >= 1 && t.BatchSize % Math.Max(1, t.MicroBatchSize) == 0, $"{field}.micro_batch_size", "must be >= 1 and divide batch_size");
            Check(t.WeightDecay >= 0, $"{field}.weight_decay", "must be >= 0");
            Check(t.MaxGradNorm >= 0, $"{field}.max_grad_norm", "must be >= 0");
            Check(t.Dropout >= 0 && t.Dropout < 1, $"{field}.dropout", "must be in [0, 1)");
            Check(t.SaveStateEverySteps >= 0, $"{field}.save_state_every_steps", "must be >= 0");
        }
        void Sampling(SamplingSpec? s, string field)
        {
            if (s is null) { errors.Add($"spec.{field}: must be an object"); return; }
            Check(s.Temperature >= 0, $"{field}.temperature", "must be >= 0");
            Check(s.TopP > 0 && s.TopP <= 1, $"{field}.top_p", "must be in (0, 1]");
            Check(s.MaxNewTokens >= 1, $"{field}.max_new_tokens", "must be >= 1");
        }

        Check(spec.SchemaVersion >= 1 && spec.SchemaVersion <= RunSpecJson.CurrentSchemaVersion, "schema_version",
            $"must be between 1 and {RunSpecJson.CurrentSchemaVersion} (this binary reads up to {RunSpecJson.CurrentSchemaVersion})");
        Check(!string.IsNullOrWhiteSpace(spec.Name), "name", "must not be empty");
        Check(spec.Iterations >= 0, "iterations", "must be >= 0 (0 = SFT only)");
        Check(spec.Iterations >= 1 || spec.Models?.M1 is null, "iterations", "must be >= 1 when models.m1 is given (there is no SFT to run)");

        if (spec.Models is null) errors.Add("spec.models: must be an object");
        else
        {
            int given = (spec.Models.Base is null ? 0 : 1) + (spec.Models.M1 is null ? 0 : 1) + (spec.Models.Init is null ? 0 : 1);
            Check(given >= 1, "models", "needs `base` (M0, SFT'd in the run), `init` (a new model trained from scratch) or `m1`");
            Check(given <= 1, "models.m1", "give exactly one of `base`, `init` and `m1`");
            Check(spec.Models.Dtype is null or "float32" or "bfloat16" or "float16", "models.dtype", $"must be \"float32\", \"bfloat16\" or \"float16\", got \"{spec.Models.Dtype}\"");
            Check(spec.Models.ChatTemplate is null || spec.Models.Init is null, "models.chat_template", "applies to a checkpoint folder (models.base or models.m1), not to models.init");
            if (spec.Models.PromptModel is { } pm) errors.AddRange(pm.Problems("models.prompt_model"));
            if (spec.Models.Init is { } init)
            {
                Check(init.Tokenizer is "char" or "bpe", "models.init.tokenizer", "must be \"char\" or \"bpe\"");
                Check(init.VocabSize >= 300, "models.init.vocab_size", "must be >= 300 (256 bytes + specials + merges)");
                Check(init.HiddenSize >= 8, "models.init.hidden_size", "must be >= 8");
                Check(init.Layers >= 1, "models.init.layers", "must be >= 1");
                Check(init.Heads >= 1 && init.HiddenSize % Math.Max(1, init.Heads) == 0, "models.init.heads", "must be >= 1 and divide hidden_size");
                Check(init.KvHeads >= 1 && init.Heads % Math.Max(1, init.KvHeads) == 0, "models.init.kv_heads", "must be >= 1 and divide heads");
                Check(init.IntermediateSize >= 0, "models.init.intermediate_size", "must be >= 0");
                Check(init.MaxPositionEmbeddings >= 16, "models.init.max_position_embeddings", "must be >= 16");
            }
        }

        if (spec.SeedData is null) errors.Add("spec.seed_data: must be an object");
        else
        {
            bool needsSeed = spec.Models?.Base is not null || spec.Models?.Init is not null;
            Check(!needsSeed || !string.IsNullOrWhiteSpace(spec.SeedData.Ift), "seed_data.ift", "required when models.base or models.init is given (SFT needs IFT data)");
            Check(spec.Prompts?.Source != PromptSources.SelfInstruct || !string.IsNullOrWhiteSpace(spec.SeedData.Ift),
                "seed_data.ift", "required by prompts.source \"self_instruct\" (the few-shot examples come from it)");
        }

        if (spec.Prompts is null) errors.Add("spec.prompts: must be an object");
        else
        {
            var p = spec.Prompts;
            Check(PromptSources.All.Contains(p.Source), "prompts.source", $"must be one of {string.Join(", ", PromptSources.All.Select(s => $"\"{s}\""))}");
            Check(p.Source != PromptSources.Pool || !string.IsNullOrWhiteSpace(p.PoolFile), "prompts.pool_file", "required when prompts.source is \"pool\"");
            Check(p.PerIteration >= 1, "prompts.per_iteration", "must be >= 1");
            Check(p.Shards >= 1, "prompts.shards", "must be >= 1");
            Check(p.Shards <= p.PerIteration, "prompts.shards", "must be <= prompts.per_iteration");
            Check(p.Oversample >= 1, "prompts.oversample", "must be >= 1");
            if (p.FewShot is null) errors.Add("spec.prompts.few_shot: must be an object");
            else
            {
                Check(p.FewShot.SeedExamples >= 1, "prompts.few_shot.seed_examples", "must be >= 1");
                Check(p.FewShot.GeneratedExamples >= 0, "prompts.few_shot.generated_examples", "must be >= 0");
            }
            Sampling(p.Sampling, "prompts.sampling");
            if (p.Filter is null) errors.Add("spec.prompts.filter: must be an object");
            else
            {
                Check(p.Filter.MinChars >= 1, "prompts.filter.min_chars", "must be >= 1");
                Check(p.Filter.MaxChars >= p.Filter.MinChars, "prompts.filter.max_chars", "must be >= prompts.filter.min_chars");
                Check(p.Filter.MaxRougeL > 0 && p.Filter.MaxRougeL <= 1, "prompts.filter.max_rouge_l", "must be in (0, 1]");
                Check(p.Filter.BannedWords is not null, "prompts.filter.banned_words", "must be a list");
            }
        }

        if (spec.Responses is null) errors.Add("spec.responses: must be an object");
        else
        {
            Check(spec.Responses.N >= 2, "responses.n", "must be >= 2 (a pair needs two candidates)");
            Sampling(spec.Responses.Sampling, "responses.sampling");
        }

        if (spec.Judge is null) errors.Add("spec.judge: must be an object");
        else
        {
            var j = spec.Judge;
            Check(j.Samples >= 1, "judge.samples", "must be >= 1");
            Check(j.MaxScore >= 1, "judge.max_score", "must be >= 1");
            Check(j.MaxBatch >= 1, "judge.max_batch", "must be >= 1");
            Check(j.Template is null || j.TemplateFile is null, "judge.template_file", "give either `template` or `template_file`, not both");
            if (j.Template is not null && !Judging.JudgePrompt.BuiltIn.ContainsKey(j.Template))
            {
                Check(j.Template.Contains("{instruction}", StringComparison.Ordinal), "judge.template", "must contain {instruction}");
                Check(j.Template.Contains("{response}", StringComparison.Ordinal), "judge.template", "must contain {response}");
            }
            Sampling(j.Sampling, "judge.sampling");
        }

        if (spec.Pairs is null) errors.Add("spec.pairs: must be an object");
        else
        {
            Check(spec.Pairs.MinValidScores >= 2, "pairs.min_valid_scores", "must be >= 2 (a pair needs two scored candidates)");
            Check(spec.Responses is null || spec.Pairs.MinValidScores <= spec.Responses.N, "pairs.min_valid_scores", "must be <= responses.n");
            Check(spec.Pairs.MaxTokens is null or >= 2, "pairs.max_tokens", "must be >= 2");
            Check(spec.Pairs.MinMargin >= 0, "pairs.min_margin", "must be >= 0");
            Check(spec.Pairs.Truncated is PairRulesSpec.TruncatedDrop or PairRulesSpec.TruncatedLowest, "pairs.truncated",
                $"must be \"{PairRulesSpec.TruncatedDrop}\" or \"{PairRulesSpec.TruncatedLowest}\", got '{spec.Pairs.Truncated}'");
            Check(spec.Training?.Dpo is null || spec.Training.Dpo.NllWeight >= 0, "training.dpo.nll_weight", "must be >= 0");
            Check(spec.Training?.Dpo is null || spec.Training.Dpo.ReplayPerPair >= 0, "training.dpo.replay_per_pair", "must be >= 0");
            Check(spec.Training?.Dpo is null || spec.Training.Dpo.ReplayWeight >= 0, "training.dpo.replay_weight", "must be >= 0");
            if (spec.Pairs.LengthControl is null) errors.Add("spec.pairs.length_control: must be an object");
            else Check(spec.Pairs.LengthControl.Margin >= 0, "pairs.length_control.margin", "must be >= 0");
        }

        if (spec.Training is null) errors.Add("spec.training: must be an object");
        else
        {
            Check(spec.Training.ContextLength is null or >= 8, "training.context_length", "must be >= 8");
            Trainer(spec.Training.Sft, "training.sft");
            Trainer(spec.Training.Dpo, "training.dpo");
            if (spec.Training.Dpo is { } d) Check(d.Beta > 0, "training.dpo.beta", "must be > 0");
        }

        if (spec.Control is { } control)
        {
            Check(control.Kind == "random_pairs", "control.kind", "must be \"random_pairs\"");
            Check(spec.Evaluation is not null, "control", "needs an evaluation section (the control arm is measured by it)");
        }
        if (spec.Evaluation is { } e)
        {
            Check(!string.IsNullOrWhiteSpace(e.HeldOut), "evaluation.held_out", "required when an evaluation section is given");
            Check(!string.IsNullOrWhiteSpace(e.Evaluator), "evaluation.evaluator", "required when an evaluation section is given");
            Check(e.MaxItems is null or >= 1, "evaluation.max_items", "must be >= 1");
            Check(e.MaxJudgeItems is null or >= 2, "evaluation.max_judge_items", "must be >= 2");
            Check(e.MaxNewTokens >= 1, "evaluation.max_new_tokens", "must be >= 1");
            Check(e.JudgeModel is null || e.Evaluator == EvaluationSpec.JudgeWinRate, "evaluation.judge_model",
                $"is the judge of evaluator \"{EvaluationSpec.JudgeWinRate}\" only (evaluator is \"{e.Evaluator}\")");
            if (e.JudgeModel is { } jm) errors.AddRange(jm.Problems("evaluation.judge_model"));
            Check(e.JudgeMode is EvaluationSpec.Pointwise or EvaluationSpec.Pairwise, "evaluation.judge_mode",
                $"must be \"{EvaluationSpec.Pointwise}\" or \"{EvaluationSpec.Pairwise}\"");
            Check(!string.IsNullOrWhiteSpace(e.Baseline), "evaluation.baseline",
                $"must be \"{EvaluationSpec.BaselineParent}\", \"{EvaluationSpec.BaselineM1}\" or a checkpoint folder");
            Check(e.JudgeMode == EvaluationSpec.Pointwise || e.Evaluator == EvaluationSpec.JudgeWinRate, "evaluation.judge_mode",
                $"applies to evaluator \"{EvaluationSpec.JudgeWinRate}\" only (evaluator is \"{e.Evaluator}\")");
            Check(e.Baseline == EvaluationSpec.BaselineParent || e.Evaluator == EvaluationSpec.JudgeWinRate, "evaluation.baseline",
                $"applies to evaluator \"{EvaluationSpec.JudgeWinRate}\" only (evaluator is \"{e.Evaluator}\")");
        }
        return errors;
    }

    public static void ThrowIfInvalid(RunSpec spec)
    {
        var errors = Validate(spec);
        if (errors.Count > 0) throw new RunSpecException(string.Join("; ", errors));
    }
}
