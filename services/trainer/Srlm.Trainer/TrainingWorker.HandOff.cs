using Polly;
using Polly.Retry;

namespace Srlm.Trainer;

public sealed partial class TrainingWorker
{
    /// <summary>Publishes the hand-off messages in order, each once: a publish that fails or takes longer than half
    /// of <see cref="TrainingWorkerOptions.StaleAfter"/> (the broker down, restarting or unreachable) is tried again
    /// after a pause (1 s, doubling up to <see cref="TrainingWorkerOptions.HandOffRetryMaxDelay"/>, Polly's retry)
    /// with a job heartbeat in between, for as long as it takes: the checkpoints are stored, so the run waits for the
    /// broker rather than fail. False when another worker took the job over meanwhile (it publishes the hand-off).</summary>
    private async Task<bool> PublishHandOffAsync(JobRecord job, long step, IReadOnlyList<Func<CancellationToken, Task>> messages, CancellationToken ct)
    {
        int next = 0, failures = 0;
        bool publishing = false;
        var retry = new ResiliencePipelineBuilder<bool>()
            .AddRetry(new RetryStrategyOptions<bool>
            {
                // Only a failed publish is tried again; a failed heartbeat, or the worker stopping, ends the hand-off.
                ShouldHandle = args => ValueTask.FromResult(publishing && args.Outcome.Exception is not null && !ct.IsCancellationRequested),
                MaxRetryAttempts = int.MaxValue,
                Delay = TimeSpan.FromSeconds(1),
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = false,
                MaxDelay = options.HandOffRetryMaxDelay,
                OnRetry = args =>
                {
                    failures++;
                    var e = args.Outcome.Exception!;
                    LogHandOffRetry(log, job.RunId, job.Id, failures, args.RetryDelay.TotalSeconds, e.GetType().Name, e.Message);
                    return default;
                },
            })
            .Build();
        var handedOff = await retry.ExecuteAsync(async token =>
        {
            publishing = false;
            if (failures > 0 && !await RenewAsync(job, step, null, token)) return false;
            for (; next < messages.Count; next++)
            {
                // Each try is cut short well before the job would go stale: MassTransit holds a publish while it
                // reconnects, and the heartbeat between tries keeps the job this worker's meanwhile.
                using var attempt = CancellationTokenSource.CreateLinkedTokenSource(token);
                attempt.CancelAfter(options.StaleAfter / 2);
                publishing = true;
                await messages[next](attempt.Token);
                publishing = false;
            }
            return true;
        }, ct);
        if (handedOff && failures > 0) LogHandedOff(log, job.RunId, job.Id, failures);
        return handedOff;
    }
}
