namespace Srlm.Training;

/// <summary>Which checkpoint a job writes to its output directory when a validation split is used.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<KeepCheckpoint>))]
public enum KeepCheckpoint
{
    /// <summary>The weights after the last step.</summary>
    Last,
    /// <summary>The weights at the validation step with the best validation score (lowest loss; for DPO
    /// the highest reward accuracy, ties broken by lower loss). Needs a validation split.</summary>
    Best,
}

/// <summary>Where DPO's reference log-probabilities come from.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<ReferenceMode>))]
public enum ReferenceMode
{
    /// <summary>Computed once per dataset before the first step with the parent weights (or taken from
    /// the pairs when they carry them) and stored with the job state: only the policy is in memory.</summary>
    Precomputed,
    /// <summary>A frozen, gradient-free copy of the parent kept in memory and run beside the policy every step.</summary>
    Live,
}

/// <summary>
/// Hyper-parameters shared by SFT and DPO. The defaults suit small models (tens to a few hundred million
/// parameters) on one machine; the paper's values for a 70B model are in the comments. Carried by the run spec.
/// </summary>
public abstract record TrainerOptions
{
    /// <summary>Peak learning rate reached after warm-up.</summary>
    public abstract double LearningRate { get; init; }

    /// <summary>Learning rate at the last step: the floor of the cosine decay.</summary>
    public abstract double MinLearningRate { get; init; }

    /// <summary>Optimizer steps of linear warm-up from 0 to <see cref="LearningRate"/>. Default 10.</summary>
    public int WarmupSteps { get; init; } = 10;

    /// <summary>Passes over the training split. Default 1.</summary>
    public int Epochs { get; init; } = 1;

    /// <summary>Stop after this many optimizer steps (0: no limit; the schedule then spans all epochs).</summary>
    public int MaxSteps { get; init; }

    /// <summary>Examples (SFT) or pairs (DPO) per optimizer step: the effective batch. Paper: 16. Default 16.</summary>
    public int BatchSize { get; init; } = 16;

    /// <summary>Examples or pairs per forward pass; BatchSize / MicroBatchSize micro-batches are accumulated
    /// before each optimizer step. Must divide BatchSize. Default 4.</summary>
    public int MicroBatchSize { get; init; } = 4;

    /// <summary>AdamW decoupled weight decay. Default 0.01.</summary>
    public double WeightDecay { get; init; } = 0.01;

    /// <summary>AdamW beta1. Default 0.9.</summary>
    public double AdamBeta1 { get; init; } = 0.9;

    /// <summary>AdamW beta2. Default 0.999.</summary>
    public double AdamBeta2 { get; init; } = 0.999;

    /// <summary>AdamW epsilon. Default 1e-8.</summary>
    public double AdamEpsilon { get; init; } = 1e-8;

    /// <summary>Clip the global L2 norm of the gradient to this value (0: no clipping). Default 1.0.</summary>
    public double MaxGradNorm { get; init; } = 1.0;

    /// <summary>Dropout probability applied by the model while training (0: none).</summary>
    public abstract double Dropout { get; init; }

    /// <summary>Seeds data order (shuffling, validation split) and dropout. Default 1.</summary>
    public long Seed { get; init; } = 1;

    /// <summary>Write resumable training state every N optimizer steps (0: only at the end). Default 50.</summary>
    public int SaveStateEverySteps { get; init; } = 50;

    /// <summary>Report metrics every N optimizer steps. Default 1.</summary>
    public int LogEverySteps { get; init; } = 1;

    /// <summary>Share of the examples held out for validation, chosen by the seed (0: none). Default 0.</summary>
    public double ValidationFraction { get; init; }

    /// <summary>Evaluate the validation split every N optimizer steps (0: only at the end). Default 0.</summary>
    public int ValidateEverySteps { get; init; }

    /// <summary>Which weights the output checkpoint holds. Default Last.</summary>
    public KeepCheckpoint Keep { get; init; } = KeepCheckpoint.Last;

    /// <summary>Longest tokenized prompt + completion accepted (0: the model's context length). Default 0.</summary>
    public int MaxSequenceLength { get; init; }

