// The trainer's job loop: claim, train (heartbeats, metrics), store, hand off, complete. Its other parts sit beside
// it by name: TrainingWorker.HandOff.cs, TrainingWorker.ControlArm.cs, TrainingWorker.Inputs.cs, TrainingWorker.Log.cs.
using Microsoft.Extensions.Hosting;
using Srlm.Storage.Checkpoints;

namespace Srlm.Trainer;

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
}
