namespace Srlm.Storage;

/// <summary>Parked messages (moved to an error queue) and their requeueing.</summary>
public interface IErrorStore
{
    /// <summary>Record a parked message; same id again: Unchanged.</summary>
    Task<WriteOutcome> PutErrorAsync(ErrorRecord error, CancellationToken ct = default);
    /// <summary>Errors (optionally of one run), oldest first; requeued ones included only when asked.</summary>
    Task<IReadOnlyList<ErrorRecord>> ListErrorsAsync(string? runId = null, bool includeRequeued = false, CancellationToken ct = default);
    /// <summary>Mark an error requeued (the CLI re-published it). False when unknown or already requeued.</summary>
    Task<bool> MarkErrorRequeuedAsync(string errorId, CancellationToken ct = default);
}
