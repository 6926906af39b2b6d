namespace Srlm.Storage;

/// <summary>Backend-neutral assembly of <see cref="IterationStatus"/> from grouped counts.</summary>
internal static class StatusMath
{
    public static IterationStatus Build(string runId, int iteration, IReadOnlyDictionary<(string Kind, string Tag), long> counts,
        long duplicates, long settled, PromptSetFinalRecord? finalSet, IterationRecord? start, CheckpointRecord? output)
    {
        long Sum(string kind, string? tag = null) =>
            counts.Where(kv => kv.Key.Kind == kind && (tag is null || kv.Key.Tag == tag)).Sum(kv => kv.Value);
        var prompts = Sum(PromptRecord.Kind);
        return new IterationStatus
        {
            RunId = runId,
            Iteration = iteration,
            Prompts = finalSet?.PromptIds.Distinct().LongCount() ?? prompts,
            PromptSetFinal = finalSet is not null,
            PromptsGenerated = prompts,
            PromptShards = Sum(PromptShardRecord.Kind),
            Candidates = Sum(CandidateRecord.Kind),
            Truncated = Sum(CandidateRecord.Kind, FinishReasons.Length),
            Judgments = Sum(JudgementRecord.Kind),
            Unparseable = Sum(JudgementRecord.Kind, JudgementRecord.Unparseable),
            Pairs = Sum(PairRecord.Kind),
            DroppedTies = Sum(PairDropRecord.Kind, nameof(DropReason.DroppedTies)),
            DroppedOther = Sum(PairDropRecord.Kind, nameof(DropReason.DroppedOther)),
            TooLong = Sum(PairDropRecord.Kind, nameof(DropReason.TooLong)),
            DroppedTruncated = Sum(PairDropRecord.Kind, nameof(DropReason.DroppedTruncated)),
            Settled = settled,
            Duplicates = duplicates,
            StartCheckpointId = start?.StartCheckpointId,
            CheckpointId = output?.Id,
        };
    }
}

/// <summary>Walks a checkpoint's parent chain (cycle-safe) with the dataset behind each step.</summary>
internal static class Lineage
{
    public static async Task<IReadOnlyList<LineageStep>> WalkAsync(IArtifactStore store, string checkpointId, CancellationToken ct)
    {
        var steps = new List<LineageStep>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        string? id = checkpointId;
        while (id is not null && seen.Add(id))
        {
            var ckpt = await store.GetAsync<CheckpointRecord>(id, ct);
            if (ckpt is null)
            {
                if (steps.Count == 0) throw new KeyNotFoundException($"checkpoint {checkpointId} is not in store {store.Location}");
                break;
            }
            var ds = ckpt.DatasetId is null ? null : await store.GetAsync<DatasetRecord>(ckpt.DatasetId, ct);
            steps.Add(new LineageStep(ckpt, ds));
            id = ckpt.ParentCheckpointId;
        }
        return steps;
    }
}
