namespace Srlm.Messaging.Operations;

/// <summary>One exported preference pair: the prompt/chosen/rejected layout DPO trainers elsewhere read, with the
/// judge's mean scores and the ids that trace it back.</summary>
public sealed record ExportedPair
{
    public required string Prompt { get; init; }
    public required string Chosen { get; init; }
    public required string Rejected { get; init; }
    public required double ScoreChosen { get; init; }
    public required double ScoreRejected { get; init; }
    public required int Iteration { get; init; }
    public required string PairId { get; init; }
    public required string PromptId { get; init; }
    public required string ChosenId { get; init; }
    public required string RejectedId { get; init; }
    /// <summary>Why each candidate's generation ended ("eos", "stop", "length"; null for candidates stored before finish reasons were).</summary>
    public string? ChosenFinishReason { get; init; }
    public string? RejectedFinishReason { get; init; }

    public static JsonSerializerOptions Json { get; } = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
}

public static class PairExport
{
    /// <summary>Writes one JSON object per line for every stored pair of the run (or one iteration), in id order;
    /// returns the count. A pair whose prompt or candidate is missing is an integrity error naming it.</summary>
    public static async Task<int> WriteJsonlAsync(IArtifactStore store, string runId, int? iteration, TextWriter output, CancellationToken ct = default)
    {
        var pairs = await store.ListAsync<PairRecord>(ArtifactQuery.OfRun(runId, iteration), ct);
        var prompts = (await store.GetManyAsync<PromptRecord>(pairs.Select(p => p.PromptId).Distinct(), ct)).ToDictionary(p => p.Id);
        var candidates = (await store.GetManyAsync<CandidateRecord>(pairs.SelectMany(p => new[] { p.ChosenCandidateId, p.RejectedCandidateId }).Distinct(), ct))
            .ToDictionary(c => c.Id);
        foreach (var p in pairs)
        {
            var prompt = prompts.GetValueOrDefault(p.PromptId) ?? throw new StoreIntegrityException($"pair {p.Id}: prompt {p.PromptId} is not stored");
            var chosen = candidates.GetValueOrDefault(p.ChosenCandidateId) ?? throw new StoreIntegrityException($"pair {p.Id}: candidate {p.ChosenCandidateId} is not stored");
            var rejected = candidates.GetValueOrDefault(p.RejectedCandidateId) ?? throw new StoreIntegrityException($"pair {p.Id}: candidate {p.RejectedCandidateId} is not stored");
            await output.WriteLineAsync(JsonSerializer.Serialize(new ExportedPair
            {
                Prompt = prompt.Text, Chosen = chosen.Text, Rejected = rejected.Text, ScoreChosen = p.ChosenScore, ScoreRejected = p.RejectedScore,
                Iteration = p.Iteration, PairId = p.Id, PromptId = p.PromptId, ChosenId = chosen.Id, RejectedId = rejected.Id,
                ChosenFinishReason = chosen.FinishReason, RejectedFinishReason = rejected.FinishReason,
            }, ExportedPair.Json).AsMemory(), ct);
        }
        return pairs.Count;
    }
}
