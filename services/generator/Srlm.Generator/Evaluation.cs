using Srlm.Contracts.Judging;

namespace Srlm.Generator;

/// <summary>Grades a model's answer to a held-out instruction. A task family's checker implements it; the
/// host (the CLI, which may reference task families) registers it: the service assemblies never reference
/// the checkers.</summary>
public interface IAnswerEvaluator
{
    /// <summary>The name the spec's evaluation.evaluator gives.</summary>
    string Name { get; }

    /// <summary>True/false, or null when the instruction is not one this evaluator can grade.</summary>
    bool? IsCorrect(string instruction, string answer);
}

/// <summary>CheckpointReady -> EvaluateCheckpoint when the run's spec has an evaluation section.</summary>
public sealed class CheckpointReadyConsumer(IArtifactStore store, RunSpecCache specs) : RunConsumer<CheckpointReady>(store, specs)
{
    protected override async Task HandleAsync(ConsumeContext<CheckpointReady> context, CheckpointReady m, RunSpec spec, CancellationToken ct)
    {
        if (spec.Evaluation is null) return;
        await context.SendAsync<EvaluateCheckpoint>(new EvaluateCheckpoint { RunId = m.RunId, Iteration = m.Iteration, CheckpointId = m.CheckpointId }, ct);
    }
}

