namespace Srlm.Messaging.Operations;

/// <summary>One checkpoint of a lineage with what trained it: the dataset, and for DPO the pairs, prompts,
/// candidates and judgements behind them; for SFT the seed blobs.</summary>
public sealed record LineageNode
{
    public required string CheckpointId { get; init; }
    public required string Origin { get; init; }
    public string? ParentCheckpointId { get; init; }
    /// <summary>sha256 of model.safetensors (or of the first file when absent).</summary>
    public string? WeightsSha256 { get; init; }
    public string? DatasetId { get; init; }
    public string? DatasetPurpose { get; init; }
    public int Pairs { get; init; }
    public int Prompts { get; init; }
    public long Candidates { get; init; }
    public long Judgements { get; init; }
    public IReadOnlyList<string> SeedBlobs { get; init; } = [];
    public string? JobId { get; init; }
}

public static class LineageWalker
{
    /// <summary>From the checkpoint back to the root (an uploaded checkpoint), newest first.</summary>
    public static async Task<IReadOnlyList<LineageNode>> WalkAsync(IArtifactStore store, string checkpointId, CancellationToken ct = default)
    {
        var steps = await store.GetLineageAsync(checkpointId, ct);
        if (steps.Count == 0) throw new KeyNotFoundException($"checkpoint {checkpointId} is not stored");
        var nodes = new List<LineageNode>();
        foreach (var (cp, dataset) in steps)
        {
            var weights = cp.Files.FirstOrDefault(f => f.Path == "model.safetensors") ?? cp.Files.FirstOrDefault();
            int prompts = 0;
            long candidates = 0, judgements = 0;
            if (dataset is not null && dataset.PairIds.Count > 0)
            {
                var pairs = await store.GetManyAsync<PairRecord>(dataset.PairIds, ct);
                prompts = pairs.Select(p => p.PromptId).Distinct().Count();
                foreach (var promptId in pairs.Select(p => p.PromptId).Distinct())
                {
                    var cands = await store.ListAsync<CandidateRecord>(ArtifactQuery.OfParent(promptId), ct);
                    candidates += cands.Count;
                    foreach (var c in cands) judgements += await store.CountAsync<JudgementRecord>(ArtifactQuery.OfParent(c.Id), ct);
                }
            }
            nodes.Add(new LineageNode
            {
                CheckpointId = cp.Id, Origin = cp.Origin, ParentCheckpointId = cp.ParentCheckpointId, WeightsSha256 = weights?.Sha256,
                DatasetId = dataset?.Id, DatasetPurpose = dataset?.Purpose, Pairs = dataset?.PairIds.Count ?? 0, Prompts = prompts,
                Candidates = candidates, Judgements = judgements, SeedBlobs = dataset?.BlobSha256s ?? [], JobId = cp.JobId,
            });
        }
        return nodes;
    }

    public static string Format(IReadOnlyList<LineageNode> nodes)
    {
        var sb = new System.Text.StringBuilder();
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        for (int i = 0; i < nodes.Count; i++)
        {
            var n = nodes[i];
            var indent = new string(' ', 2 * i);
            sb.AppendLine(inv, $"{indent}{n.CheckpointId} [{n.Origin}] weights sha256 {n.WeightsSha256?[..Math.Min(16, n.WeightsSha256.Length)] ?? "?"}{(n.JobId is null ? "" : $" job {n.JobId}")}");
            if (n.DatasetId is not null)
            {
                sb.Append(inv, $"{indent}  trained on {n.DatasetId} ({n.DatasetPurpose})");
                if (n.Pairs > 0) sb.Append(inv, $": {n.Pairs} pairs from {n.Prompts} prompts, {n.Candidates} candidates, {n.Judgements} judgements");
                if (n.SeedBlobs.Count > 0) sb.Append(inv, $": seed files {string.Join(", ", n.SeedBlobs.Select(b => b[..Math.Min(12, b.Length)]))}");
                sb.AppendLine();
            }
            if (n.ParentCheckpointId is not null) sb.AppendLine(inv, $"{indent}  parent:");
        }
        return sb.ToString().TrimEnd();
    }
}
