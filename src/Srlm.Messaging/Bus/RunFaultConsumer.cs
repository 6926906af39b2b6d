namespace Srlm.Messaging.Bus;

/// <summary>Consumes the Fault&lt;T&gt; MassTransit publishes when a message is parked in an <c>_error</c> queue:
/// stores an error record with the reason, marks the run failed and publishes RunFailed, so nothing fails
/// silently. Hosted by every service (competing on one queue), so it works whichever process is alive.</summary>
public sealed partial class RunFaultConsumer(IArtifactStore store, SrlmOptions options, ILogger<RunFaultConsumer> log) :
    IConsumer<Fault<RunStarted>>, IConsumer<Fault<IterationStarted>>, IConsumer<Fault<GeneratePrompts>>,
    IConsumer<Fault<GenerateResponses>>, IConsumer<Fault<JudgeCandidate>>, IConsumer<Fault<CandidateJudged>>,
    IConsumer<Fault<PairsReady>>, IConsumer<Fault<CheckpointReady>>, IConsumer<Fault<EvaluateCheckpoint>>,
    IConsumer<Fault<CheckpointEvaluated>>, IConsumer<Fault<RunCompleted>>, IConsumer<Fault<CancelRun>>
{
    public Task Consume(ConsumeContext<Fault<RunStarted>> context) => Record(context);
    public Task Consume(ConsumeContext<Fault<IterationStarted>> context) => Record(context);
    public Task Consume(ConsumeContext<Fault<GeneratePrompts>> context) => Record(context);
    public Task Consume(ConsumeContext<Fault<GenerateResponses>> context) => Record(context);
    public Task Consume(ConsumeContext<Fault<JudgeCandidate>> context) => Record(context);
    public Task Consume(ConsumeContext<Fault<CandidateJudged>> context) => Record(context);
    public Task Consume(ConsumeContext<Fault<PairsReady>> context) => Record(context);
    public Task Consume(ConsumeContext<Fault<CheckpointReady>> context) => Record(context);
    public Task Consume(ConsumeContext<Fault<EvaluateCheckpoint>> context) => Record(context);
    public Task Consume(ConsumeContext<Fault<CheckpointEvaluated>> context) => Record(context);
    public Task Consume(ConsumeContext<Fault<RunCompleted>> context) => Record(context);
    public Task Consume(ConsumeContext<Fault<CancelRun>> context) => Record(context);

    /// <summary>The reason line of a fault: "ExceptionType: message" of the first exception.</summary>
    public static string Reason(Fault fault)
    {
        var e = fault.Exceptions?.FirstOrDefault();
        return e is null ? "unknown error" : $"{e.ExceptionType}: {e.Message}";
    }

    private async Task Record<T>(ConsumeContext<Fault<T>> context) where T : class
    {
        var fault = context.Message;
        var run = MessageRun.Of(fault.Message);
        var reason = Reason(fault);
        var queue = JournalEntries.EndpointName(context.SourceAddress);
        var errorQueue = queue is null ? null : queue + "_error";
        var messageId = fault.FaultedMessageId?.ToString();
        var error = new ErrorRecord
        {
            Id = $"{messageId ?? context.MessageId?.ToString()}/{errorQueue}",
            MessageId = messageId,
            MessageType = MessageRun.TypeName(typeof(T)),
            Queue = errorQueue,
            Reason = reason,
            ExceptionType = fault.Exceptions?.FirstOrDefault()?.ExceptionType,
            BodyJson = System.Text.Json.JsonSerializer.Serialize(fault.Message, JournalEntries.BodyOptions),
            RunId = run.RunId,
            Iteration = run.Iteration,
            Time = fault.Timestamp == default ? DateTimeOffset.UtcNow : new DateTimeOffset(DateTime.SpecifyKind(fault.Timestamp, DateTimeKind.Utc)),
            Host = fault.Host?.MachineName is { } m ? $"{m}/{fault.Host.ProcessName}/{fault.Host.ProcessId}" : JournalEntries.HostName(options),
        };
        await store.PutErrorAsync(error, context.CancellationToken);
        LogParked(log, error.MessageType, messageId, run.RunId, run.Iteration, errorQueue, reason);

        if (run.RunId is null || fault.Message is RunFailed) return;
        var stored = await store.GetRunAsync(run.RunId, context.CancellationToken);
        if (stored is null || stored.IsTerminal) return; // an unknown run has nothing to fail; a finished one stays as it ended
        var failure = $"{MessageRun.TypeName(typeof(T))} {messageId} parked in {errorQueue}: {reason}";
        if (await store.SetRunStateAsync(run.RunId, RunState.Failed, failure, context.CancellationToken) == WriteOutcome.Updated)
        {
            await context.Publish(new RunFailed
            {
                RunId = run.RunId, Iteration = run.Iteration ?? 0, CheckpointId = run.CheckpointId ?? "", Reason = failure,
            }, context.CancellationToken);
        }
    }

    [LoggerMessage(EventId = 1301, Level = LogLevel.Error, Message = "{MessageType} {MessageId} of run {RunId} iteration {Iteration} parked in {ErrorQueue}: {Reason}")]
    private static partial void LogParked(ILogger logger, string messageType, string? messageId, string? runId, int? iteration, string? errorQueue, string reason);
}

/// <summary>Fault recording follows the common policy; it must not be skipped by the run guard (faults carry no run id of their own).</summary>
public sealed class RunFaultConsumerDefinition : SrlmConsumerDefinition<RunFaultConsumer>
{
    public RunFaultConsumerDefinition() : base(concurrentMessageLimit: 4) { }
}
