namespace Srlm.Storage;

/// <summary>Runs: created once with their spec, moved through their states, touched on progress.</summary>
public interface IRunStore
{
    /// <summary>Create a run in state Running. Same id + same spec: Unchanged; different spec: Conflict.</summary>
    Task<WriteOutcome> CreateRunAsync(string runId, string specJson, int specSchemaVersion, CancellationToken ct = default);
    Task<RunRecord?> GetRunAsync(string runId, CancellationToken ct = default);
    /// <summary>All runs, newest first.</summary>
    Task<IReadOnlyList<RunRecord>> ListRunsAsync(CancellationToken ct = default);
    /// <summary>
    /// Move a run to a state. Terminal states (failed, completed, cancelled) are sticky: a later call
    /// returns Unchanged without effect. Returns Updated when the state changed. Throws
    /// <see cref="KeyNotFoundException"/> for an unknown run.
    /// </summary>
    Task<WriteOutcome> SetRunStateAsync(string runId, RunState state, string? failureReason = null, CancellationToken ct = default);
    /// <summary>
    /// Put a FAILED run back to Running (failure reason cleared), e.g. after `srlm errors requeue` re-published
    /// the parked messages. Completed and cancelled runs stay as they are. Updated or Unchanged;
    /// KeyNotFoundException for an unknown run.
    /// </summary>
    Task<WriteOutcome> ReopenFailedRunAsync(string runId, CancellationToken ct = default);
    /// <summary>Record progress now (artifact inserts and job heartbeats do this automatically).</summary>
    Task TouchRunAsync(string runId, CancellationToken ct = default);
}