    /// <summary>Throws ArgumentException naming the first invalid field.</summary>
    public virtual void Validate()
    {
        static void Check(bool ok, string field, object value, string rule)
        {
            if (!ok) throw new ArgumentException($"training option {field} = {value}: {rule}");
        }
        Check(LearningRate > 0, nameof(LearningRate), LearningRate, "must be > 0");
        Check(MinLearningRate >= 0 && MinLearningRate <= LearningRate, nameof(MinLearningRate), MinLearningRate, "must be in [0, LearningRate]");
        Check(WarmupSteps >= 0, nameof(WarmupSteps), WarmupSteps, "must be >= 0");
        Check(Epochs >= 1, nameof(Epochs), Epochs, "must be >= 1");
        Check(MaxSteps >= 0, nameof(MaxSteps), MaxSteps, "must be >= 0");
        Check(BatchSize >= 1, nameof(BatchSize), BatchSize, "must be >= 1");
        Check(MicroBatchSize >= 1 && BatchSize % MicroBatchSize == 0, nameof(MicroBatchSize), MicroBatchSize, $"must divide BatchSize ({BatchSize})");
        Check(WeightDecay >= 0, nameof(WeightDecay), WeightDecay, "must be >= 0");
        Check(AdamBeta1 is >= 0 and < 1, nameof(AdamBeta1), AdamBeta1, "must be in [0, 1)");
        Check(AdamBeta2 is >= 0 and < 1, nameof(AdamBeta2), AdamBeta2, "must be in [0, 1)");
        Check(AdamEpsilon > 0, nameof(AdamEpsilon), AdamEpsilon, "must be > 0");
        Check(MaxGradNorm >= 0, nameof(MaxGradNorm), MaxGradNorm, "must be >= 0");
        Check(Dropout is >= 0 and < 1, nameof(Dropout), Dropout, "must be in [0, 1)");
        Check(SaveStateEverySteps >= 0, nameof(SaveStateEverySteps), SaveStateEverySteps, "must be >= 0");
        Check(LogEverySteps >= 1, nameof(LogEverySteps), LogEverySteps, "must be >= 1");
        Check(ValidationFraction is >= 0 and < 1, nameof(ValidationFraction), ValidationFraction, "must be in [0, 1)");
        Check(ValidateEverySteps >= 0, nameof(ValidateEverySteps), ValidateEverySteps, "must be >= 0");
        Check(Keep != KeepCheckpoint.Best || ValidationFraction > 0, nameof(Keep), Keep, "Best needs ValidationFraction > 0");
        Check(MaxSequenceLength >= 0, nameof(MaxSequenceLength), MaxSequenceLength, "must be >= 0");
    }
}

/// <summary>Supervised fine-tuning (M0 -> M1 on IFT + EFT seed data).</summary>
public sealed record SftOptions : TrainerOptions
{
    /// <summary>Peak learning rate. Paper (70B): 5.5e-6. Default for small models: 1e-4.</summary>
    public override double LearningRate { get; init; } = 1e-4;

    /// <summary>Cosine floor. Paper: 1.1e-6. Default: 1e-5.</summary>
    public override double MinLearningRate { get; init; } = 1e-5;

    /// <summary>Paper: 0.1. Default 0.1.</summary>
    public override double Dropout { get; init; } = 0.1;

    /// <summary>Length bucketing: examples are sorted by length within windows of this many batches, so a
    /// micro-batch holds similar lengths (little padding), and the batch order is shuffled. 1: plain shuffling. Default 8.</summary>
    public int BucketBatches { get; init; } = 8;

    public override void Validate()
    {
        base.Validate();
        if (BucketBatches < 1) throw new ArgumentException($"training option {nameof(BucketBatches)} = {BucketBatches}: must be >= 1");
    }
}

/// <summary>Direct preference optimisation (M_t -> M_{t+1} on the iteration's pairs).</summary>
public sealed record DpoOptions : TrainerOptions
{
    /// <summary>Peak learning rate. Paper (70B): 1e-6. Default for small models: 5e-6.</summary>
    public override double LearningRate { get; init; } = 5e-6;

    /// <summary>Cosine floor. Paper: 1e-7. Default: 5e-7.</summary>
    public override double MinLearningRate { get; init; } = 5e-7;

    /// <summary>The paper used 0.1. Default 0.0: with dropout the policy's log-probs are noisy against a
    /// reference computed without it, which biases the rewards at step 0 (trl disables it for the same reason).</summary>
    public override double Dropout { get; init; } = 0.0;

    /// <summary>DPO temperature beta (Rafailov et al. 2023). Paper: 0.1. Default 0.1.</summary>
    public double Beta { get; init; } = 0.1;

    /// <summary>Precomputed reference log-probs (default: only the policy in memory) or a live frozen reference.</summary>
    public ReferenceMode Reference { get; init; } = ReferenceMode.Precomputed;

    /// <summary>Weight alpha of a negative log-likelihood term on the chosen answer, per token, added to each
    /// pair's DPO loss (Pang et al. 2024, "Iterative Reasoning Preference Optimization"): it keeps the chosen
    /// answer's likelihood from falling while the margin grows. 0 (default) = plain DPO, eq. 7.</summary>
    public double NllWeight { get; init; }

    /// <summary>Replay: SFT examples (the job's <see cref="DpoJob.Replay"/>, in the pipeline the run's IFT + EFT
    /// seed data) trained on beside each pair, this many per pair, with a per-token NLL loss. It keeps what
    /// SFT taught and the pairs do not exercise (judging, for a self-rewarding model) from being forgotten.
    /// 0 (default) = none, as in the paper.</summary>
    public int ReplayPerPair { get; init; }

    /// <summary>Weight of each replayed example's per-token NLL in its pair's loss. Default 1.</summary>
    public double ReplayWeight { get; init; } = 1.0;

    public override void Validate()
    {
        base.Validate();
        if (Beta <= 0) throw new ArgumentException($"training option {nameof(Beta)} = {Beta}: must be > 0");
        if (NllWeight < 0) throw new ArgumentException($"training option {nameof(NllWeight)} = {NllWeight}: must be >= 0");
        if (ReplayPerPair < 0) throw new ArgumentException($"training option {nameof(ReplayPerPair)} = {ReplayPerPair}: must be >= 0");
        if (ReplayWeight < 0) throw new ArgumentException($"training option {nameof(ReplayWeight)} = {ReplayWeight}: must be >= 0");
    }
}
