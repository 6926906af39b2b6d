using Srlm.Messaging.Bus;

namespace Srlm.Trainer;

/// <summary>RunStarted -> the SFT job (M0 -> M1), or, when the spec gives M1, its hand-off straight away
/// (CheckpointReady for evaluation and IterationStarted(1)). The consumer only records the job: training
/// outlives any broker timeout, so the hosted <see cref="TrainingWorker"/> runs it.</summary>
public sealed partial class RunStartedConsumer(IArtifactStore store, RunSpecCache specs, TrainingJobSignal signal, ILogger<RunStartedConsumer> log)
    : RunConsumer<RunStarted>(store, specs)
{
    protected override async Task HandleAsync(ConsumeContext<RunStarted> context, RunStarted m, RunSpec spec, CancellationToken ct)
    {
        var start = await RequireAsync<CheckpointRecord>(context, "starting checkpoint", m.CheckpointId, ct);
        if (spec.Models.M1 is not null)
        {
            await context.Publish(new CheckpointReady { RunId = m.RunId, Iteration = 0, CheckpointId = start.Id, ParentCheckpointId = start.ParentCheckpointId }, ct);
            await context.Publish(new IterationStarted { RunId = m.RunId, Iteration = 1, CheckpointId = start.Id }, ct);
            LogSkipSft(log, m.RunId, start.Id);
            return;
        }
        var job = new JobRecord
        {
            Id = Ids.Job(m.RunId, 0, "sft"), Kind = JobKind.Sft, RunId = m.RunId, Iteration = 0,
            InputCheckpointId = start.Id, DatasetId = Ids.SftDataset(m.RunId), OutputCheckpointId = Ids.Checkpoint(m.RunId, 0),
        };
        await Store.EnqueueJobAsync(job, ct);
        signal.Notify();
        LogQueued(log, m.RunId, job.Id);
    }

    [LoggerMessage(EventId = 6001, Level = LogLevel.Information, Message = "run {RunId}: M1 given ({CheckpointId}), SFT skipped")]
    private static partial void LogSkipSft(ILogger logger, string runId, string checkpointId);

    [LoggerMessage(EventId = 6002, Level = LogLevel.Information, Message = "run {RunId}: job {JobId} queued")]
    private static partial void LogQueued(ILogger logger, string runId, string jobId);
}

/// <summary>PairsReady -> the DPO job of iteration t (M_t -> M_{t+1}, reference = M_t). A dataset without
/// pairs cannot train anything: the message is parked and the run fails with that reason.</summary>
public sealed partial class PairsReadyConsumer(IArtifactStore store, RunSpecCache specs, TrainingJobSignal signal, ILogger<PairsReadyConsumer> log)
    : RunConsumer<PairsReady>(store, specs)
{
    protected override async Task HandleAsync(ConsumeContext<PairsReady> context, PairsReady m, RunSpec spec, CancellationToken ct)
    {
        var dataset = await RequireAsync<DatasetRecord>(context, "dataset", m.DatasetId, ct);
        if (dataset.PairIds.Count == 0)
        {
            var s = await Store.GetIterationStatusAsync(m.RunId, m.Iteration, ct);
            throw new PermanentMessageException(NoPairsReason(m.RunId, m.Iteration, s));
        }
        var job = new JobRecord
        {
            Id = Ids.Job(m.RunId, m.Iteration, "dpo"), Kind = JobKind.Dpo, RunId = m.RunId, Iteration = m.Iteration,
            InputCheckpointId = m.CheckpointId, DatasetId = m.DatasetId, OutputCheckpointId = Ids.Checkpoint(m.RunId, m.Iteration),
        };
        await Store.EnqueueJobAsync(job, ct);
        signal.Notify();
        LogQueued(log, m.RunId, m.Iteration, job.Id, dataset.PairIds.Count);
    }

    /// <summary>The one line a run fails with when an iteration keeps no pair: how many prompts were dropped for each reason.</summary>
    public static string NoPairsReason(string runId, int iteration, IterationStatus s) =>
        $"run {runId} iteration {iteration}: no preference pair kept of {s.Prompts} prompts: {s.DroppedTies} were ties, " +
        $"{s.DroppedOther} had too few valid scores, {s.DroppedTruncated} had too few candidates not cut by the token limit " +
        $"({s.Truncated} of {s.Candidates} candidates ended by length), {s.TooLong} were too long";

    [LoggerMessage(EventId = 6003, Level = LogLevel.Information, Message = "run {RunId} iteration {Iteration}: job {JobId} queued with {Pairs} pairs")]
    private static partial void LogQueued(ILogger logger, string runId, int iteration, string jobId, int pairs);
}

/// <summary>Wakes the worker when a job is queued in this process (it also polls, for jobs queued elsewhere).</summary>
public sealed class TrainingJobSignal
{
    private readonly SemaphoreSlim _signal = new(0, int.MaxValue);

    public void Notify() => _signal.Release();

    public Task<bool> WaitAsync(TimeSpan timeout, CancellationToken ct) => _signal.WaitAsync(timeout, ct);
}

public sealed class RunStartedConsumerDefinition() : SrlmConsumerDefinition<RunStartedConsumer>(concurrentMessageLimit: 1);

public sealed class PairsReadyConsumerDefinition() : SrlmConsumerDefinition<PairsReadyConsumer>(concurrentMessageLimit: 1);
