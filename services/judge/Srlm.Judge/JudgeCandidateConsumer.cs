using Microsoft.Extensions.Logging;
using Srlm.Contracts;
using Srlm.Contracts.Judging;
using Srlm.Contracts.Spec;
using Srlm.Storage;

namespace Srlm.Judge;

/// <summary>JudgeCandidate -> K judge samples (only the ones not stored yet are generated), every sample
/// stored with its raw text, then CandidateJudged with the mean of the valid stored samples. Handling the
/// message twice generates nothing new and publishes the same event.</summary>
public sealed partial class JudgeCandidateConsumer(IArtifactStore store, RunSpecCache specs, IModelProvider models, ILogger<JudgeCandidateConsumer> log)
    : RunConsumer<JudgeCandidate>(store, specs)
{
    protected override async Task HandleAsync(ConsumeContext<JudgeCandidate> context, JudgeCandidate m, RunSpec spec, CancellationToken ct)
    {
        var candidate = await RequireAsync<CandidateRecord>(context, "candidate", m.CandidateId, ct);
        if (candidate.PromptId != m.PromptId)
            throw new MalformedMessageException($"JudgeCandidate {context.MessageId}: candidate {m.CandidateId} belongs to prompt {candidate.PromptId}, not {m.PromptId}");
        var prompt = await RequireAsync<PromptRecord>(context, "prompt", m.PromptId, ct);

        int k = spec.Judge.Samples;
        var stored = await Store.ListAsync<JudgementRecord>(ArtifactQuery.OfParent(m.CandidateId), ct);
        var missing = Enumerable.Range(0, k).Where(i => stored.All(j => j.SampleIndex != i)).ToList();
        if (missing.Count > 0)
        {
            var model = await models.GetAsync(m.CheckpointId, spec.Models.Dtype, ct);
            var samples = await Judging.SampleAsync(model, spec, m.RunId, prompt.Text, candidate.Text, m.CandidateId, missing, ct);
            var records = samples.Select(s => new JudgementRecord
            {
                Id = Ids.Judgement(m.CandidateId, s.SampleIndex), RunId = m.RunId, Iteration = m.Iteration, PromptId = m.PromptId,
                CandidateId = m.CandidateId, CheckpointId = m.CheckpointId,
                SampleIndex = s.SampleIndex, RawText = s.RawText, Score = s.Parsed.Score, Seed = s.Seed, FinishReason = s.FinishReason,
            }).ToList();
            // The K samples in one store call (one transaction on SQLite).
            var outcomes = await Store.PutManyAsync(records, ct);
            for (int i = 0; i < samples.Count; i++)
            {
                if (outcomes[i] == WriteOutcome.Conflict) LogConflict(log, m.RunId, m.CandidateId, samples[i].SampleIndex);
                if (!samples[i].Parsed.IsValid) LogUnparseable(log, m.RunId, m.Iteration, m.CandidateId, samples[i].SampleIndex, samples[i].Parsed.Error ?? "?");
            }
            // Inserted or Unchanged: what is stored is what was written, so the list read before plus these records is
            // the stored set. A Conflict (a concurrent duplicate wrote different content first) is read back instead.
            stored = outcomes.Contains(WriteOutcome.Conflict)
                ? await Store.ListAsync<JudgementRecord>(ArtifactQuery.OfParent(m.CandidateId), ct)
                : stored.Concat(records).OrderBy(j => j.Id, StringComparer.Ordinal).ToList();
        }

        // The event reports what is stored (a concurrent duplicate may have written first).
        var samplesOfRecord = stored.Where(j => j.SampleIndex < k).ToList();
        var valid = samplesOfRecord.Count(j => j.Score is not null);
        await context.Publish(new CandidateJudged
        {
            RunId = m.RunId, Iteration = m.Iteration, CheckpointId = m.CheckpointId, PromptId = m.PromptId, CandidateId = m.CandidateId,
            Samples = samplesOfRecord.Count, ValidSamples = valid, Score = ScoreParser.Mean(samplesOfRecord.Select(j => j.Score)),
        }, ct);
        LogJudged(log, m.RunId, m.Iteration, m.CandidateId, valid, samplesOfRecord.Count);
    }

    [LoggerMessage(EventId = 4001, Level = LogLevel.Debug, Message = "judged run {RunId} iteration {Iteration} candidate {CandidateId}: {Valid}/{Samples} valid")]
    private static partial void LogJudged(ILogger logger, string runId, int iteration, string candidateId, int valid, int samples);

    [LoggerMessage(EventId = 4002, Level = LogLevel.Debug, Message = "run {RunId} iteration {Iteration} candidate {CandidateId} sample {Sample} unparseable: {Reason}")]
    private static partial void LogUnparseable(ILogger logger, string runId, int iteration, string candidateId, int sample, string reason);

    [LoggerMessage(EventId = 4003, Level = LogLevel.Warning, Message = "run {RunId} candidate {CandidateId} sample {Sample}: a different judgement is already stored; the stored one is kept")]
    private static partial void LogConflict(ILogger logger, string runId, string candidateId, int sample);
}

/// <summary>Judge policy: several candidates at once per replica (the model executor batches them).</summary>
public sealed class JudgeCandidateConsumerDefinition() : SrlmConsumerDefinition<JudgeCandidateConsumer>(concurrentMessageLimit: 16);
