namespace Srlm.Storage;

/// <summary>Filter for artifact lists and counts. Null members do not filter.</summary>
public sealed record ArtifactQuery
{
    public string? RunId { get; init; }
    public int? Iteration { get; init; }
    /// <summary>The artifact's parent id (candidate -> prompt id, judgement -> candidate id, ...).</summary>
    public string? ParentId { get; init; }
    /// <summary>The artifact's tag (judgement "valid"/"unparseable", drop reason, prompt source, ...).</summary>
    public string? Tag { get; init; }

    public static ArtifactQuery OfRun(string runId, int? iteration = null) => new() { RunId = runId, Iteration = iteration };
    public static ArtifactQuery OfParent(string parentId) => new() { ParentId = parentId };
}

/// <summary>The pipeline's immutable artifacts (prompts, candidates, judgements, pairs, datasets, checkpoints, ...):
/// idempotent inserts under deterministic ids, reads, lists and counts.</summary>
public interface IArtifactRecordStore
{
    /// <summary>Idempotent insert: Inserted, Unchanged (same content) or Conflict (different content; stored one kept).</summary>
    Task<WriteOutcome> PutAsync<T>(T artifact, CancellationToken ct = default) where T : class, IArtifact;
    /// <summary>
    /// <see cref="PutAsync{T}"/> for several records in one round trip (SQLite: one transaction; all or
    /// nothing). Outcomes in input order. Use it for the K judge samples or N candidates of one message.
    /// </summary>
    Task<IReadOnlyList<WriteOutcome>> PutManyAsync<T>(IReadOnlyList<T> artifacts, CancellationToken ct = default) where T : class, IArtifact;
    Task<T?> GetAsync<T>(string id, CancellationToken ct = default) where T : class, IArtifact;
    /// <summary>The artifacts with these ids that exist (order of the ids; missing ones left out).</summary>
    Task<IReadOnlyList<T>> GetManyAsync<T>(IEnumerable<string> ids, CancellationToken ct = default) where T : class, IArtifact;
    /// <summary>Artifacts of kind T matching the query, ordered by id.</summary>
    Task<IReadOnlyList<T>> ListAsync<T>(ArtifactQuery query, CancellationToken ct = default) where T : class, IArtifact;
    Task<long> CountAsync<T>(ArtifactQuery query, CancellationToken ct = default) where T : class, IArtifact;
    /// <summary>
    /// Fill the reference log-probs of a stored pair once: Updated when they were empty, Unchanged when
    /// equal, Conflict when different values are already stored. Throws KeyNotFoundException for no pair.
    /// </summary>
    Task<WriteOutcome> SetPairReferenceLogProbsAsync(string pairId, double chosen, double rejected, CancellationToken ct = default);
}
