using System.Text.Json.Serialization;

namespace Srlm.Cli.Pipeline;

/// <summary>report.json: one entry per model M1..M_{T+1}, every number computed from the store
/// (schema in docs/run-spec.md, "Report"). Fields a run cannot know (no evaluation section, no
/// control) are null rather than invented.</summary>
public sealed record RunReport
{
    public const int SchemaVersion = 1;

    [JsonPropertyName("schema_version")] public int Schema { get; init; } = SchemaVersion;
    [JsonPropertyName("run_id")] public required string RunId { get; init; }
    [JsonPropertyName("name")] public required string Name { get; init; }
    [JsonPropertyName("state")] public required string State { get; init; }
    [JsonPropertyName("failure_reason")] public string? FailureReason { get; init; }
    [JsonPropertyName("seed")] public required long Seed { get; init; }
    [JsonPropertyName("prompt_source")] public required string PromptSource { get; init; }
    [JsonPropertyName("n")] public required int N { get; init; }
    [JsonPropertyName("k")] public required int K { get; init; }
    /// <summary>Whom the judge_win_rate evaluation played each checkpoint against (evaluation.baseline: "parent", "m1",
    /// or the uploaded folder's checkpoint:ID); null without a win-rate evaluation.</summary>
    [JsonPropertyName("baseline")] public string? Baseline { get; init; }
    /// <summary>evaluation.judge_mode of the win-rate evaluation ("pointwise" or "pairwise"); null without one.</summary>
    [JsonPropertyName("judge_mode")] public string? JudgeMode { get; init; }
    [JsonPropertyName("iterations")] public required IReadOnlyList<ModelEntry> Iterations { get; init; }
    /// <summary>Held-out items found among stored prompts and training records (must be 0).</summary>
    [JsonPropertyName("leakage")] public required int Leakage { get; init; }
    [JsonPropertyName("held_out_items")] public required int HeldOutItems { get; init; }
    [JsonPropertyName("duplicates")] public required long Duplicates { get; init; }
    [JsonPropertyName("seconds")] public double? Seconds { get; init; }
    /// <summary>Judge score histogram (valid sample scores 0..max, then unparseable) per iteration.</summary>
    [JsonPropertyName("judge_score_histograms")] public required IReadOnlyDictionary<string, long[]> ScoreHistograms { get; init; }
    /// <summary>DPO reward margin by step, per iteration.</summary>
    [JsonPropertyName("dpo_margins")] public required IReadOnlyDictionary<string, double[][]> DpoMargins { get; init; }
}

/// <summary>One model M_t: its held-out metrics and the data it generated in iteration t.</summary>
public sealed record ModelEntry
{
    [JsonPropertyName("model")] public required string Model { get; init; }
    [JsonPropertyName("iteration")] public required int Iteration { get; init; }
    [JsonPropertyName("checkpoint")] public required string Checkpoint { get; init; }
    [JsonPropertyName("checkpoint_id")] public required string CheckpointId { get; init; }
    [JsonPropertyName("accuracy")] public double? Accuracy { get; init; }
    [JsonPropertyName("judge_pairwise_accuracy")] public double? JudgePairwiseAccuracy { get; init; }
    [JsonPropertyName("judge_spearman")] public double? JudgeSpearman { get; init; }
    [JsonPropertyName("judge_kendall_tau")] public double? JudgeKendallTau { get; init; }
    [JsonPropertyName("control_accuracy")] public double? ControlAccuracy { get; init; }
    [JsonPropertyName("control_judge_pairwise_accuracy")] public double? ControlJudgePairwiseAccuracy { get; init; }
    /// <summary>evaluation.evaluator judge_win_rate: M_t against its parent, judged by the fixed judge (ties count half).</summary>
    [JsonPropertyName("win_rate_vs_parent")] public double? WinRateVsParent { get; init; }
    [JsonPropertyName("control_win_rate_vs_parent")] public double? ControlWinRateVsParent { get; init; }
    /// <summary>evaluation.evaluator judge_win_rate: M_t against the run's baseline (evaluation.baseline), judged by the
    /// fixed judge (ties count half); null for the baseline itself (M1 under "m1": it gets no score against itself).</summary>
    [JsonPropertyName("win_rate_vs_baseline")] public double? WinRateVsBaseline { get; init; }
    [JsonPropertyName("control_win_rate_vs_baseline")] public double? ControlWinRateVsBaseline { get; init; }
    [JsonPropertyName("prompts")] public long? Prompts { get; init; }
    [JsonPropertyName("candidates")] public long? Candidates { get; init; }
    /// <summary>Candidates of the iteration cut by the token limit (finish reason `length`).</summary>
    [JsonPropertyName("truncated")] public long? Truncated { get; init; }
    [JsonPropertyName("judgments")] public long? Judgments { get; init; }
    [JsonPropertyName("unparseable")] public long? Unparseable { get; init; }
    [JsonPropertyName("pairs")] public long? Pairs { get; init; }
    [JsonPropertyName("dropped_ties")] public long? DroppedTies { get; init; }
    [JsonPropertyName("dropped_other")] public long? DroppedOther { get; init; }
    [JsonPropertyName("too_long")] public long? TooLong { get; init; }
    /// <summary>Prompts dropped for too few candidates not cut by the token limit (spec.pairs.truncated).</summary>
    [JsonPropertyName("dropped_truncated")] public long? DroppedTruncated { get; init; }
    [JsonPropertyName("mean_response_tokens")] public double? MeanResponseTokens { get; init; }
    [JsonPropertyName("mean_chosen_tokens")] public double? MeanChosenTokens { get; init; }
    [JsonPropertyName("mean_rejected_tokens")] public double? MeanRejectedTokens { get; init; }
    [JsonPropertyName("mean_score_margin")] public double? MeanScoreMargin { get; init; }
    [JsonPropertyName("dpo_steps")] public long? DpoSteps { get; init; }
    [JsonPropertyName("dpo_rewards_accuracies")] public double? DpoRewardsAccuracies { get; init; }
    [JsonPropertyName("seconds")] public double? Seconds { get; init; }
}

