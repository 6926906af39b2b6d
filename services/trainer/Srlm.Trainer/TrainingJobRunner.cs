namespace Srlm.Trainer;

/// <summary>An SFT example as text: the user prompt (before the chat template) and the completion; <see cref="Context"/>
/// is the seed conversation a chat template renders turn by turn (null for an EFT example).</summary>
public sealed record TextExample(string Prompt, string Completion, IReadOnlyList<Srlm.Contracts.Seeds.ChatTurn>? Context = null);

/// <summary>A preference pair as text.</summary>
public sealed record TextPair(string Id, string Prompt, string Chosen, string Rejected);

/// <summary>Everything one training job needs, already read from the store.</summary>
public sealed record TrainingJobInput
{
    public required string JobId { get; init; }
    public required JobKind Kind { get; init; }
    public required RunSpec Spec { get; init; }
    public required string InputCheckpointDir { get; init; }

    /// <summary>Resumable state (optimizer, step, data order); the same folder after a restart.</summary>
    public required string StateDir { get; init; }

    /// <summary>Where the new checkpoint folder is written.</summary>
    public required string OutputDir { get; init; }

    public required long Seed { get; init; }

    /// <summary>Recorded with the trained checkpoint (training_meta.json).</summary>
    public string? DatasetId { get; init; }

    public IReadOnlyList<TextExample>? Sft { get; init; }
    public IReadOnlyList<TextPair>? Dpo { get; init; }
    /// <summary>DPO only: SFT examples replayed beside the pairs (spec.training.dpo.replay_per_pair).</summary>
    public IReadOnlyList<TextExample>? Replay { get; init; }
}

/// <summary>One metrics row of a running job (names as the training library reports them).</summary>
public sealed record TrainingRow(int Step, int TotalSteps, IReadOnlyDictionary<string, double> Metrics);

public sealed record TrainingJobResult(string OutputDirectory, int Steps, int TrainExamples, double Seconds, bool Resumed);

/// <summary>Trains one job (on its own thread: TorchSharp scopes and grad mode are per thread), resuming
/// from the state folder when it holds saved state.</summary>
public interface ITrainingJobRunner
{
    Task<TrainingJobResult> RunAsync(TrainingJobInput input, IProgress<TrainingRow> progress, CancellationToken ct);
}
