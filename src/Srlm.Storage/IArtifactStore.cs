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

/// <summary>Journal filter. Entries come back in append order.</summary>
public sealed record JournalQuery
{
    public string? RunId { get; init; }
    public int? Iteration { get; init; }
    public string? MessageType { get; init; }
    public JournalDirection? Direction { get; init; }
    public string? MessageId { get; init; }
    /// <summary>Only entries with <see cref="JournalEntry.Sequence"/> greater than this.</summary>
    public long AfterSequence { get; init; }
    /// <summary>At most this many entries, in sequence order (0 or less: none).</summary>
    public int Limit { get; init; } = int.MaxValue;
}

/// <summary>Counts of one iteration, all computed from stored facts.</summary>
public sealed record IterationStatus
{
    public required string RunId { get; init; }
    public required int Iteration { get; init; }
    /// <summary>Size of the final prompt set when it is stored, else the number of stored prompts.</summary>
    public long Prompts { get; init; }
    public bool PromptSetFinal { get; init; }
    /// <summary>Stored generated prompts (before filtering).</summary>
    public long PromptsGenerated { get; init; }
    public long PromptShards { get; init; }
    public long Candidates { get; init; }
    /// <summary>Stored judge samples (valid + unparseable).</summary>
    public long Judgments { get; init; }
    public long Unparseable { get; init; }
    public long Pairs { get; init; }
    public long DroppedTies { get; init; }
    public long DroppedOther { get; init; }
    public long TooLong { get; init; }
    /// <summary>Prompts with a pair or a drop stored.</summary>
    public long Settled { get; init; }
    /// <summary>Artifacts stored more than once for one logical key (extra copies). Must be 0.</summary>
    public long Duplicates { get; init; }
    public string? StartCheckpointId { get; init; }
    /// <summary>The checkpoint this iteration produced (model index t+1), when stored.</summary>
    public string? CheckpointId { get; init; }
}

/// <summary>A logical key stored under several ids.</summary>
/// <remarks>Kind joins the kinds involved with "+" in ordinal order (e.g. "pair+pair_drop"); Ids are ordinal-sorted.</remarks>
public sealed record DuplicateGroup(string Kind, string LogicalKey, IReadOnlyList<string> Ids);

/// <summary>One step of a checkpoint's lineage: the checkpoint and the dataset it was trained on.</summary>
public sealed record LineageStep(CheckpointRecord Checkpoint, DatasetRecord? Dataset);

/// <summary>
/// The artifact store: runs, every artifact of the pipeline, jobs, metrics, blobs, the message journal
/// and parked errors. Every write is idempotent under a caller-supplied deterministic id.
/// Implementations retry one call briefly on transient errors (Polly); logic errors surface at once.
/// Thread-safe; one instance per process is enough.
/// </summary>
public interface IArtifactStore : IAsyncDisposable
{
    /// <summary>Where the store lives, for messages ("sqlite:///data/srlm.db", "mongodb://host/db").</summary>
    string Location { get; }

    // ---- runs -----------------------------------------------------------------------------------

    /// <summary>Create a run in state Running. Same id + same spec: Unchanged; different spec: Conflict.</summary>
    Task<WriteOutcome> CreateRunAsync(string runId, string specJson, int specSchemaVersion, CancellationToken ct = default);
    Task<RunRecord?> GetRunAsync(string runId, CancellationToken ct = default);
    /// <summary>All runs, newest first.</summary>
    Task<IReadOnlyList<RunRecord>> ListRunsAsync(CancellationToken ct = default);
    /// <summary>
    /// Move a run to a state. Terminal states (failed, completed, cancelled) are sticky: a later call
    /// returns Unchanged without effect. Returns Updated when the state changed. Throws
    /// <see cref="KeyNotFoundException"/> for an unknown run.
    /// </summary>
    Task<WriteOutcome> SetRunStateAsync(string runId, RunState state, string? failureReason = null, CancellationToken ct = default);
    /// <summary>
    /// Put a FAILED run back to Running (failure reason cleared), e.g. after `srlm errors requeue` re-published
    /// the parked messages. Completed and cancelled runs stay as they are. Updated or Unchanged;
    /// KeyNotFoundException for an unknown run.
    /// </summary>
    Task<WriteOutcome> ReopenFailedRunAsync(string runId, CancellationToken ct = default);
    /// <summary>Record progress now (artifact inserts and job heartbeats do this automatically).</summary>
    Task TouchRunAsync(string runId, CancellationToken ct = default);

    // ---- immutable artifacts ----------------------------------------------------------------------

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
    /// <summary>
    /// Replace a stored artifact's content (operator repair, or a test that tampers with a stored score).
    /// Never used by the pipeline. Returns Updated, Unchanged, or Inserted when it did not exist.
    /// </summary>
    Task<WriteOutcome> OverwriteAsync<T>(T artifact, CancellationToken ct = default) where T : class, IArtifact;

    // ---- completion and status --------------------------------------------------------------------

