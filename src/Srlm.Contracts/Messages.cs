namespace Srlm.Contracts;

// The pipeline's messages (../shared/DESIGN.md, "Messages"). Plain data, no package references:
// MassTransit identifies a message by namespace and type name, so each exists exactly once, here.
// Messages carry ids, never payloads: prompts, answers, datasets and weights live in the store.
// Commands are imperative, events past tense. They change by adding: a new field is a nullable init
// property; a breaking change is a new type.

/// <summary>What every pipeline message carries: the run, the iteration it belongs to, and the
/// checkpoint the work must use (so a hand-off never races with work still in flight).</summary>
public interface IRunMessage
{
    string RunId { get; }

    /// <summary>0 = the SFT stage (M0 -> M1); t >= 1 = self-rewarding iteration t, which uses M_t.</summary>
    int Iteration { get; }

    /// <summary>The checkpoint this message's work uses (or, for CheckpointReady, produced).</summary>
    string CheckpointId { get; }
}

/// <summary>Event: a run was stored with its spec, seed files and starting checkpoint. The trainer
/// answers with the SFT job (M0 -> M1), or skips straight to iteration 1 when the spec gives M1.</summary>
public sealed record RunStarted : IRunMessage
{
    public required string RunId { get; init; }
    public required int Iteration { get; init; }
    public required string CheckpointId { get; init; }
}

/// <summary>Event: iteration t starts with M_t. The generator fans out GeneratePrompts shards.</summary>
public sealed record IterationStarted : IRunMessage
{
    public required string RunId { get; init; }
    public required int Iteration { get; init; }
    public required string CheckpointId { get; init; }
}

/// <summary>Command: write one shard of the iteration's new prompts (competing generator replicas).</summary>
public sealed record GeneratePrompts : IRunMessage
{
    public required string RunId { get; init; }
    public required int Iteration { get; init; }
    public required string CheckpointId { get; init; }
    public required int Shard { get; init; }
    public required int ShardCount { get; init; }
}

/// <summary>Command: sample the N candidate answers of one prompt of the final prompt set.</summary>
public sealed record GenerateResponses : IRunMessage
{
    public required string RunId { get; init; }
    public required int Iteration { get; init; }
    public required string CheckpointId { get; init; }
    public required string PromptId { get; init; }
}

/// <summary>Command: judge one candidate with K samples of the LLM-as-a-Judge prompt.</summary>
public sealed record JudgeCandidate : IRunMessage
{
    public required string RunId { get; init; }
    public required int Iteration { get; init; }
    public required string CheckpointId { get; init; }
    public required string PromptId { get; init; }
    public required string CandidateId { get; init; }
}

/// <summary>Event: all K judge samples of a candidate are stored. Score is the mean of the valid
/// parses, or null when none parsed (never an invented number).</summary>
public sealed record CandidateJudged : IRunMessage
{
    public required string RunId { get; init; }
    public required int Iteration { get; init; }
    public required string CheckpointId { get; init; }
    public required string PromptId { get; init; }
    public required string CandidateId { get; init; }
    public required int Samples { get; init; }
    public required int ValidSamples { get; init; }
    public double? Score { get; init; }
}

/// <summary>Event: every prompt of the iteration's final prompt set is settled (paired or dropped);
/// the stored dataset of pairs is ready for DPO.</summary>
public sealed record PairsReady : IRunMessage
{
    public required string RunId { get; init; }
    public required int Iteration { get; init; }
    public required string CheckpointId { get; init; }
    public required string DatasetId { get; init; }
    public required int Pairs { get; init; }
}

/// <summary>Event: a training job finished. CheckpointId is the new model (M_{t+1}); Iteration is the
/// iteration whose data trained it (0 for SFT). Starts iteration t+1, or completes the run.</summary>
public sealed record CheckpointReady : IRunMessage
{
    public required string RunId { get; init; }
    public required int Iteration { get; init; }
    public required string CheckpointId { get; init; }

    /// <summary>The checkpoint it was trained from; null when the run was given this checkpoint (M1 uploaded).</summary>
    public string? ParentCheckpointId { get; init; }

    public string? JobId { get; init; }
}

/// <summary>Command: evaluate a checkpoint on the spec's held-out split (hosted with the generator).</summary>
public sealed record EvaluateCheckpoint : IRunMessage
{
    public required string RunId { get; init; }
    public required int Iteration { get; init; }
    public required string CheckpointId { get; init; }
}

/// <summary>Event: evaluation metrics of a checkpoint are stored.</summary>
public sealed record CheckpointEvaluated : IRunMessage
{
    public required string RunId { get; init; }
    public required int Iteration { get; init; }
    public required string CheckpointId { get; init; }
}

/// <summary>Event: the last iteration's checkpoint is ready; the run is complete.</summary>
public sealed record RunCompleted : IRunMessage
{
    public required string RunId { get; init; }
    public required int Iteration { get; init; }
    public required string CheckpointId { get; init; }
}

/// <summary>Event: the run cannot go on (a message was parked in an error queue, a job failed).</summary>
public sealed record RunFailed : IRunMessage
{
    public required string RunId { get; init; }
    public required int Iteration { get; init; }
    public required string CheckpointId { get; init; }
    public required string Reason { get; init; }
}

/// <summary>Command: a user cancelled the run; services stop taking its work.</summary>
public sealed record CancelRun
{
    public required string RunId { get; init; }
}
