// Over 300 lines on purpose: every stored record type side by side, so their logical keys and schema versions can be compared at a glance.
namespace Srlm.Storage;

/// <summary>
/// An immutable artifact stored under a caller-supplied deterministic id. The store derives the
/// LOGICAL key from the record's own fields (never from the id), so a writer that invents random ids
/// for the same logical thing shows up in <see cref="IterationStatus.Duplicates"/>.
/// </summary>
public interface IArtifact
{
    /// <summary>Short kind name, also the SQLite/Mongo discriminator ("prompt", "judgement", ...).</summary>
    static abstract string Kind { get; }

    /// <summary>Deterministic id chosen by the caller (derived from run, iteration and indexes).</summary>
    string Id { get; }

    string RunId { get; }

    /// <summary>Iteration t the artifact belongs to (0 for run-level artifacts such as M0 or seed data).</summary>
    int Iteration { get; }

    /// <summary>What this artifact IS, independent of its id: two records with one logical key are a duplicate.</summary>
    string LogicalKey { get; }

    /// <summary>The id queries group by (candidate -> prompt, judgement -> candidate, ...); null when none.</summary>
    string? ParentId { get; }

    /// <summary>A small discriminator counted by status queries (judgement valid/unparseable, drop reason).</summary>
    string? Tag { get; }

    /// <summary>Assigned by the store on first insert; ignored on input and excluded from content comparison.</summary>
    DateTimeOffset? CreatedAt { get; }
}

/// <summary>Result of an idempotent write.</summary>
public enum WriteOutcome
{
    /// <summary>The record was new and is now stored.</summary>
    Inserted,
    /// <summary>A record with this id and identical content was already stored: nothing changed.</summary>
    Unchanged,
    /// <summary>An immutable record with this id but DIFFERENT content is stored; the stored one is kept.</summary>
    Conflict,
    /// <summary>A mutable record changed (run state, job state, metrics, pair reference log-probs).</summary>
    Updated,
}

[JsonConverter(typeof(JsonStringEnumConverter<RunState>))]
public enum RunState { Running, Failed, Completed, Cancelled }

[JsonConverter(typeof(JsonStringEnumConverter<JobKind>))]
public enum JobKind { Sft, Dpo }

[JsonConverter(typeof(JsonStringEnumConverter<JobState>))]
public enum JobState { Queued, Running, Completed, Failed }

/// <summary>Why a prompt produced no pair: the pair rules' decision and the stored drop's reason; the names are the
/// report's counters (see PairDecision.CounterName in the pairbuilder).</summary>
[JsonConverter(typeof(JsonStringEnumConverter<DropReason>))]
public enum DropReason
{
    /// <summary>The best and the worst mean score are equal (or closer than pairs.min_margin).</summary>
    DroppedTies,
    /// <summary>Fewer candidates with a valid score than the spec's pairs.min_valid_scores.</summary>
    DroppedOther,
    /// <summary>Prompt + the longer answer exceed the training context.</summary>
    TooLong,
    /// <summary>Enough valid scores, but too few of them on candidates not cut by the token limit (spec.pairs.truncated).</summary>
    DroppedTruncated,
}

/// <summary>Why a generation ended, as records store it.</summary>
public static class FinishReasons
{
    /// <summary>An end-of-turn or EOS token (also when it was the last token allowed).</summary>
    public const string Eos = "eos";
    /// <summary>A stop string.</summary>
    public const string Stop = "stop";
    /// <summary>The token limit, with no end token.</summary>
    public const string Length = "length";
}

[JsonConverter(typeof(JsonStringEnumConverter<JournalDirection>))]
public enum JournalDirection { Published, Consumed }