/// <summary>EvaluateCheckpoint -> greedy answers to the held-out split graded by the registered evaluator,
/// and the model's judge scored against held-out labelled answers; one evaluation record per checkpoint
/// (model index t of M_t), then CheckpointEvaluated.</summary>
public sealed partial class EvaluateCheckpointConsumer(IArtifactStore store, RunSpecCache specs, IModelProvider models, ExternalModels external,
    IEnumerable<IAnswerEvaluator> evaluators, ILogger<EvaluateCheckpointConsumer> log) : RunConsumer<EvaluateCheckpoint>(store, specs)
{
    protected override async Task HandleAsync(ConsumeContext<EvaluateCheckpoint> context, EvaluateCheckpoint m, RunSpec spec, CancellationToken ct)
    {
        var eval = spec.Evaluation;
        if (eval is null) return;
        var winRate = eval.Evaluator == EvaluationSpec.JudgeWinRate;
        var evaluator = winRate ? null : evaluators.FirstOrDefault(e => e.Name == eval.Evaluator)
                        ?? throw new PermanentMessageException($"spec.evaluation.evaluator: '{eval.Evaluator}' is neither \"{EvaluationSpec.JudgeWinRate}\" nor registered in this host (registered: {string.Join(", ", evaluators.Select(e => e.Name))})");
        var evaluatorName = eval.Evaluator!;
        var checkpoint = await RequireAsync<CheckpointRecord>(context, "checkpoint", m.CheckpointId, ct);
        var id = Ids.Evaluation(m.CheckpointId, evaluatorName);
        if (await Store.GetAsync<EvaluationRecord>(id, ct) is null)
        {
            var started = DateTimeOffset.UtcNow;
            var model = await models.GetAsync(m.CheckpointId, spec.Models.Dtype, ct);
            var metrics = new Dictionary<string, double>(StringComparer.Ordinal);
            var examples = new List<object>();

            var heldOut = (await Specs.SeedFileAsync(eval.HeldOut, "evaluation.held_out", SeedReader.ReadPrompts, ct))
                .Select(p => p.Instruction).Take(eval.MaxItems ?? int.MaxValue).ToList();
            var answers = await GreedyAnswersAsync(model, spec, m.RunId, m.CheckpointId, heldOut, ct);
            metrics["eval_items"] = heldOut.Count;
            metrics["mean_answer_tokens"] = answers.Count == 0 ? 0 : answers.Average(a => a.CompletionTokens);
            // Answers cut by evaluation.max_new_tokens (finish reason `length`); each example below names its own.
            metrics["truncated_answers"] = answers.Count(a => a.FinishReason == FinishReasons.Length);
            if (evaluator is not null)
            {
                int correct = 0, ungradeable = 0;
                for (int i = 0; i < heldOut.Count; i++)
                {
                    var verdict = evaluator.IsCorrect(heldOut[i], answers[i].Text);
                    if (verdict is null) ungradeable++;
                    else if (verdict.Value) correct++;
                    if (i < 20) examples.Add(new { instruction = heldOut[i], answer = answers[i].Text, finish_reason = answers[i].FinishReason, correct = verdict });
                }
                metrics["accuracy"] = heldOut.Count == 0 ? double.NaN : (double)correct / heldOut.Count;
                metrics["eval_ungradeable"] = ungradeable;
            }
            else if (BaselineOf(eval, m.RunId, checkpoint) is { } baselineId && baselineId != m.CheckpointId)
                await WinRateAsync(spec, m, baselineId, baselineId == checkpoint.ParentCheckpointId, heldOut, answers, metrics, examples, ct);
            // else: no baseline to play (an uploaded M1 has no parent; M1 is not played against itself): no win rate (left out).

            if (eval.JudgePairs is not null)
            {
                var labelled = (await Specs.SeedFileAsync(eval.JudgePairs, "evaluation.judge_pairs", (bytes, name) => SeedReader.ReadJudgePairs(bytes, name, spec.Judge.MaxScore), ct))
                    .Take(eval.MaxJudgeItems ?? int.MaxValue).ToList();
                var requests = new List<GenerationRequest>();
                for (int i = 0; i < labelled.Count; i++)
                    for (int k = 0; k < spec.Judge.Samples; k++)
                        requests.Add(Judging.Request(spec, m.RunId, labelled[i].Instruction, labelled[i].Answer, $"{m.CheckpointId}/eval-judge/{i}", k));
                var outputs = await model.GenerateAsync(requests, ct);
                var items = new List<(string, double, double?)>();
                int valid = 0;
                for (int i = 0; i < labelled.Count; i++)
                {
                    var parsed = Enumerable.Range(0, spec.Judge.Samples).Select(k => ScoreParser.Parse(outputs[i * spec.Judge.Samples + k].Text, spec.Judge.MaxScore)).ToList();
                    valid += parsed.Count(p => p.IsValid);
                    items.Add((labelled[i].Instruction, labelled[i].Score, ScoreParser.Mean(parsed)));
                }
                var predicted = items.Where(x => x.Item3 is not null).ToList();
                metrics["judge_pairwise_accuracy"] = Agreement.PairwiseAccuracy(items);
                metrics["judge_spearman"] = Agreement.Spearman(predicted.Select(x => x.Item2).ToList(), predicted.Select(x => x.Item3!.Value).ToList());
                metrics["judge_kendall_tau"] = Agreement.KendallTauB(predicted.Select(x => x.Item2).ToList(), predicted.Select(x => x.Item3!.Value).ToList());
                metrics["judge_valid_fraction"] = requests.Count == 0 ? double.NaN : (double)valid / requests.Count;
                metrics["judge_items"] = labelled.Count;
            }
            metrics["seconds"] = (DateTimeOffset.UtcNow - started).TotalSeconds;
            // NaN does not survive JSON: a metric that cannot be computed is left out.
            foreach (var key in metrics.Where(kv => double.IsNaN(kv.Value)).Select(kv => kv.Key).ToList()) metrics.Remove(key);
            await Store.PutAsync(new EvaluationRecord
            {
                Id = id, RunId = m.RunId, Iteration = checkpoint.Iteration, CheckpointId = m.CheckpointId, Evaluator = evaluatorName,
                Metrics = metrics, Details = JsonSerializer.Serialize(examples),
            }, ct);
            if (winRate) LogWinRate(log, m.RunId, m.CheckpointId, BaselineOf(eval, m.RunId, checkpoint) ?? "(none)", metrics.GetValueOrDefault("win_rate", double.NaN),
                (long)metrics.GetValueOrDefault("wins"), (long)metrics.GetValueOrDefault("losses"), (long)metrics.GetValueOrDefault("ties"));
            else LogEvaluated(log, m.RunId, m.CheckpointId, metrics.GetValueOrDefault("accuracy"), metrics.GetValueOrDefault("judge_pairwise_accuracy", double.NaN));
        }
        await context.Publish(new CheckpointEvaluated { RunId = m.RunId, Iteration = m.Iteration, CheckpointId = m.CheckpointId }, ct);
    }

    /// <summary>Greedy answers of one checkpoint to the held-out instructions (seeded per item, for models whose
    /// sampler still draws at temperature 0).</summary>
    private static Task<IReadOnlyList<GenerationResult>> GreedyAnswersAsync(ITextModel model, RunSpec spec, string runId, string checkpointId,
        IReadOnlyList<string> heldOut, CancellationToken ct) =>
        model.GenerateAsync(heldOut.Select((q, i) =>
            new GenerationRequest(q, Ids.Seed(spec.Seed, "eval", Ids.SeedKey(runId, checkpointId), i), 0, 1, spec.Evaluation!.MaxNewTokens)).ToList(), ct);

    /// <summary>The checkpoint a win-rate evaluation plays against (evaluation.baseline): the parent (M_{t-1}, C_{t-1}),
    /// the run's M1, or an uploaded folder; null when there is none (an uploaded M1 has no parent).</summary>
    public static string? BaselineOf(EvaluationSpec eval, string runId, CheckpointRecord checkpoint) => eval.Baseline switch
    {
        EvaluationSpec.BaselineParent => checkpoint.ParentCheckpointId,
        EvaluationSpec.BaselineM1 => Ids.Checkpoint(runId, 0),
        var folder => SpecRefs.CheckpointId(folder, "evaluation.baseline"),
    };

    /// <summary>evaluation.evaluator = judge_win_rate: the checkpoint against its baseline on every held-out instruction.
    /// Both answer greedily; identical answers tie without judging; otherwise the fixed judge (evaluation.judge_model,
    /// else the run's M1) decides. Pointwise: it scores each answer with the run's judge prompt, K samples averaged as in
    /// the loop, and the higher mean wins; an item where either answer gets no valid score is unjudged. Pairwise: it
    /// sees both answers in one prompt, once in each order, and a win or loss needs both orders to agree (else a tie);
    /// an unreadable verdict makes the item unjudged. win_rate = (wins + ties / 2) / judged items.</summary>
    private async Task WinRateAsync(RunSpec spec, EvaluateCheckpoint m, string baselineId, bool baselineIsParent, IReadOnlyList<string> heldOut,
        IReadOnlyList<GenerationResult> answers, Dictionary<string, double> metrics, List<object> examples, CancellationToken ct)
    {
        var baseline = await models.GetAsync(baselineId, spec.Models.Dtype, ct);
        var baselineAnswers = await GreedyAnswersAsync(baseline, spec, m.RunId, baselineId, heldOut, ct);
        var pairwise = spec.Evaluation!.JudgeMode == EvaluationSpec.Pairwise;
        // A checkpoint judge runs here; an endpoint judge (evaluation.judge_model {"endpoint": ...}) is called, each call stored.
        var judge = await external.GetAsync(models, spec.Evaluation.JudgeModel ?? ModelRef.OfFolder(SpecRefs.Checkpoint(Ids.StartCheckpoint(m.RunId, isM1: true))),
            "evaluation.judge_model", spec.Models.Dtype, new ExternalCallContext(m.RunId, m.Iteration, m.CheckpointId, pairwise ? "eval_pairwise" : "eval_judge"), ct);
        var contested = Enumerable.Range(0, heldOut.Count).Where(i => answers[i].Text != baselineAnswers[i].Text).ToList();

        int wins = 0, losses = 0, ties = heldOut.Count - contested.Count, unjudged = 0;
        void Count(string outcome)
        {
            switch (outcome)
            {
                case "win": wins++; break;
                case "loss": losses++; break;
                case "tie": ties++; break;
                default: unjudged++; break;
            }
        }

        int failedCalls = 0;
        if (pairwise)
        {
            // Two verdicts per contested item: the checkpoint's answer as A (order "ab"), then the baseline's as A ("ba").
            var requests = new List<GenerationRequest>();
            foreach (var i in contested)
                foreach (var order in new[] { "ab", "ba" })
                {
                    var (a, b) = order == "ab" ? (answers[i].Text, baselineAnswers[i].Text) : (baselineAnswers[i].Text, answers[i].Text);
                    requests.Add(new GenerationRequest(PairwiseJudging.Format(heldOut[i], a, b),
                        Judging.SeedOf(spec, m.RunId, $"{m.CheckpointId}/eval-pair/{baselineId}/{i}/{order}", 0),
                        spec.Judge.Sampling.Temperature, spec.Judge.Sampling.TopP, spec.Judge.Sampling.MaxNewTokens)
                    { CallId = Ids.Judgement($"{m.CheckpointId}/eval-pair/{baselineId}/{i}/{order}", 0) });
                }
            var outputs = await judge.GenerateAsync(requests, ct);
            int valid = 0;
            for (int c = 0; c < contested.Count; c++)
            {
                string first = outputs[2 * c].Text, second = outputs[2 * c + 1].Text;
                // An endpoint call that was refused or ran out of retries has no verdict: the item is unjudged, with the reason.
                var callError = outputs[2 * c].Error ?? outputs[2 * c + 1].Error;
                failedCalls += (outputs[2 * c].Error is null ? 0 : 1) + (outputs[2 * c + 1].Error is null ? 0 : 1);
                var (v1, e1) = PairwiseJudging.Parse(first);
                var (v2, e2) = PairwiseJudging.Parse(second);
                valid += (v1 is null ? 0 : 1) + (v2 is null ? 0 : 1);
                var outcome = PairwiseJudging.Combine(v1, v2).ToString().ToLowerInvariant();
                Count(outcome);
                int i = contested[c];
                // Every contested item keeps both raw verdicts: a pairwise win rate is traced to the judge's words.
                examples.Add(new
                {
                    instruction = heldOut[i], answer = answers[i].Text, finish_reason = answers[i].FinishReason,
                    baseline = baselineId, baseline_answer = baselineAnswers[i].Text, baseline_finish_reason = baselineAnswers[i].FinishReason,
                    verdict_checkpoint_first = first, verdict_baseline_first = second,
                    parsed_checkpoint_first = v1?.ToString(), parsed_baseline_first = v2?.ToString(), problem = callError ?? e1 ?? e2, outcome,
                });
            }
            metrics["win_rate_judge_valid_fraction"] = requests.Count == 0 ? double.NaN : (double)valid / requests.Count;
        }
        else
        {
            int k = spec.Judge.Samples;
            var requests = new List<GenerationRequest>();
            foreach (var i in contested)
                foreach (var (side, text) in new[] { ("self", answers[i].Text), ("parent", baselineAnswers[i].Text) })
                    for (int s = 0; s < k; s++)
                        // The parent's request ids keep their old names, so a run with baseline "parent" replays as before.
                        requests.Add(Judging.Request(spec, m.RunId, heldOut[i], text,
                            baselineIsParent ? $"{m.CheckpointId}/eval-win/{i}/{side}" : $"{m.CheckpointId}/eval-win/{baselineId}/{i}/{side}", s));
            var outputs = await judge.GenerateAsync(requests, ct);
            int valid = 0, scored = 0;
            double selfSum = 0, baselineSum = 0;
            for (int c = 0; c < contested.Count; c++)
            {
                var parsed = Enumerable.Range(0, 2 * k).Select(j => ScoreParser.Parse(outputs[2 * k * c + j].Text, spec.Judge.MaxScore)).ToList();
                // Endpoint calls that were refused or ran out of retries score nothing; the example names why.
                var callErrors = Enumerable.Range(0, 2 * k).Select(j => outputs[2 * k * c + j].Error).OfType<string>().Distinct().ToList();
                failedCalls += Enumerable.Range(0, 2 * k).Count(j => outputs[2 * k * c + j].Error is not null);
                valid += parsed.Count(p => p.IsValid);
                double? self = ScoreParser.Mean(parsed.Take(k)), other = ScoreParser.Mean(parsed.Skip(k));
                string outcome = self is null || other is null ? "unjudged" : self > other ? "win" : self < other ? "loss" : "tie";
                if (self is not null && other is not null) { scored++; selfSum += self.Value; baselineSum += other.Value; }
                Count(outcome);
                int i = contested[c];
                if (examples.Count < 20)
                    examples.Add(new
                    {
                        instruction = heldOut[i], answer = answers[i].Text, finish_reason = answers[i].FinishReason,
                        baseline = baselineId, baseline_answer = baselineAnswers[i].Text, baseline_finish_reason = baselineAnswers[i].FinishReason,
                        score = self, baseline_score = other, outcome, problem = callErrors.Count == 0 ? null : string.Join("; ", callErrors),
                    });
            }
            metrics["win_rate_judge_valid_fraction"] = requests.Count == 0 ? double.NaN : (double)valid / requests.Count;
            metrics["mean_judge_score"] = scored == 0 ? double.NaN : selfSum / scored;
            metrics["baseline_mean_judge_score"] = scored == 0 ? double.NaN : baselineSum / scored;
            if (baselineIsParent) metrics["parent_mean_judge_score"] = metrics["baseline_mean_judge_score"];
        }
        if (spec.Evaluation.JudgeModel is { IsEndpoint: true }) metrics["judge_failed_calls"] = failedCalls;
        int judged = wins + losses + ties;
        metrics["win_rate"] = judged == 0 ? double.NaN : (wins + ties / 2.0) / judged;
        metrics["wins"] = wins;
        metrics["losses"] = losses;
        metrics["ties"] = ties;
        metrics["identical_answers"] = heldOut.Count - contested.Count;
        metrics["win_rate_unjudged"] = unjudged;
        // Whom win_rate was measured against: the report files it under win_rate_vs_parent only when this is 1.
        metrics["baseline_is_parent"] = baselineIsParent ? 1 : 0;
    }

    [LoggerMessage(EventId = 3011, Level = LogLevel.Information, Message = "run {RunId} checkpoint {CheckpointId} against its baseline {BaselineId}: win rate {WinRate:F3} ({Wins} wins, {Losses} losses, {Ties} ties)")]
    private static partial void LogWinRate(ILogger logger, string runId, string checkpointId, string baselineId, double winRate, long wins, long losses, long ties);

    [LoggerMessage(EventId = 3010, Level = LogLevel.Information, Message = "run {RunId} checkpoint {CheckpointId} evaluated: accuracy {Accuracy:F3}, judge pairwise accuracy {JudgeAccuracy:F3}")]
    private static partial void LogEvaluated(ILogger logger, string runId, string checkpointId, double accuracy, double judgeAccuracy);
}

public sealed class CheckpointReadyConsumerDefinition() : SrlmConsumerDefinition<CheckpointReadyConsumer>(concurrentMessageLimit: 1);

public sealed class EvaluateCheckpointConsumerDefinition() : SrlmConsumerDefinition<EvaluateCheckpointConsumer>(concurrentMessageLimit: 1);
