namespace Srlm.Storage;

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
    /// <summary>Candidates whose generation ended by the token limit (finish reason `length`).</summary>
    public long Truncated { get; init; }
    /// <summary>Stored judge samples (valid + unparseable).</summary>
    public long Judgments { get; init; }
    public long Unparseable { get; init; }
    public long Pairs { get; init; }
    public long DroppedTies { get; init; }
    public long DroppedOther { get; init; }
    public long TooLong { get; init; }
    /// <summary>Prompts dropped for too few candidates not cut by the token limit.</summary>
    public long DroppedTruncated { get; init; }
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

/// <summary>What the stored facts say about a run: settled prompts, iteration counts, duplicates, lineage.</summary>
public interface IStatusQueries
{
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
}
