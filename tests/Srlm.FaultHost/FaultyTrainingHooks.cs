namespace Srlm.FaultHost;

/// <summary>The trainer's hooks as the fault tests want them: a hang after a step of the main arm, holds (heartbeating)
/// before the hand-off and before a control arm's DPO until a file exists.</summary>
public sealed partial class FaultyTrainingHooks(FaultOptions faults, ILogger<FaultyTrainingHooks> log) : ITrainingJobHooks
{
    public void MainArmReported(JobRecord job, TrainingRow row)
    {
        if (row.Step != faults.HangAfterStep || !row.Metrics.ContainsKey("learning_rate")) return; // a train row, not a validation row
        LogHanging(log, job.RunId, job.Id, row.Step);
        Thread.Sleep(Timeout.Infinite);
    }

    public Task<bool> BeforeHandOffAsync(JobRecord job, Func<CancellationToken, Task<bool>> heartbeat, CancellationToken ct) =>
        HoldUntilFileAsync(job, faults.HoldHandOffUntilFile, "its hand-off", heartbeat, ct);

    public Task<bool> BeforeControlDpoAsync(JobRecord job, Func<CancellationToken, Task<bool>> heartbeat, CancellationToken ct) =>
        HoldUntilFileAsync(job, faults.HoldControlUntilFile, "its control arm's DPO", heartbeat, ct);

    /// <summary>Waits, heartbeating, until <paramref name="file"/> exists (nothing when it is null). False when another
    /// worker took the job over meanwhile.</summary>
    private async Task<bool> HoldUntilFileAsync(JobRecord job, string? file, string what, Func<CancellationToken, Task<bool>> heartbeat, CancellationToken ct)
    {
        if (file is null || File.Exists(file)) return true;
        LogHolding(log, job.RunId, job.Id, what, file);
        while (!File.Exists(file))
        {
            await Task.Delay(TimeSpan.FromMilliseconds(250), ct);
            if (!await heartbeat(ct)) return false;
        }
        LogReleased(log, job.RunId, job.Id, what);
        return true;
    }

    [LoggerMessage(EventId = 6015, Level = LogLevel.Warning, Message = "run {RunId}: job {JobId} hangs after step {Step} (SRLM_TEST_HANG_AFTER_STEP)")]
    private static partial void LogHanging(ILogger logger, string runId, string jobId, int step);

    [LoggerMessage(EventId = 6016, Level = LogLevel.Warning, Message = "run {RunId}: job {JobId} holds before {What} until {File} exists (fault host)")]
    private static partial void LogHolding(ILogger logger, string runId, string jobId, string what, string file);

    [LoggerMessage(EventId = 6017, Level = LogLevel.Warning, Message = "run {RunId}: job {JobId} released for {What} (fault host)")]
    private static partial void LogReleased(ILogger logger, string runId, string jobId, string what);
}