/// <summary>A run: the spec it runs and its state. Mutable through the run methods of the store.</summary>
public sealed record RunRecord
{
    public required string Id { get; init; }
    /// <summary>The run spec exactly as uploaded (JSON text).</summary>
    public required string SpecJson { get; init; }
    public required int SpecSchemaVersion { get; init; }
    public RunState State { get; init; } = RunState.Running;
    public string? FailureReason { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset UpdatedAt { get; init; }
    /// <summary>Last time an artifact of this run was inserted or a job heartbeat arrived.</summary>
    public DateTimeOffset LastProgressAt { get; init; }

    public bool IsTerminal => State is RunState.Failed or RunState.Completed or RunState.Cancelled;
}

/// <summary>Iteration t started from a checkpoint.</summary>
public sealed record IterationRecord : IArtifact
{
    public static string Kind => "iteration";
    public required string Id { get; init; }
    public required string RunId { get; init; }
    public required int Iteration { get; init; }
    public required string StartCheckpointId { get; init; }
    public DateTimeOffset? CreatedAt { get; init; }
    string IArtifact.LogicalKey => $"iteration/{RunId}/{Iteration}";
    string? IArtifact.ParentId => null;
    string? IArtifact.Tag => null;
}

/// <summary>One generator shard of iteration t is stored (its prompt ids, before cross-shard filtering).</summary>
public sealed record PromptShardRecord : IArtifact
{
    public static string Kind => "prompt_shard";
    public required string Id { get; init; }
    public required string RunId { get; init; }
    public required int Iteration { get; init; }
    public required int Shard { get; init; }
    public required int ShardCount { get; init; }
    public required IReadOnlyList<string> PromptIds { get; init; }
    public DateTimeOffset? CreatedAt { get; init; }
    string IArtifact.LogicalKey => $"prompt_shard/{RunId}/{Iteration}/{Shard}";
    string? IArtifact.ParentId => null;
    string? IArtifact.Tag => null;
}

/// <summary>The iteration's prompt set is final: these prompts (after filtering) get candidates.</summary>
public sealed record PromptSetFinalRecord : IArtifact
{
    public static string Kind => "prompt_set";
    public required string Id { get; init; }
    public required string RunId { get; init; }
    public required int Iteration { get; init; }
    public required IReadOnlyList<string> PromptIds { get; init; }
    /// <summary>Optional: how many generated prompts the filter removed, by reason.</summary>
    public IReadOnlyDictionary<string, int>? Filtered { get; init; }
    public DateTimeOffset? CreatedAt { get; init; }
    string IArtifact.LogicalKey => $"prompt_set/{RunId}/{Iteration}";
    string? IArtifact.ParentId => null;
    string? IArtifact.Tag => null;
}

/// <summary>A prompt (generated by M_t, or a seed/held-out prompt). Parent: none; Tag: <see cref="Source"/>.</summary>
public sealed record PromptRecord : IArtifact
{
    public static string Kind => "prompt";
    public required string Id { get; init; }
    public required string RunId { get; init; }
    public required int Iteration { get; init; }
    public required int Shard { get; init; }
    /// <summary>Index of the prompt within its shard.</summary>
    public required int Index { get; init; }
    public required string Text { get; init; }
    /// <summary>"generated" (default), "seed" or "eval".</summary>
    public string Source { get; init; } = "generated";
    public string? CheckpointId { get; init; }
    public long? Seed { get; init; }
    /// <summary>Why the generation of a generated prompt ended (<see cref="FinishReasons"/>); null for seed prompts
    /// and for records written before it was stored.</summary>
    public string? FinishReason { get; init; }
    public DateTimeOffset? CreatedAt { get; init; }
    string IArtifact.LogicalKey => $"prompt/{RunId}/{Iteration}/{Source}/{Shard}/{Index}";
    string? IArtifact.ParentId => null;
    string? IArtifact.Tag => Source;
}

/// <summary>Candidate answer <see cref="Index"/> (0..N-1) to a prompt. Parent: the prompt.</summary>
public sealed record CandidateRecord : IArtifact
{
    public static string Kind => "candidate";
    public required string Id { get; init; }
    public required string RunId { get; init; }
    public required int Iteration { get; init; }
    public required string PromptId { get; init; }
    public required int Index { get; init; }
    public required string Text { get; init; }
    public required string CheckpointId { get; init; }
    public long Seed { get; init; }
    public int TokenCount { get; init; }
    /// <summary>Tokens of the templated prompt, measured by the generating model's tokenizer (null in
    /// records written before it was stored: the pairbuilder then asks the model).</summary>
    public int? PromptTokens { get; init; }
    /// <summary>The generating model's context length (null in older records, as above).</summary>
    public int? ContextLength { get; init; }
    /// <summary>Why the generation ended (<see cref="FinishReasons"/>); null in records written before it was stored.</summary>
    public string? FinishReason { get; init; }
    public DateTimeOffset? CreatedAt { get; init; }
    string IArtifact.LogicalKey => $"candidate/{PromptId}/{Index}";
    string? IArtifact.ParentId => PromptId;
    /// <summary>The finish reason, so status queries count the cut ones (`truncated`).</summary>
    string? IArtifact.Tag => FinishReason;
}

/// <summary>
/// ONE judge sample (index 0..K-1) of a candidate. <see cref="Score"/> null = unparseable (stored and
/// counted, never turned into a number). Parent: the candidate. Tag: "valid" or "unparseable".
/// </summary>
public sealed record JudgementRecord : IArtifact
{
    public static string Kind => "judgement";
    public const string Valid = "valid";
    public const string Unparseable = "unparseable";
    public required string Id { get; init; }
    public required string RunId { get; init; }
    public required int Iteration { get; init; }
    public required string PromptId { get; init; }
    public required string CandidateId { get; init; }
    public required int SampleIndex { get; init; }
    public required string RawText { get; init; }
    public double? Score { get; init; }
    public required long Seed { get; init; }
    public required string CheckpointId { get; init; }
    /// <summary>Why the judge's generation ended (<see cref="FinishReasons"/>); null in records written before it was stored.</summary>
    public string? FinishReason { get; init; }
    public DateTimeOffset? CreatedAt { get; init; }
    string IArtifact.LogicalKey => $"judgement/{CandidateId}/{SampleIndex}";
    string? IArtifact.ParentId => CandidateId;
    string? IArtifact.Tag => Score is null ? Unparseable : Valid;
}

/// <summary>A preference pair of a prompt. Parent: the prompt. Logical key shared with drops ("settle").</summary>
public sealed record PairRecord : IArtifact
{
    public static string Kind => "pair";
    public required string Id { get; init; }
    public required string RunId { get; init; }
    public required int Iteration { get; init; }
    public required string PromptId { get; init; }
    public required string ChosenCandidateId { get; init; }
    public required string RejectedCandidateId { get; init; }
    public required double ChosenScore { get; init; }
    public required double RejectedScore { get; init; }
    public int ChosenTokens { get; init; }
    public int RejectedTokens { get; init; }
    /// <summary>Sum of reference-model log-probs of the chosen completion; filled later by the trainer.</summary>
    public double? ReferenceChosenLogProb { get; init; }
    public double? ReferenceRejectedLogProb { get; init; }
    public DateTimeOffset? CreatedAt { get; init; }
    string IArtifact.LogicalKey => $"settle/{PromptId}";
    string? IArtifact.ParentId => PromptId;
    string? IArtifact.Tag => null;
}

/// <summary>A prompt that yields no pair, with the reason. Parent: the prompt. Tag: the reason.</summary>
public sealed record PairDropRecord : IArtifact
{
    public static string Kind => "pair_drop";
    public required string Id { get; init; }
    public required string RunId { get; init; }
    public required int Iteration { get; init; }
    public required string PromptId { get; init; }
    public required DropReason Reason { get; init; }
    public string? Detail { get; init; }
    public DateTimeOffset? CreatedAt { get; init; }
    string IArtifact.LogicalKey => $"settle/{PromptId}";
    string? IArtifact.ParentId => PromptId;
    string? IArtifact.Tag => Reason.ToString();
}

/// <summary>A training dataset: DPO pairs of an iteration, or the SFT seed files (blob sha256s).</summary>
public sealed record DatasetRecord : IArtifact
{
    public static string Kind => "dataset";
    public required string Id { get; init; }
    public required string RunId { get; init; }
    public required int Iteration { get; init; }
    /// <summary>"sft" or "dpo" (or e.g. "eval").</summary>
    public required string Purpose { get; init; }
    public IReadOnlyList<string> PairIds { get; init; } = [];
    /// <summary>sha256 of the blobs (seed files) the dataset was built from.</summary>
    public IReadOnlyList<string> BlobSha256s { get; init; } = [];
    public string? Description { get; init; }
    public DateTimeOffset? CreatedAt { get; init; }
    string IArtifact.LogicalKey => $"dataset/{RunId}/{Iteration}/{Purpose}";
    string? IArtifact.ParentId => null;
    string? IArtifact.Tag => Purpose;
}

/// <summary>One file of a checkpoint folder with its digest.</summary>
public sealed record CheckpointFile(string Path, long Size, string Sha256);

/// <summary>
/// Checkpoint metadata. <see cref="IArtifact.Iteration"/> is the model index t of M_t (M0 = 0, M1 = 1 ...),
/// so iteration t's output checkpoint has Iteration t+1. Parent: the parent checkpoint.
/// </summary>
public sealed record CheckpointRecord : IArtifact
{
    public static string Kind => "checkpoint";

