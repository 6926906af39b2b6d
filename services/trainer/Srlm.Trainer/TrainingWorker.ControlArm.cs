using Srlm.Contracts.Judging;

namespace Srlm.Trainer;

public sealed partial class TrainingWorker
{
    /// <summary>The control arm of iteration t (spec.control): C_t (C1 = M1) samples N candidates for each
    /// prompt the main arm paired, exactly as the generator samples (same settings, seeds of their own); two
    /// distinct candidates per prompt become a pair whose order a seeded coin decides; DPO with the main arm's
    /// options makes C_{t+1}, which is stored (origin "control"). Runs beside the main arm's DPO and on into the next
    /// iteration (its heartbeats record the main arm's step). Returns its CheckpointReady (published after the main
    /// arm's hand-off and before RunCompleted, for evaluation), or null when another worker took the job over. A stored
    /// C_{t+1} is never trained again.</summary>
    private async Task<CheckpointReady?> TrainControlAsync(JobRecord job, RunSpec spec, JobProgress jobProgress, CancellationToken ct)
    {
        int t = job.Iteration;
        var outputId = Ids.ControlCheckpoint(job.RunId, t);
        var inputId = t == 1 ? job.InputCheckpointId! : Ids.ControlCheckpoint(job.RunId, t - 1);
        if (await store.GetAsync<CheckpointRecord>(outputId, ct) is null)
        {
            // C_t comes from the previous job, whose control arm may still be training on another trainer replica. The
            // heartbeat stops the wait when the run ends meanwhile.
            while (await store.GetAsync<CheckpointRecord>(inputId, ct) is null)
            {
                await Task.Delay(options.PollInterval, ct);
                if (!await RenewAsync(job, jobProgress.Step, null, ct)) return null;
            }
            var mainPairs = await DatasetPairsAsync(job, ct);
            var prompts = (await store.GetManyAsync<PromptRecord>(mainPairs.Select(p => p.PromptId).Distinct(StringComparer.Ordinal), ct))
                .OrderBy(p => p.Id, StringComparer.Ordinal).ToList();
            var model = await models.GetAsync(inputId, spec.Models.Dtype, ct);
            int n = spec.Responses.N;
            var requests = prompts.SelectMany(p => Enumerable.Range(0, n).Select(i => CandidateRequests.Of(spec, job.RunId, p.Id, p.Text, i, "control-candidate"))).ToList();
            var texts = await model.GenerateAsync(requests, ct);
            var pairs = new List<TextPair>();
            for (int p = 0; p < prompts.Count; p++)
            {
                var distinct = texts.Skip(p * n).Take(n).Select(r => r.Text.Trim()).Where(x => x.Length > 0).Distinct(StringComparer.Ordinal).ToList();
                if (distinct.Count < 2) continue;
                var rng = new Srlm.Training.DeterministicRandom((ulong)Ids.Seed(spec.Seed, "control-pair", Ids.SeedKey(job.RunId, prompts[p].Id)));
                int a = rng.Next(distinct.Count), b = (a + 1 + rng.Next(distinct.Count - 1)) % distinct.Count;
                pairs.Add(new TextPair($"{prompts[p].Id}/control-pair", prompts[p].Text, distinct[a], distinct[b]));
            }
            LogControl(log, job.RunId, t, inputId, pairs.Count, mainPairs.Count);

            var stateDir = Path.Combine(options.JobsDirectory, Safe(job.Id) + "-control");
            Directory.CreateDirectory(stateDir);
            var inputDir = await checkpoints.MaterializeAsync(inputId, null, ct);
            string outputDir = inputDir;
            TrainingJobResult? result = null;
            if (pairs.Count > 0)
            {
                // Dropout draws from libtorch's one global generator, seeded per step by each training loop: two arms
                // with dropout must not train at the same time, or neither would be reproducible.
                if (spec.Training.Dpo.Dropout > 0) await jobProgress.MainTrained.Task.WaitAsync(ct);
                if (!await hooks.BeforeControlDpoAsync(job, c => RenewAsync(job, jobProgress.Step, null, c), ct)) return null;
                result = await TrainAsync(job, new TrainingJobInput
                {
                    JobId = job.Id + "/control", Kind = JobKind.Dpo, Spec = spec, InputCheckpointDir = inputDir, StateDir = stateDir,
                    OutputDir = Path.Combine(stateDir, "output"), Seed = Ids.Seed(spec.Seed, "train", Ids.SeedKey(job.RunId, job.Id + "/control")),
                    DatasetId = job.DatasetId + "/control", Dpo = pairs, Replay = await ReplayAsync(spec, ct),
                }, "control", stateDir, jobProgress, main: false, ct);
                if (result is null) return null;
                outputDir = result.OutputDirectory;
            }
            var put = await checkpoints.PutAsync(outputId, outputDir, ct);
            await store.PutAsync(new CheckpointRecord
            {
                Id = outputId, RunId = job.RunId, Iteration = t + 1, ParentCheckpointId = inputId, DatasetId = job.DatasetId + "/control",
                JobId = job.Id, Location = put.Manifest.Location, Files = put.Manifest.Files, Origin = CheckpointRecord.ControlOrigin,
            }, ct);
            await store.PutMetricsAsync([
                new MetricRecord(job.RunId, t, result?.Steps ?? 0, "control/steps", result?.Steps ?? 0),
                new MetricRecord(job.RunId, t, result?.Steps ?? 0, "control/pairs", pairs.Count),
            ], ct);
        }
        return new CheckpointReady { RunId = job.RunId, Iteration = t, CheckpointId = outputId, ParentCheckpointId = inputId, JobId = job.Id };
    }
}
