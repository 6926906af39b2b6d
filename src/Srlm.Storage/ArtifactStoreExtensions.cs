namespace Srlm.Storage;

/// <summary>Named shortcuts for the questions the pipeline asks most (all counted from stored facts).</summary>
public static class ArtifactStoreExtensions
{
    public static Task<IReadOnlyList<CandidateRecord>> CandidatesOfPromptAsync(this IArtifactStore s, string promptId, CancellationToken ct = default) =>
        s.ListAsync<CandidateRecord>(ArtifactQuery.OfParent(promptId), ct);

    public static Task<IReadOnlyList<JudgementRecord>> JudgementsOfCandidateAsync(this IArtifactStore s, string candidateId, CancellationToken ct = default) =>
        s.ListAsync<JudgementRecord>(ArtifactQuery.OfParent(candidateId), ct);

    public static Task<long> JudgementCountAsync(this IArtifactStore s, string candidateId, CancellationToken ct = default) =>
        s.CountAsync<JudgementRecord>(ArtifactQuery.OfParent(candidateId), ct);

    public static async Task<PromptSetFinalRecord?> FinalPromptSetAsync(this IArtifactStore s, string runId, int iteration, CancellationToken ct = default) =>
        (await s.ListAsync<PromptSetFinalRecord>(ArtifactQuery.OfRun(runId, iteration), ct)).FirstOrDefault();

    public static async Task<IterationRecord?> IterationAsync(this IArtifactStore s, string runId, int iteration, CancellationToken ct = default) =>
        (await s.ListAsync<IterationRecord>(ArtifactQuery.OfRun(runId, iteration), ct)).FirstOrDefault();

    /// <summary>The pair or the drop stored for a prompt (null, null when it is not settled yet).</summary>
    public static async Task<(PairRecord? Pair, PairDropRecord? Drop)> SettlementOfPromptAsync(this IArtifactStore s, string promptId, CancellationToken ct = default) =>
        ((await s.ListAsync<PairRecord>(ArtifactQuery.OfParent(promptId), ct)).FirstOrDefault(),
         (await s.ListAsync<PairDropRecord>(ArtifactQuery.OfParent(promptId), ct)).FirstOrDefault());

    /// <summary>The checkpoint M_t of a run (model index t), when stored.</summary>
    public static async Task<CheckpointRecord?> CheckpointOfIterationAsync(this IArtifactStore s, string runId, int modelIndex, CancellationToken ct = default) =>
        (await s.ListAsync<CheckpointRecord>(ArtifactQuery.OfRun(runId, modelIndex), ct)).FirstOrDefault(c => c.IsMain);

    /// <summary>
    /// True when the prompt has candidates 0..N-1 stored and each has judge samples 0..K-1 stored
    /// (distinct indexes, so records duplicated by a buggy writer do not make a prompt look complete).
    /// </summary>
    public static async Task<bool> IsPromptFullyJudgedAsync(this IArtifactStore s, string promptId, int candidatesPerPrompt, int samplesPerCandidate, CancellationToken ct = default)
    {
        var candidates = await s.CandidatesOfPromptAsync(promptId, ct);
        if (candidates.Select(c => c.Index).Where(i => i < candidatesPerPrompt).Distinct().Count() < candidatesPerPrompt) return false;
        foreach (var c in candidates)
        {
            var judged = await s.JudgementsOfCandidateAsync(c.Id, ct);
            if (judged.Select(j => j.SampleIndex).Where(i => i < samplesPerCandidate).Distinct().Count() < samplesPerCandidate) return false;
        }
        return true;
    }
}
