using Polly.Retry;

namespace Srlm.Storage;

/// <summary>
/// Polly pipeline for ONE store or file call: a few quick retries with exponential backoff on
/// transient errors only (SQLite busy/locked, Mongo connection/timeout, IOException while copying).
/// Logic errors (conflicts, missing keys, bad data, schema mismatch) are never retried. Message-level
/// retries are the bus's job; do not wrap a consumer in this.
/// </summary>
public static class StoreResilience
{
    public static ResiliencePipeline Create(int maxRetries = 5, TimeSpan? firstDelay = null, Action<Exception, int>? onRetry = null) =>
        new ResiliencePipelineBuilder()
            .AddRetry(new RetryStrategyOptions
            {
                ShouldHandle = new PredicateBuilder().Handle<Exception>(IsTransient),
                MaxRetryAttempts = maxRetries,
                Delay = firstDelay ?? TimeSpan.FromMilliseconds(50),
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                MaxDelay = TimeSpan.FromSeconds(2),
                OnRetry = args =>
                {
                    if (args.Outcome.Exception is { } e) onRetry?.Invoke(e, args.AttemptNumber);
                    return default;
                },
            })
            .Build();

    /// <summary>The shared default pipeline.</summary>
    public static ResiliencePipeline Default { get; } = Create();

    /// <summary>True for errors a retry of the same call can fix.</summary>
    public static bool IsTransient(Exception e) => e switch
    {
        // SQLITE_BUSY = 5, SQLITE_LOCKED = 6 (extended codes keep the primary code in the low byte).
        SqliteException s => (s.SqliteErrorCode & 0xFF) is 5 or 6,
        MongoConnectionException or MongoExecutionTimeoutException => true,
        MongoWriteConcernException or MongoNotPrimaryException or MongoNodeIsRecoveringException => true,
        TimeoutException => true,
        FileNotFoundException or DirectoryNotFoundException or PathTooLongException or EndOfStreamException => false,
        IOException => true,
        _ => false,
    };
}