    /// <summary>Prompts of iteration t that have a pair or a drop stored (distinct prompt ids).</summary>
    Task<long> CountSettledPromptsAsync(string runId, int iteration, CancellationToken ct = default);
    /// <summary>Ids of the FINAL prompt set of iteration t with no pair and no drop stored yet (empty when no final set).</summary>
    Task<IReadOnlyList<string>> ListUnsettledPromptsAsync(string runId, int iteration, CancellationToken ct = default);
    Task<IterationStatus> GetIterationStatusAsync(string runId, int iteration, CancellationToken ct = default);
    /// <summary>Status of every iteration that has any artifact, ascending.</summary>
    Task<IReadOnlyList<IterationStatus>> GetRunStatusAsync(string runId, CancellationToken ct = default);
    /// <summary>Logical keys stored under more than one id (what <see cref="IterationStatus.Duplicates"/> counts).</summary>
    Task<IReadOnlyList<DuplicateGroup>> ListDuplicatesAsync(string runId, int? iteration = null, CancellationToken ct = default);
    /// <summary>The checkpoint, its parent, ... up to the root, each with the dataset it was trained on.</summary>
    Task<IReadOnlyList<LineageStep>> GetLineageAsync(string checkpointId, CancellationToken ct = default);

    // ---- jobs -------------------------------------------------------------------------------------

    /// <summary>Queue a job (state Queued). Same id again: Unchanged (whatever its state now).</summary>
    Task<WriteOutcome> EnqueueJobAsync(JobRecord job, CancellationToken ct = default);
    Task<JobRecord?> GetJobAsync(string jobId, CancellationToken ct = default);
    Task<IReadOnlyList<JobRecord>> ListJobsAsync(string? runId = null, JobState? state = null, CancellationToken ct = default);
    /// <summary>
    /// Atomically claim a job for <paramref name="owner"/>: a Queued job, or a Running job whose
    /// heartbeat is older than <paramref name="staleAfter"/> (its owner died), or a Running job that
    /// <paramref name="owner"/> already holds. Returns the claimed job (State Running, Attempts+1 on a
    /// new claim) or null when it cannot be claimed (completed, failed, or alive elsewhere).
    /// </summary>
    Task<JobRecord?> TryClaimJobAsync(string jobId, string owner, TimeSpan staleAfter, CancellationToken ct = default);
    /// <summary>Claim the oldest claimable job of the given kinds (any kind when null), or null.</summary>
    Task<JobRecord?> ClaimNextJobAsync(string owner, TimeSpan staleAfter, IReadOnlyCollection<JobKind>? kinds = null, CancellationToken ct = default);
    /// <summary>Heartbeat and progress. False when the owner no longer holds the job (stop working on it).</summary>
    Task<bool> HeartbeatJobAsync(string jobId, string owner, long step, string? stateDir = null, CancellationToken ct = default);
    /// <summary>Mark completed. False when the owner no longer holds the job; true also when already completed.</summary>
    Task<bool> CompleteJobAsync(string jobId, string owner, string? outputCheckpointId = null, CancellationToken ct = default);
    /// <summary>Mark failed with an error. False when the owner no longer holds the job.</summary>
    Task<bool> FailJobAsync(string jobId, string owner, string error, CancellationToken ct = default);

    // ---- metrics ----------------------------------------------------------------------------------

    /// <summary>Upsert metrics keyed by (run, iteration, step, name): last write wins.</summary>
    Task PutMetricsAsync(IEnumerable<MetricRecord> metrics, CancellationToken ct = default);
    /// <summary>Metrics of a run ordered by iteration, step, name; optionally one iteration and a name prefix.</summary>
    Task<IReadOnlyList<MetricRecord>> ListMetricsAsync(string runId, int? iteration = null, string? namePrefix = null, CancellationToken ct = default);

    // ---- blobs ------------------------------------------------------------------------------------

    /// <summary>Store bytes under their sha256 (returned, lower-case hex). Idempotent.</summary>
    Task<BlobInfo> PutBlobAsync(ReadOnlyMemory<byte> content, string? name = null, string? mediaType = null, CancellationToken ct = default);
    /// <summary>The bytes, verified against the sha256, or null when absent. Throws <see cref="StoreIntegrityException"/> on mismatch.</summary>
    Task<byte[]?> GetBlobAsync(string sha256, CancellationToken ct = default);
    Task<BlobInfo?> GetBlobInfoAsync(string sha256, CancellationToken ct = default);

    // ---- journal and errors -----------------------------------------------------------------------

    /// <summary>Append an entry; same id again: Unchanged (the first is kept). Sequence is assigned by the store.</summary>
    Task<WriteOutcome> AppendJournalAsync(JournalEntry entry, CancellationToken ct = default);
    /// <summary>
    /// <see cref="AppendJournalAsync"/> for several entries in one round trip (SQLite: one transaction; all or nothing),
    /// sequences in input order; an id already stored, or repeated in the list, is Unchanged (the first is kept).
    /// Outcomes in input order. The bus's journal writer batches the entries of concurrent messages through it.
    /// </summary>
    Task<IReadOnlyList<WriteOutcome>> AppendJournalManyAsync(IReadOnlyList<JournalEntry> entries, CancellationToken ct = default);
    Task<IReadOnlyList<JournalEntry>> QueryJournalAsync(JournalQuery query, CancellationToken ct = default);
    Task<long> CountJournalAsync(JournalQuery query, CancellationToken ct = default);

    /// <summary>Record a parked message; same id again: Unchanged.</summary>
    Task<WriteOutcome> PutErrorAsync(ErrorRecord error, CancellationToken ct = default);
    /// <summary>Errors (optionally of one run), oldest first; requeued ones included only when asked.</summary>
    Task<IReadOnlyList<ErrorRecord>> ListErrorsAsync(string? runId = null, bool includeRequeued = false, CancellationToken ct = default);
    /// <summary>Mark an error requeued (the CLI re-published it). False when unknown or already requeued.</summary>
    Task<bool> MarkErrorRequeuedAsync(string errorId, CancellationToken ct = default);
}
