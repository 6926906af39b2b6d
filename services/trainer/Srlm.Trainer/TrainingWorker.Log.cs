namespace Srlm.Trainer;

/// <summary>The trainer's log lines (event ids 6010-6022).</summary>
public sealed partial class TrainingWorker
{
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
