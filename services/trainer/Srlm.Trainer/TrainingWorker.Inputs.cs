namespace Srlm.Trainer;

/// <summary>The training inputs of a job: the SFT examples from the run's seed files, or the DPO pairs as text from
/// the stored dataset, with the replayed SFT examples when the spec asks for replay.</summary>
public sealed partial class TrainingWorker
{
    private async Task<TrainingJobInput> BuildInputAsync(JobRecord job, RunSpec spec, string inputDir, string stateDir, CancellationToken ct)
    {
        var common = new TrainingJobInput
        {
            JobId = job.Id, Kind = job.Kind, Spec = spec, InputCheckpointDir = inputDir, StateDir = stateDir,
            OutputDir = Path.Combine(stateDir, "output"), Seed = Ids.Seed(spec.Seed, "train", Ids.SeedKey(job.RunId, job.Id)), DatasetId = job.DatasetId,
        };
        if (job.Kind == JobKind.Sft)
            return common with { Sft = await SeedInputs.SftAsync(specs, spec, ct) };

        var pairs = await DatasetPairsAsync(job, ct);
        var candidateIds = pairs.SelectMany(p => new[] { p.ChosenCandidateId, p.RejectedCandidateId });
        var candidates = (await store.GetManyAsync<CandidateRecord>(candidateIds, ct)).ToDictionary(c => c.Id, StringComparer.Ordinal);
        var prompts = (await store.GetManyAsync<PromptRecord>(pairs.Select(p => p.PromptId), ct)).ToDictionary(p => p.Id, StringComparer.Ordinal);
        var textPairs = pairs.Select(p => new TextPair(p.Id, prompts[p.PromptId].Text, candidates[p.ChosenCandidateId].Text, candidates[p.RejectedCandidateId].Text)).ToList();
        return common with { Dpo = textPairs, Replay = await ReplayAsync(spec, ct) };
    }

    /// <summary>The examples a DPO job replays: the SFT examples, when the spec asks for replay.</summary>
    private async Task<IReadOnlyList<TextExample>?> ReplayAsync(RunSpec spec, CancellationToken ct) =>
        spec.Training.Dpo.ReplayPerPair > 0 ? await SeedInputs.SftAsync(specs, spec, ct) : null;

    /// <summary>The pairs of a DPO job's dataset (the iteration's, which the control arm samples its prompts from too).</summary>
    private async Task<IReadOnlyList<PairRecord>> DatasetPairsAsync(JobRecord job, CancellationToken ct)
    {
        var dataset = await store.GetAsync<DatasetRecord>(job.DatasetId!, ct) ?? throw new InvalidOperationException($"job {job.Id}: dataset {job.DatasetId} is not stored");
        return await store.GetManyAsync<PairRecord>(dataset.PairIds, ct);
    }
}
