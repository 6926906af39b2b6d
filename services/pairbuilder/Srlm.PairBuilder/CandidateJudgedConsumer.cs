using MassTransit;
using Microsoft.Extensions.Logging;
using Srlm.Contracts;
using Srlm.Contracts.Judging;
using Srlm.Contracts.Spec;
using Srlm.ServiceKit;
using Srlm.Messaging.Bus;

namespace Srlm.PairBuilder;

/// <summary>CandidateJudged -> when every candidate of the prompt has its K judgements stored (counted from
/// the store, not from the events seen), the pair or the drop is stored; when every prompt of the final
/// prompt set is settled, the iteration's dataset record is stored and PairsReady published. Both writes
/// are idempotent, so duplicates and races between replicas settle on the same records.</summary>
public sealed partial class CandidateJudgedConsumer(IArtifactStore store, RunSpecCache specs, IModelProvider models, ILogger<CandidateJudgedConsumer> log)
    : RunConsumer<CandidateJudged>(store, specs)
{
    protected override async Task HandleAsync(ConsumeContext<CandidateJudged> context, CandidateJudged m, RunSpec spec, CancellationToken ct)
    {
        int n = spec.Responses.N, k = spec.Judge.Samples;

        if (!await IsSettledAsync(m.PromptId, ct))
        {
            var candidates = await Store.ListAsync<CandidateRecord>(ArtifactQuery.OfParent(m.PromptId), ct);
            if (candidates.Count < n) return; // the rest are still being generated
            var judged = new List<JudgedCandidate>();
            foreach (var c in candidates.OrderBy(c => c.Index))
            {
                var samples = await Store.ListAsync<JudgementRecord>(ArtifactQuery.OfParent(c.Id), ct);
                if (samples.Count(s => s.SampleIndex < k) < k) return; // a candidate is still being judged
                var score = ScoreParser.Mean(samples.Where(s => s.SampleIndex < k).Select(s => s.Score));
                judged.Add(new JudgedCandidate(c.Id, c.Index, score, c.TokenCount, c.FinishReason == FinishReasons.Length));
            }
            var prompt = await RequireAsync<PromptRecord>(context, "prompt", m.PromptId, ct);
            // The generator stores what the token rule needs on each candidate, so a pairbuilder loads no
            // model; records written before that fall back to the model's tokenizer.
            var first = candidates[0];
            int promptTokens, contextLength;
            if (first is { PromptTokens: int pt, ContextLength: int cl })
                (promptTokens, contextLength) = (pt, cl);
            else
            {
                var model = await models.GetAsync(m.CheckpointId, spec.Models.Dtype, ct);
                (promptTokens, contextLength) = (model.CountPromptTokens(prompt.Text), model.ContextLength);
            }
            int maxTokens = spec.Pairs.MaxTokens ?? spec.Training.ContextLength ?? contextLength;
            var decision = PairRules.Decide(judged, promptTokens, maxTokens, spec.Pairs);
            await SettleAsync(m.RunId, m.Iteration, m.PromptId, decision, promptTokens, maxTokens, ct);
        }

        await PairsReadyCheck.PublishIfCompleteAsync(Store, m.RunId, m.Iteration, m.CheckpointId, context,
            resend: context.ReceiveContext.Redelivered || context.GetRetryAttempt() > 0, log, ct);
    }

    private async Task<bool> IsSettledAsync(string promptId, CancellationToken ct) =>
        await Store.CountAsync<PairRecord>(ArtifactQuery.OfParent(promptId), ct) + await Store.CountAsync<PairDropRecord>(ArtifactQuery.OfParent(promptId), ct) > 0;

    private async Task SettleAsync(string runId, int iteration, string promptId, PairDecision d, int promptTokens, int maxTokens, CancellationToken ct)
    {
        if (d.IsPair)
        {
            await Store.PutAsync(new PairRecord
            {
                Id = Ids.Pair(promptId), RunId = runId, Iteration = iteration, PromptId = promptId,
                ChosenCandidateId = d.Chosen!.CandidateId, RejectedCandidateId = d.Rejected!.CandidateId,
                ChosenScore = d.Chosen.Score!.Value, RejectedScore = d.Rejected.Score!.Value,
                ChosenTokens = d.Chosen.ResponseTokens, RejectedTokens = d.Rejected.ResponseTokens,
            }, ct);
            LogPair(log, runId, iteration, promptId, d.Chosen.Score!.Value, d.Rejected.Score!.Value);
            return;
        }
        var reason = d.Dropped!.Value;
        string detail = reason switch
        {
            DropReason.TooLong => $"prompt {promptTokens} + answer {Math.Max(d.Chosen!.ResponseTokens, d.Rejected!.ResponseTokens)} tokens > {maxTokens}",
            DropReason.DroppedTies => "best and worst mean scores are equal",
            DropReason.DroppedTruncated => "too few scored candidates not cut by the token limit (spec.pairs.truncated)",
            _ => "fewer candidates with a valid score than spec.pairs.min_valid_scores",
        };
        await Store.PutAsync(new PairDropRecord { Id = Ids.Drop(promptId), RunId = runId, Iteration = iteration, PromptId = promptId, Reason = reason, Detail = detail }, ct);
        LogDrop(log, runId, iteration, promptId, PairDecision.CounterName(d.Dropped!.Value));
    }

    [LoggerMessage(EventId = 5001, Level = LogLevel.Debug, Message = "run {RunId} iteration {Iteration} prompt {PromptId}: pair {Chosen} vs {Rejected}")]
    private static partial void LogPair(ILogger logger, string runId, int iteration, string promptId, double chosen, double rejected);

    [LoggerMessage(EventId = 5002, Level = LogLevel.Debug, Message = "run {RunId} iteration {Iteration} prompt {PromptId}: dropped ({Reason})")]
    private static partial void LogDrop(ILogger logger, string runId, int iteration, string promptId, string reason);
}