    /// <summary><see cref="Origin"/> of the control arm's models (spec.control): C_t beside M_t, same index t.</summary>
    public const string ControlOrigin = "control";

    /// <summary>True for M_t (the self-rewarding chain), false for the control arm's C_t.</summary>
    public bool IsMain => Origin != ControlOrigin;

    public required string Id { get; init; }
    public required string RunId { get; init; }
    public required int Iteration { get; init; }
    public string? ParentCheckpointId { get; init; }
    /// <summary>The dataset the checkpoint was trained on (null for an uploaded starting checkpoint).</summary>
    public string? DatasetId { get; init; }
    public string? JobId { get; init; }
    /// <summary>Where the checkpoint store keeps it (directory path or "gridfs:ID").</summary>
    public required string Location { get; init; }
    public required IReadOnlyList<CheckpointFile> Files { get; init; }
    /// <summary>"upload", "init", "sft", "dpo", or "control" (the control arm's C_t, beside M_t).</summary>
    public string Origin { get; init; } = "upload";
    public DateTimeOffset? CreatedAt { get; init; }
    /// <summary>One main model and at most one control model per index t.</summary>
    string IArtifact.LogicalKey => Origin == ControlOrigin ? $"checkpoint/{RunId}/{Iteration}/control" : $"checkpoint/{RunId}/{Iteration}";
    string? IArtifact.ParentId => ParentCheckpointId;
    string? IArtifact.Tag => Origin;
}

/// <summary>Evaluation of one checkpoint by one evaluator. Parent: the checkpoint.</summary>
public sealed record EvaluationRecord : IArtifact
{
    public static string Kind => "evaluation";
    public required string Id { get; init; }
    public required string RunId { get; init; }
    public required int Iteration { get; init; }
    public required string CheckpointId { get; init; }
    public required string Evaluator { get; init; }
    public required IReadOnlyDictionary<string, double> Metrics { get; init; }
    public string? Details { get; init; }
    public DateTimeOffset? CreatedAt { get; init; }
    string IArtifact.LogicalKey => $"evaluation/{CheckpointId}/{Evaluator}";
    string? IArtifact.ParentId => CheckpointId;
    string? IArtifact.Tag => Evaluator;
}

/// <summary>A durable training job. Mutable through the job methods of the store.</summary>
public sealed record JobRecord
{
    public required string Id { get; init; }
    public required JobKind Kind { get; init; }
    public required string RunId { get; init; }
    public required int Iteration { get; init; }
    public JobState State { get; init; } = JobState.Queued;
    /// <summary>Checkpoint trained from (and DPO reference).</summary>
    public string? InputCheckpointId { get; init; }
    public string? DatasetId { get; init; }
    /// <summary>Checkpoint id the job will write (deterministic, known when the job is queued).</summary>
    public string? OutputCheckpointId { get; init; }
    /// <summary>Where the worker keeps training state (optimizer, step) between restarts.</summary>
    public string? StateDir { get; init; }
    /// <summary>Free-form parameters (JSON) for the worker.</summary>
    public string? ParametersJson { get; init; }
    public string? Owner { get; init; }
    public DateTimeOffset? HeartbeatAt { get; init; }
    public long Step { get; init; }
    public long? TotalSteps { get; init; }
    /// <summary>How many times the job was claimed (1 for a job that ran once).</summary>
    public int Attempts { get; init; }
    public string? Error { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset UpdatedAt { get; init; }
}

/// <summary>A scalar metric (loss, rewards/chosen, ...). Key: (run, iteration, step, name); last write wins.</summary>
public sealed record MetricRecord(string RunId, int Iteration, long Step, string Name, double Value);

/// <summary>Content-addressed bytes (seed files, the spec). Key: sha256 (lower-case hex).</summary>
public sealed record BlobInfo(string Sha256, long Size, string? Name, string? MediaType, DateTimeOffset CreatedAt);

/// <summary>
/// A published or consumed message. <see cref="Id"/> is the entry key, chosen by the journal observer,
/// e.g. "{messageId}/published" or "{messageId}/consumed/{endpoint}"; appending one id twice keeps the first.
/// </summary>
public sealed record JournalEntry
{
    public required string Id { get; init; }
    public required string MessageId { get; init; }
    public string? ConversationId { get; init; }
    public string? CorrelationId { get; init; }
    public required string MessageType { get; init; }
    public required JournalDirection Direction { get; init; }
    /// <summary>Queue/endpoint that consumed it, or the exchange it was published to.</summary>
    public string? Endpoint { get; init; }
    public IReadOnlyDictionary<string, string> Headers { get; init; } = new Dictionary<string, string>();
    public required string BodyJson { get; init; }
    public required DateTimeOffset Time { get; init; }
    public string? Host { get; init; }
    public string? RunId { get; init; }
    public int? Iteration { get; init; }
    /// <summary>Store-assigned append order (ascending in time of append); 0 on input.</summary>
    public long Sequence { get; init; }
}

/// <summary>A message parked in an error queue, with the reason.</summary>
public sealed record ErrorRecord
{
    public required string Id { get; init; }
    public string? MessageId { get; init; }
    public required string MessageType { get; init; }
    /// <summary>The error queue it was parked in (e.g. "judge-candidate_error").</summary>
    public string? Queue { get; init; }
    public required string Reason { get; init; }
    public string? ExceptionType { get; init; }
    public string? BodyJson { get; init; }
    public string? RunId { get; init; }
    public int? Iteration { get; init; }
    public required DateTimeOffset Time { get; init; }
    public string? Host { get; init; }
    public DateTimeOffset? RequeuedAt { get; init; }
}
