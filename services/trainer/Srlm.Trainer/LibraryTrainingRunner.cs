using Srlm.Training;

namespace Srlm.Trainer;

/// <summary>Trains a job with Srlm.Training (SFT: loss on completion tokens; DPO: against the frozen
/// starting weights, reference log-probs precomputed once and kept in the state folder) on a dedicated
/// thread, then writes the new checkpoint folder (weights, tokenizer, prompt template). The training
/// library resumes from the state folder when it holds state of the same job (same data, options and parent).</summary>
public sealed class LibraryTrainingRunner : ITrainingJobRunner
{
    public async Task<TrainingJobResult> RunAsync(TrainingJobInput input, IProgress<TrainingRow> progress, CancellationToken ct)
    {
        var started = DateTime.UtcNow;
        var reporter = new Progress(progress);
        TrainingResult result;
        if (input.Kind == JobKind.Sft)
        {
            var examples = (input.Sft ?? throw new InvalidOperationException($"job {input.JobId}: no SFT examples"))
                .Select((e, i) => new SftExample(e.Prompt, e.Completion, $"{input.JobId}#{i}", e.Context)).ToList();
            result = await SftTrainer.RunAsync(new SftJob
            {
                JobId = input.JobId, ParentCheckpoint = input.InputCheckpointDir, Examples = examples, Options = SftOptionsOf(input.Spec, input.Seed),
                StateDirectory = input.StateDir, OutputDirectory = input.OutputDir, DatasetId = input.DatasetId,
            }, reporter, ct);
        }
        else
        {
            var pairs = (input.Dpo ?? throw new InvalidOperationException($"job {input.JobId}: no DPO pairs"))
                .Select(p => new PreferencePair(p.Id, p.Prompt, p.Chosen, p.Rejected)).ToList();
            result = await DpoTrainer.RunAsync(new DpoJob
            {
                JobId = input.JobId, ParentCheckpoint = input.InputCheckpointDir, Pairs = pairs, Options = DpoOptionsOf(input.Spec, input.Seed),
                Replay = (input.Replay ?? []).Select((e, i) => new SftExample(e.Prompt, e.Completion, $"{input.JobId}#replay{i}", e.Context)).ToList(),
                StateDirectory = input.StateDir, OutputDirectory = input.OutputDir, DatasetId = input.DatasetId,
            }, reporter, ct);
        }
        return new TrainingJobResult(result.OutputDirectory, result.Steps, result.TrainExamples, (DateTime.UtcNow - started).TotalSeconds, result.Resumed);
    }

    public static SftOptions SftOptionsOf(RunSpec spec, long seed) => Map(new SftOptions(), spec.Training.Sft, spec, seed);

    public static DpoOptions DpoOptionsOf(RunSpec spec, long seed) => Map(new DpoOptions(), spec.Training.Dpo, spec, seed) with
    {
        Beta = spec.Training.Dpo.Beta, NllWeight = spec.Training.Dpo.NllWeight,
        ReplayPerPair = spec.Training.Dpo.ReplayPerPair, ReplayWeight = spec.Training.Dpo.ReplayWeight,
    };

    private static T Map<T>(T o, TrainerSpec t, RunSpec spec, long seed) where T : Srlm.Training.TrainerOptions => o with
    {
        LearningRate = t.LearningRate, MinLearningRate = t.MinLearningRate, WarmupSteps = t.WarmupSteps, Epochs = t.Epochs,
        MaxSteps = t.MaxSteps ?? 0, BatchSize = t.BatchSize, MicroBatchSize = t.MicroBatchSize, WeightDecay = t.WeightDecay,
        MaxGradNorm = t.MaxGradNorm, Dropout = t.Dropout, SaveStateEverySteps = t.SaveStateEverySteps, Seed = seed,
        MaxSequenceLength = spec.Training.ContextLength ?? 0,
    };

    private sealed class Progress(IProgress<TrainingRow> inner) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => inner.Report(new TrainingRow(value.Step, value.TotalSteps, value.Metrics));
    }
}