/// <summary>Builds the report from the store.</summary>
public static class RunReportBuilder
{
    public static JsonSerializerOptions Json { get; } = new() { WriteIndented = true, NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals };

    /// <param name="countLeakage">(held-out instructions, texts seen in training) -> items found; supplied by the host (task families).</param>
    public static async Task<RunReport> BuildAsync(IArtifactStore store, string runId, Func<IReadOnlyList<string>, IEnumerable<string>, int> countLeakage, CancellationToken ct)
    {
        var run = await store.GetRunAsync(runId, ct) ?? throw new UsageException($"run {runId} is not in {store.Location}");
        var spec = RunSpecJson.Parse(run.SpecJson);
        var allCheckpoints = await store.ListAsync<CheckpointRecord>(ArtifactQuery.OfRun(runId), ct);
        var checkpoints = allCheckpoints.Where(c => c.IsMain).ToDictionary(c => c.Iteration);
        var controls = allCheckpoints.Where(c => !c.IsMain).ToDictionary(c => c.Iteration);
        var statuses = (await store.GetRunStatusAsync(runId, ct)).ToDictionary(s => s.Iteration);
        var evaluations = await store.ListAsync<EvaluationRecord>(ArtifactQuery.OfRun(runId), ct);
        var metrics = await store.ListMetricsAsync(runId, null, null, ct);
        var specs = new RunSpecCache(store);

        var entries = new List<ModelEntry>();
        var histograms = new Dictionary<string, long[]>();
        var margins = new Dictionary<string, double[][]>();
        for (int t = 1; t <= spec.Iterations + 1; t++)
        {
            if (!checkpoints.TryGetValue(t, out var ckpt)) break;
            var eval = evaluations.FirstOrDefault(e => e.CheckpointId == ckpt.Id)?.Metrics;
            double? M(string name) => eval is not null && eval.TryGetValue(name, out var v) ? v : null;
            // C1 is M1 itself; C_t (t > 1) is the control arm's checkpoint of the same index.
            var controlId = spec.Control is null ? null : t == 1 ? ckpt.Id : controls.GetValueOrDefault(t)?.Id;
            var controlEval = controlId is null ? null : evaluations.FirstOrDefault(e => e.CheckpointId == controlId)?.Metrics;
            // An evaluation stored before evaluation.baseline existed always played the parent (no baseline_is_parent).
            static double? VsParent(IReadOnlyDictionary<string, double>? m) =>
                m is not null && m.TryGetValue("win_rate", out var w) && m.GetValueOrDefault("baseline_is_parent", 1) == 1 ? w : null;
            var entry = new ModelEntry
            {
                Model = $"M{t}", Iteration = t, Checkpoint = ckpt.Location, CheckpointId = ckpt.Id,
                Accuracy = M("accuracy"), JudgePairwiseAccuracy = M("judge_pairwise_accuracy"), JudgeSpearman = M("judge_spearman"),
                JudgeKendallTau = M("judge_kendall_tau"),
                ControlAccuracy = controlEval is not null && controlEval.TryGetValue("accuracy", out var ca) ? ca : null,
                ControlJudgePairwiseAccuracy = controlEval is not null && controlEval.TryGetValue("judge_pairwise_accuracy", out var cj) ? cj : null,
                WinRateVsParent = VsParent(eval),
                ControlWinRateVsParent = VsParent(controlEval),
                WinRateVsBaseline = M("win_rate"),
                ControlWinRateVsBaseline = controlEval is not null && controlEval.TryGetValue("win_rate", out var cw) ? cw : null,
            };
            if (t <= spec.Iterations && statuses.TryGetValue(t, out var s))
            {
                var candidates = await store.ListAsync<CandidateRecord>(ArtifactQuery.OfRun(runId, t), ct);
                var pairs = await store.ListAsync<PairRecord>(ArtifactQuery.OfRun(runId, t), ct);
                var judgements = await store.ListAsync<JudgementRecord>(ArtifactQuery.OfRun(runId, t), ct);
                var hist = new long[spec.Judge.MaxScore + 2];
                foreach (var j in judgements) hist[j.Score is { } sc ? (int)sc : spec.Judge.MaxScore + 1]++;
                histograms[$"{t}"] = hist;
                var dpo = metrics.Where(x => x.Iteration == t && x.Name.StartsWith("dpo/", StringComparison.Ordinal)).ToList();
                margins[$"{t}"] = dpo.Where(x => x.Name == "dpo/rewards/margins").OrderBy(x => x.Step).Select(x => new[] { (double)x.Step, x.Value }).ToArray();
                var next = checkpoints.GetValueOrDefault(t + 1);
                entry = entry with
                {
                    Prompts = s.Prompts, Candidates = s.Candidates, Judgments = s.Judgments, Unparseable = s.Unparseable, Pairs = s.Pairs,
                    DroppedTies = s.DroppedTies, DroppedOther = s.DroppedOther, TooLong = s.TooLong,
                    Truncated = s.Truncated, DroppedTruncated = s.DroppedTruncated,
                    MeanResponseTokens = candidates.Count == 0 ? null : candidates.Average(c => c.TokenCount),
                    MeanChosenTokens = pairs.Count == 0 ? null : pairs.Average(p => p.ChosenTokens),
                    MeanRejectedTokens = pairs.Count == 0 ? null : pairs.Average(p => p.RejectedTokens),
                    MeanScoreMargin = pairs.Count == 0 ? null : pairs.Average(p => p.ChosenScore - p.RejectedScore),
                    DpoSteps = dpo.Where(x => x.Name == "dpo/steps").Select(x => (long?)x.Value).LastOrDefault()
                               ?? (dpo.Count == 0 ? null : dpo.Max(x => x.Step)),
                    DpoRewardsAccuracies = dpo.Where(x => x.Name == "dpo/rewards/accuracies").OrderBy(x => x.Step).Select(x => (double?)x.Value).LastOrDefault(),
                    Seconds = next?.CreatedAt is { } end && ckpt.CreatedAt is { } begin ? (end - begin).TotalSeconds : null,
                };
            }
            entries.Add(entry);
        }

        int leakage = 0, heldOutItems = 0;
        if (spec.Evaluation?.HeldOut is { } heldOutRef && SpecRefs.IsBlob(heldOutRef))
        {
            // Read as the services read them; a report of an older run counts the lines today's reader accepts.
            var heldOut = SeedReader.ReadPrompts(await specs.BlobAsync(heldOutRef, "evaluation.held_out", ct), "spec.evaluation.held_out").Records.Select(p => p.Instruction).ToList();
            heldOutItems = heldOut.Count;
            var seen = new List<string>();
            seen.AddRange((await store.ListAsync<PromptRecord>(ArtifactQuery.OfRun(runId), ct)).Select(p => p.Text));
            if (SpecRefs.IsBlob(spec.SeedData.Ift))
                seen.AddRange(SeedReader.ReadIft(await specs.BlobAsync(spec.SeedData.Ift, "seed_data.ift", ct), "spec.seed_data.ift").Records.Select(r => r.Instruction));
            if (SpecRefs.IsBlob(spec.SeedData.Eft))
                seen.AddRange(SeedReader.ReadEft(await specs.BlobAsync(spec.SeedData.Eft, "seed_data.eft", ct), "spec.seed_data.eft", spec.Judge.MaxScore).Records.Select(r => r.Instruction));
            if (SpecRefs.IsBlob(spec.Prompts.PoolFile))
                seen.AddRange(SeedReader.ReadPrompts(await specs.BlobAsync(spec.Prompts.PoolFile, "prompts.pool_file", ct), "spec.prompts.pool_file").Records.Select(p => p.Instruction));
            leakage = countLeakage(heldOut, seen);
        }

        var all = checkpoints.Values.Where(c => c.CreatedAt is not null).Select(c => c.CreatedAt!.Value).ToList();
        return new RunReport
        {
            RunId = runId, Name = spec.Name, State = run.State.ToString().ToLowerInvariant(), FailureReason = run.FailureReason,
            Seed = spec.Seed, PromptSource = spec.Prompts.Source, N = spec.Responses.N, K = spec.Judge.Samples,
            Baseline = spec.Evaluation?.Evaluator == EvaluationSpec.JudgeWinRate ? spec.Evaluation.Baseline : null,
            JudgeMode = spec.Evaluation?.Evaluator == EvaluationSpec.JudgeWinRate ? spec.Evaluation.JudgeMode : null,
            Iterations = entries, Leakage = leakage, HeldOutItems = heldOutItems,
            Duplicates = statuses.Values.Sum(s => s.Duplicates),
            Seconds = (run.UpdatedAt - run.CreatedAt).TotalSeconds,
            ScoreHistograms = histograms, DpoMargins = margins,
        };
    }
}