/// <summary>The iteration's pairs are ready once the final prompt set exists and every prompt of it is
/// settled. The dataset record (pair ids in id order) is written idempotently; whoever inserts it
/// publishes PairsReady, and a redelivered message publishes it again (the trainer's job id makes that harmless).</summary>
public static partial class PairsReadyCheck
{
    public static async Task<bool> PublishIfCompleteAsync(IArtifactStore store, string runId, int iteration, string checkpointId,
        IPublishEndpoint publish, bool resend, ILogger log, CancellationToken ct)
    {
        var set = await store.GetAsync<PromptSetFinalRecord>(Ids.PromptSet(runId, iteration), ct);
        if (set is null) return false;
        if ((await store.ListUnsettledPromptsAsync(runId, iteration, ct)).Count > 0) return false;

        var datasetId = Ids.Dataset(runId, iteration);
        var existing = await store.GetAsync<DatasetRecord>(datasetId, ct);
        var outcome = WriteOutcome.Unchanged;
        if (existing is null)
        {
            var pairs = await store.ListAsync<PairRecord>(ArtifactQuery.OfRun(runId, iteration), ct);
            existing = new DatasetRecord
            {
                Id = datasetId, RunId = runId, Iteration = iteration, Purpose = "dpo",
                PairIds = pairs.Select(p => p.Id).OrderBy(id => id, StringComparer.Ordinal).ToList(),
                Description = $"DPO pairs of iteration {iteration} ({pairs.Count} of {set.PromptIds.Count} prompts)",
            };
            outcome = await store.PutAsync(existing, ct);
            if (outcome == WriteOutcome.Conflict) existing = await store.GetAsync<DatasetRecord>(datasetId, ct) ?? existing;
        }
        if (outcome != WriteOutcome.Inserted && !resend) return true;
        await publish.Publish(new PairsReady { RunId = runId, Iteration = iteration, CheckpointId = checkpointId, DatasetId = datasetId, Pairs = existing.PairIds.Count }, ct);
        LogReady(log, runId, iteration, existing.PairIds.Count);
        return true;
    }

    [LoggerMessage(EventId = 5003, Level = LogLevel.Information, Message = "run {RunId} iteration {Iteration}: every prompt settled, {Pairs} pairs ready")]
    private static partial void LogReady(ILogger logger, string runId, int iteration, int pairs);
}

/// <summary>Several events at once; completion is decided from the store, so concurrency is safe.</summary>
public sealed class CandidateJudgedConsumerDefinition() : SrlmConsumerDefinition<CandidateJudgedConsumer>(concurrentMessageLimit: 4);

public static class PairBuilderServices
{
    public static Microsoft.Extensions.DependencyInjection.IServiceCollection AddPairBuilder(this Microsoft.Extensions.DependencyInjection.IServiceCollection services) => services.AddServiceKit();

    public static IBusRegistrationConfigurator AddPairBuilderConsumers(this IBusRegistrationConfigurator bus)
    {
        bus.AddConsumer<CandidateJudgedConsumer, CandidateJudgedConsumerDefinition>();
        return bus;
    }
}
