using Srlm.Contracts.Judging;
using System.Collections.Concurrent;
using MassTransit;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Srlm.Contracts;
using Srlm.Contracts.Spec;
using Srlm.ServiceKit;
using Srlm.Storage;
using Srlm.Storage.Checkpoints;

namespace Srlm.Trainer;

/// <summary>Where and as whom this process runs training jobs.</summary>
public sealed record TrainingWorkerOptions
{
    /// <summary>Folder of the jobs' training state (resumable) and outputs. SRLM_JOBS_DIR.</summary>
    public string JobsDirectory { get; init; } = Path.Combine(Path.GetTempPath(), "srlm-jobs");

    /// <summary>This worker's name in job records; a stable name (e.g. for `srlm run DIR`) reclaims its own
    /// running jobs immediately after a restart instead of waiting for them to go stale.</summary>
    public string Owner { get; init; } = $"{Environment.MachineName}/{Environment.ProcessId}";

    /// <summary>A running job whose heartbeat is older than this belongs to a dead worker and is taken over.</summary>
    public TimeSpan StaleAfter { get; init; } = TimeSpan.FromMinutes(2);

    public TimeSpan HeartbeatInterval { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>How often to look for jobs queued by other processes.</summary>
    public TimeSpan PollInterval { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>The longest pause between two tries of a hand-off publish that failed (the broker down or restarting);
    /// the pause starts at a second and doubles up to this.</summary>
    public TimeSpan HandOffRetryMaxDelay { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>The service host's options from its environment: SRLM_JOBS_DIR (state folder; every trainer
    /// replica of a deployment must see the same one to resume another's job), SRLM_JOB_STALE_S (seconds without a
    /// heartbeat after which another worker takes a running job over).</summary>
    public static TrainingWorkerOptions FromEnvironment(Func<string, string?> get)
    {
        ArgumentNullException.ThrowIfNull(get);
        var o = new TrainingWorkerOptions();
        if (get("SRLM_JOBS_DIR") is { Length: > 0 } dir) o = o with { JobsDirectory = Path.GetFullPath(dir) };
        if (get("SRLM_JOB_STALE_S") is { Length: > 0 } stale)
        {
            if (!double.TryParse(stale, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var s) || s < 1 || s > 86400)
                throw new Srlm.Messaging.Configuration.SrlmConfigurationException($"SRLM_JOB_STALE_S must be a number of seconds in [1, 86400], got '{stale}'");
            if (TimeSpan.FromSeconds(s) < o.HeartbeatInterval * 2)
                throw new Srlm.Messaging.Configuration.SrlmConfigurationException($"SRLM_JOB_STALE_S ({s}) must be at least twice the job heartbeat interval ({o.HeartbeatInterval.TotalSeconds} s)");
            o = o with { StaleAfter = TimeSpan.FromSeconds(s) };
        }
        return o;
    }
}

/// <summary>Progress of the job this process is training now (for `srlm run`'s progress bars).</summary>
public sealed class TrainingStatus
{
    private readonly ConcurrentDictionary<string, (int Step, int Total)> _jobs = new(StringComparer.Ordinal);

    public void Report(string jobId, int step, int total) => _jobs[jobId] = (step, total);

    public IReadOnlyDictionary<string, (int Step, int Total)> Jobs => _jobs;
}

/// <summary>Runs durable training jobs: claims the oldest claimable job (a queued one, one of its own after a
/// restart, or a stale one of a dead worker), trains it through <see cref="ITrainingJobRunner"/> with
/// resumable state under <see cref="TrainingWorkerOptions.JobsDirectory"/>, heartbeats and stores metrics while it
/// trains, then stores the checkpoint (files, metadata, lineage), publishes CheckpointReady and
/// IterationStarted(t+1) or RunCompleted (retried while the broker is away), and only then completes the job. A DPO
/// job of a run with a control arm trains C_{t+1} beside M_{t+1}; the next iteration does not wait for it, the job's
/// completion and RunCompleted do. If it
/// dies at any point, the next claim continues from the stored facts: a stored output checkpoint is never trained
/// again, and a job whose hand-off was not out yet publishes it again.</summary>
public sealed partial class TrainingWorker(IArtifactStore store, ICheckpointStore checkpoints, RunSpecCache specs, ITrainingJobRunner runner,
    IModelProvider models, IBus bus, TrainingJobSignal signal, TrainingStatus status, TrainingWorkerOptions options, ITrainingJobHooks hooks,
    ILogger<TrainingWorker> log) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        await Task.Yield();
        while (!stoppingToken.IsCancellationRequested)
        {
            JobRecord? job = null;
            try
            {
                job = await store.ClaimNextJobAsync(options.Owner, options.StaleAfter, null, stoppingToken);
                if (job is null) { await signal.WaitAsync(options.PollInterval, stoppingToken); continue; }
                await RunJobAsync(job, stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested) { return; }
            catch (Exception e)
            {
                if (job is null) { LogPollFailed(log, e.Message); await Task.Delay(options.PollInterval, stoppingToken); continue; }
                LogJobFailed(log, job.RunId, job.Id, e.Message, e);
                var reason = $"training job {job.Id} failed: {e.GetType().Name}: {e.Message}";
                await store.FailJobAsync(job.Id, options.Owner, reason, CancellationToken.None);
                await store.SetRunStateAsync(job.RunId, RunState.Failed, reason, CancellationToken.None);
                // The failure is stored; the message only tells listeners, and waits no longer for a broker that is away.
                try
                {
                    using var publish = new CancellationTokenSource(options.StaleAfter / 2);
                    await bus.Publish(new RunFailed { RunId = job.RunId, Iteration = job.Iteration, CheckpointId = job.InputCheckpointId ?? "", Reason = reason }, publish.Token);
                }
                catch (Exception pe) { LogRunFailedNotPublished(log, job.RunId, pe.GetType().Name, pe.Message); }
            }
        }
    }

    private async Task RunJobAsync(JobRecord job, CancellationToken stoppingToken)
    {
        var run = await store.GetRunAsync(job.RunId, stoppingToken);
        if (run is { State: RunState.Completed } && job.OutputCheckpointId is { } done && await store.GetAsync<CheckpointRecord>(done, stoppingToken) is not null)
        {
            // The last job's hand-off was out and the run completed; the process died before the job was marked.
            await store.CompleteJobAsync(job.Id, options.Owner, done, stoppingToken);
            return;
        }
        if (run is null || run.IsTerminal)
        {
            await store.FailJobAsync(job.Id, options.Owner, $"run {job.RunId} is {(run is null ? "unknown" : run.State.ToString().ToLowerInvariant())}", stoppingToken);
            return;
        }
        var spec = await specs.GetAsync(job.RunId, stoppingToken);
        var outputId = job.OutputCheckpointId ?? throw new InvalidOperationException($"job {job.Id} names no output checkpoint");
        var inputId = job.InputCheckpointId ?? throw new InvalidOperationException($"job {job.Id} names no input checkpoint");
        LogClaimed(log, job.RunId, job.Id, job.Attempts, job.Step);
        var progress = new JobProgress(job.Step);

        // The control arm of a DPO job (C_t -> C_{t+1}) needs nothing from M_{t+1}: it trains beside the main arm and
        // on through the next iteration's candidates and judgements, and only the run's end waits for it.
        using var controlCts = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        Task<CheckpointReady?>? control = job.Kind == JobKind.Dpo && spec.Control is not null
            ? Task.Run(() => TrainControlAsync(job, spec, progress, controlCts.Token), CancellationToken.None)
            : null;
        try
        {
            if (await store.GetAsync<CheckpointRecord>(outputId, stoppingToken) is null)
            {
                var stateDir = Path.Combine(options.JobsDirectory, Safe(job.Id));
                Directory.CreateDirectory(stateDir);
                var inputDir = await checkpoints.MaterializeAsync(inputId, null, stoppingToken);
                var input = await BuildInputAsync(job, spec, inputDir, stateDir, stoppingToken);
                var result = await TrainAsync(job, input, Prefix(job), stateDir, progress, main: true, stoppingToken);
                progress.MainTrained.TrySetResult();
                if (result is null) { await StopControlAsync(control, controlCts); return; }
                progress.Step = result.Steps;
                var put = await checkpoints.PutAsync(outputId, result.OutputDirectory, stoppingToken);
                await store.PutAsync(new CheckpointRecord
                {
                    Id = outputId, RunId = job.RunId, Iteration = job.Iteration + 1, ParentCheckpointId = inputId,
                    DatasetId = job.DatasetId, JobId = job.Id, Location = put.Manifest.Location, Files = put.Manifest.Files,
                    Origin = job.Kind == JobKind.Sft ? "sft" : "dpo",
                }, stoppingToken);
                await store.PutMetricsAsync([
                    new MetricRecord(job.RunId, job.Iteration, result.Steps, $"{Prefix(job)}/steps", result.Steps),
                    new MetricRecord(job.RunId, job.Iteration, result.Steps, $"{Prefix(job)}/train_examples", result.TrainExamples),
                    new MetricRecord(job.RunId, job.Iteration, result.Steps, $"{Prefix(job)}/seconds", result.Seconds),
                ], stoppingToken);
                LogTrained(log, job.RunId, job.Id, result.Steps, outputId, result.Resumed);
            }
            progress.MainTrained.TrySetResult();
            var trainedStep = progress.Step;
            if (!await hooks.BeforeHandOffAsync(job, ct => RenewAsync(job, trainedStep, null, ct), stoppingToken)) { await StopControlAsync(control, controlCts); return; }

            // Hand-off: the job stays running (and the run, after its last iteration) until every message of it is
            // published, each retried while the broker is away. A crash before the end leaves the job to the next claim,
            // which finds the checkpoints stored and publishes the hand-off again (the consumers are idempotent).
            int next = job.Iteration + 1;
            bool last = next > spec.Iterations;
            var handOff = new List<Func<CancellationToken, Task>>
            {
                ct => bus.Publish(new CheckpointReady { RunId = job.RunId, Iteration = job.Iteration, CheckpointId = outputId, ParentCheckpointId = inputId, JobId = job.Id }, ct),
            };
            if (!last) handOff.Add(ct => bus.Publish(new IterationStarted { RunId = job.RunId, Iteration = next, CheckpointId = outputId }, ct));
            if (!await PublishHandOffAsync(job, progress.Step, handOff, stoppingToken)) { await StopControlAsync(control, controlCts); return; }
            handOff.Clear();
            if (control is not null)
            {
                if (await control is not { } controlReady) return;
                handOff.Add(ct => bus.Publish(controlReady, ct));
            }
            if (last) handOff.Add(ct => bus.Publish(new RunCompleted { RunId = job.RunId, Iteration = job.Iteration, CheckpointId = outputId }, ct));
            if (!await PublishHandOffAsync(job, progress.Step, handOff, stoppingToken)) return;
            if (last) await store.SetRunStateAsync(job.RunId, RunState.Completed, null, stoppingToken);
            await store.CompleteJobAsync(job.Id, options.Owner, outputId, stoppingToken);
        }
        catch when (control is { IsCompleted: false })
        {
            await StopControlAsync(control, controlCts);
            throw;
        }
        finally { progress.MainTrained.TrySetResult(); }
    }

    /// <summary>The job's heartbeat, and whether its run still wants it: false when another worker took the job over,
    /// or when the run ended meanwhile (`srlm cancel`, or failed elsewhere): then the job is failed with that reason
    /// and the caller stops (training state stays saved).</summary>
    private async Task<bool> RenewAsync(JobRecord job, long step, string? stateDir, CancellationToken ct)
    {
        if (!await store.HeartbeatJobAsync(job.Id, options.Owner, step, stateDir, ct)) { LogLost(log, job.RunId, job.Id); return false; }
        if (await store.GetRunAsync(job.RunId, ct) is not { IsTerminal: true } run) return true;
        var state = run.State.ToString().ToLowerInvariant();
        if (await store.FailJobAsync(job.Id, options.Owner, $"run {job.RunId} is {state}", ct)) LogRunEnded(log, job.RunId, job.Id, state);
        return false;
    }

    /// <summary>Stops a control arm still training (the job failed or went to another worker) and waits for it, so
    /// that nothing of this attempt writes on after it.</summary>
    private static async Task StopControlAsync(Task<CheckpointReady?>? control, CancellationTokenSource cts)
    {
        if (control is null) return;
        await cts.CancelAsync();
        try { await control; } catch (Exception) { /* the job's own outcome is what counts */ }
    }

    /// <summary>The main arm's latest step, which every heartbeat of the job records (the control arm's too), and
    /// whether its training is over.</summary>
    private sealed class JobProgress(long step)
    {
        private long _step = step;
        public long Step { get => Interlocked.Read(ref _step); set => Interlocked.Exchange(ref _step, value); }

        /// <summary>Set once the main arm no longer trains (trained, stored before, or stopped).</summary>
        public TaskCompletionSource MainTrained { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>Publishes the hand-off messages in order, each once: a publish that fails or takes longer than half
    /// of <see cref="TrainingWorkerOptions.StaleAfter"/> (the broker down, restarting or unreachable) is tried again
    /// after a pause (1 s, doubling up to <see cref="TrainingWorkerOptions.HandOffRetryMaxDelay"/>) with a job heartbeat
    /// in between, for as long as it takes: the checkpoints are stored, so the run waits for the broker rather than fail. False when another worker took the job over meanwhile (it publishes the hand-off).</summary>
    private async Task<bool> PublishHandOffAsync(JobRecord job, long step, IReadOnlyList<Func<CancellationToken, Task>> messages, CancellationToken ct)
    {
        var delay = TimeSpan.FromSeconds(1);
        int failures = 0;
        for (int i = 0; i < messages.Count;)
        {
            try
            {
                // Each try is cut short well before the job would go stale: MassTransit holds a publish while it
                // reconnects, and the heartbeat between tries keeps the job this worker's meanwhile.
                using var attempt = CancellationTokenSource.CreateLinkedTokenSource(ct);
                attempt.CancelAfter(options.StaleAfter / 2);
                await messages[i](attempt.Token);
                i++;
            }
            catch (Exception e) when (!ct.IsCancellationRequested)
            {
                failures++;
                LogHandOffRetry(log, job.RunId, job.Id, failures, delay.TotalSeconds, e.GetType().Name, e.Message);
                await Task.Delay(delay, ct);
                if (!await RenewAsync(job, step, null, ct)) return false;
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, options.HandOffRetryMaxDelay.Ticks));
            }
        }
        if (failures > 0) LogHandedOff(log, job.RunId, job.Id, failures);
        return true;
    }

    /// <summary>Trains one model through the runner with heartbeats and metrics (named PREFIX/...); null when
    /// another worker took the job over (this one stops).</summary>
    private async Task<TrainingJobResult?> TrainAsync(JobRecord job, TrainingJobInput input, string prefix, string stateDir, JobProgress jobProgress, bool main, CancellationToken stoppingToken)
    {
        using var jobCts = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        var rows = new ConcurrentQueue<TrainingRow>();
        var progress = new SyncProgress(r =>
        {
            rows.Enqueue(r);
            if (main) jobProgress.Step = r.Step;
            status.Report(input.JobId, r.Step, r.TotalSteps);
            if (main) hooks.MainArmReported(job, r);
        });
        var training = runner.RunAsync(input, progress, jobCts.Token);
        while (!training.IsCompleted)
        {
            await Task.WhenAny(training, Task.Delay(options.HeartbeatInterval, stoppingToken));
            await FlushMetricsAsync(job, rows, prefix, stoppingToken);
            if (!await RenewAsync(job, jobProgress.Step, main ? stateDir : null, stoppingToken))
            {
                await jobCts.CancelAsync();
                try { await training; } catch (OperationCanceledException) { }
                return null;
            }
        }
        var result = await training;
        await FlushMetricsAsync(job, rows, prefix, stoppingToken);
        return result;
    }

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
            var dataset = await store.GetAsync<DatasetRecord>(job.DatasetId!, ct) ?? throw new InvalidOperationException($"job {job.Id}: dataset {job.DatasetId} is not stored");
            var mainPairs = await store.GetManyAsync<PairRecord>(dataset.PairIds, ct);
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

    private async Task<TrainingJobInput> BuildInputAsync(JobRecord job, RunSpec spec, string inputDir, string stateDir, CancellationToken ct)
    {
        var common = new TrainingJobInput
        {
            JobId = job.Id, Kind = job.Kind, Spec = spec, InputCheckpointDir = inputDir, StateDir = stateDir,
            OutputDir = Path.Combine(stateDir, "output"), Seed = Ids.Seed(spec.Seed, "train", Ids.SeedKey(job.RunId, job.Id)), DatasetId = job.DatasetId,
        };
        if (job.Kind == JobKind.Sft)
            return common with { Sft = await SeedInputs.SftAsync(specs, spec, ct) };

        var dataset = await store.GetAsync<DatasetRecord>(job.DatasetId!, ct) ?? throw new InvalidOperationException($"job {job.Id}: dataset {job.DatasetId} is not stored");
        var pairs = await store.GetManyAsync<PairRecord>(dataset.PairIds, ct);
        var candidateIds = pairs.SelectMany(p => new[] { p.ChosenCandidateId, p.RejectedCandidateId });
        var candidates = (await store.GetManyAsync<CandidateRecord>(candidateIds, ct)).ToDictionary(c => c.Id, StringComparer.Ordinal);
        var prompts = (await store.GetManyAsync<PromptRecord>(pairs.Select(p => p.PromptId), ct)).ToDictionary(p => p.Id, StringComparer.Ordinal);
        var textPairs = pairs.Select(p => new TextPair(p.Id, prompts[p.PromptId].Text, candidates[p.ChosenCandidateId].Text, candidates[p.RejectedCandidateId].Text)).ToList();
        return common with { Dpo = textPairs, Replay = await ReplayAsync(spec, ct) };
    }

    /// <summary>The examples a DPO job replays: the SFT examples, when the spec asks for replay.</summary>
    private async Task<IReadOnlyList<TextExample>?> ReplayAsync(RunSpec spec, CancellationToken ct) =>
        spec.Training.Dpo.ReplayPerPair > 0 ? await SeedInputs.SftAsync(specs, spec, ct) : null;

    private async Task FlushMetricsAsync(JobRecord job, ConcurrentQueue<TrainingRow> rows, string prefix, CancellationToken ct)
    {
        var batch = new List<MetricRecord>();
        while (rows.TryDequeue(out var r))
            foreach (var (name, value) in r.Metrics)
                if (double.IsFinite(value)) batch.Add(new MetricRecord(job.RunId, job.Iteration, r.Step, $"{prefix}/{name}", value));
        if (batch.Count > 0) await store.PutMetricsAsync(batch, ct);
    }

    private static string Prefix(JobRecord job) => job.Kind == JobKind.Sft ? "sft" : "dpo";

    private static string Safe(string id) => string.Concat(id.Select(c => char.IsLetterOrDigit(c) || c is '-' or '.' ? c : '_'));

    /// <summary>Calls back on the reporting thread (no SynchronizationContext hop), in order.</summary>
    private sealed class SyncProgress(Action<TrainingRow> report) : IProgress<TrainingRow>
    {
        public void Report(TrainingRow value) => report(value);
    }

    [LoggerMessage(EventId = 6010, Level = LogLevel.Information, Message = "run {RunId}: claimed job {JobId} (attempt {Attempt}, step {Step})")]
    private static partial void LogClaimed(ILogger logger, string runId, string jobId, int attempt, long step);

    [LoggerMessage(EventId = 6011, Level = LogLevel.Information, Message = "run {RunId}: job {JobId} trained {Steps} steps -> {CheckpointId} (resumed from saved state: {Resumed})")]
    private static partial void LogTrained(ILogger logger, string runId, string jobId, int steps, string checkpointId, bool resumed);

    [LoggerMessage(EventId = 6018, Level = LogLevel.Warning, Message = "run {RunId}: job {JobId}: publishing its hand-off failed (try {Failures}), trying again in {Seconds} s: {Error}: {Reason}")]
    private static partial void LogHandOffRetry(ILogger logger, string runId, string jobId, int failures, double seconds, string error, string reason);

    [LoggerMessage(EventId = 6019, Level = LogLevel.Information, Message = "run {RunId}: job {JobId}: hand-off published after {Failures} failed tries")]
    private static partial void LogHandedOff(ILogger logger, string runId, string jobId, int failures);

    [LoggerMessage(EventId = 6012, Level = LogLevel.Warning, Message = "run {RunId}: job {JobId} was taken over by another worker; stopped")]
    private static partial void LogLost(ILogger logger, string runId, string jobId);

    [LoggerMessage(EventId = 6013, Level = LogLevel.Error, Message = "run {RunId}: job {JobId} failed: {Reason}")]
    private static partial void LogJobFailed(ILogger logger, string runId, string jobId, string reason, Exception e);

    [LoggerMessage(EventId = 6020, Level = LogLevel.Information, Message = "run {RunId} iteration {Iteration}: control arm from {CheckpointId}: {Pairs} random pairs (main arm {MainPairs})")]
    private static partial void LogControl(ILogger logger, string runId, int iteration, string checkpointId, int pairs, int mainPairs);

    [LoggerMessage(EventId = 6021, Level = LogLevel.Warning, Message = "run {RunId}: RunFailed was not published (the failure is stored): {Error}: {Reason}")]
    private static partial void LogRunFailedNotPublished(ILogger logger, string runId, string error, string reason);

    [LoggerMessage(EventId = 6022, Level = LogLevel.Warning, Message = "run {RunId} is {State}: job {JobId} stopped and failed")]
    private static partial void LogRunEnded(ILogger logger, string runId, string jobId, string state);

    [LoggerMessage(EventId = 6014, Level = LogLevel.Warning, Message = "looking for training jobs failed: {Reason}")]
    private static partial void LogPollFailed(ILogger logger, string reason);
}
