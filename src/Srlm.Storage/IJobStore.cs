namespace Srlm.Storage;

/// <summary>Long work (training) as claimable jobs with heartbeats, so a dead owner's job is taken over.</summary>
public interface IJobStore
{
    /// <summary>Queue a job (state Queued). Same id again: Unchanged (whatever its state now).</summary>
    Task<WriteOutcome> EnqueueJobAsync(JobRecord job, CancellationToken ct = default);
    Task<JobRecord?> GetJobAsync(string jobId, CancellationToken ct = default);
    Task<IReadOnlyList<JobRecord>> ListJobsAsync(string? runId = null, JobState? state = null, CancellationToken ct = default);
    /// <summary>
    /// Atomically claim a job for <paramref name="owner"/>: a Queued job, or a Running job whose
    /// heartbeat is older than <paramref name="staleAfter"/> (its owner died), or a Running job that
    /// <paramref name="owner"/> already holds. Returns the claimed job (State Running, Attempts+1 on a
    /// new claim) or null when it cannot be claimed (completed, failed, or alive elsewhere).
    /// </summary>
    Task<JobRecord?> TryClaimJobAsync(string jobId, string owner, TimeSpan staleAfter, CancellationToken ct = default);
    /// <summary>Claim the oldest claimable job of the given kinds (any kind when null), or null.</summary>
    Task<JobRecord?> ClaimNextJobAsync(string owner, TimeSpan staleAfter, IReadOnlyCollection<JobKind>? kinds = null, CancellationToken ct = default);
    /// <summary>Heartbeat and progress. False when the owner no longer holds the job (stop working on it).</summary>
    Task<bool> HeartbeatJobAsync(string jobId, string owner, long step, string? stateDir = null, CancellationToken ct = default);
    /// <summary>Mark completed. False when the owner no longer holds the job; true also when already completed.</summary>
    Task<bool> CompleteJobAsync(string jobId, string owner, string? outputCheckpointId = null, CancellationToken ct = default);
    /// <summary>Mark failed with an error. False when the owner no longer holds the job.</summary>
    Task<bool> FailJobAsync(string jobId, string owner, string error, CancellationToken ct = default);
}
