namespace Srlm.Training;

/// <summary>
/// One row of metrics, reported every logging step (Kind "train") and after each validation (Kind "eval").
/// Keys: loss, learning_rate, grad_norm, tokens_per_s, epoch; DPO adds rewards/chosen, rewards/rejected,
/// rewards/accuracies, rewards/margins, logps/chosen, logps/rejected. Validation rows use the same
/// names with an "eval/" prefix (eval/loss, eval/rewards/accuracies, ...).
/// </summary>
public sealed record TrainingProgress(string Job, string Kind, int Step, int TotalSteps, IReadOnlyDictionary<string, double> Metrics)
{
    /// <summary>Fraction done, for a progress bar.</summary>
    public double Fraction => TotalSteps == 0 ? 1 : (double)Step / TotalSteps;
}

/// <summary>What a finished job produced.</summary>
public sealed record TrainingResult
{
    /// <summary>The output checkpoint folder (HF format plus training_meta.json).</summary>
    public required string OutputDirectory { get; init; }
    /// <summary>Optimizer steps run in total (across resumes).</summary>
    public required int Steps { get; init; }
    /// <summary>Training examples (SFT) or pairs (DPO) used, after the validation split.</summary>
    public required int TrainExamples { get; init; }
    public required int ValidationExamples { get; init; }
    /// <summary>DPO pairs dropped before training because prompt + completion exceeds the context.</summary>
    public int TooLong { get; init; }
    /// <summary>True when the job continued from saved state.</summary>
    public bool Resumed { get; init; }
    /// <summary>The last train row and the last eval row, merged.</summary>
    public required IReadOnlyDictionary<string, double> FinalMetrics { get; init; }
    /// <summary>The step whose weights were written when keeping the best (null: the last step's).</summary>
    public int? BestStep { get; init; }
    /// <summary>sha256 (hex) of each weight file written, by file name.</summary>
    public required IReadOnlyDictionary<string, string> WeightFileSha256 { get; init; }
}
