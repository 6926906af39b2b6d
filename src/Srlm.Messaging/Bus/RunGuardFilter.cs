namespace Srlm.Messaging.Bus;

/// <summary>Checks a contract message's shape: the serializer does not enforce `required`, so a message whose
/// non-nullable ids are missing would otherwise reach a consumer as nulls.</summary>
public static class MessageValidation
{
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<Type, System.Reflection.PropertyInfo[]> Required = new();

    public static void ThrowIfMalformed(object message, Guid? messageId = null)
    {
        var type = message.GetType();
        var props = Required.GetOrAdd(type, t =>
        {
            var nullability = new System.Reflection.NullabilityInfoContext();
            return t.GetProperties().Where(p => !p.PropertyType.IsValueType && nullability.Create(p).ReadState == System.Reflection.NullabilityState.NotNull).ToArray();
        });
        var missing = props.Where(p => p.GetValue(message) is null || p.GetValue(message) is string { Length: 0 }).Select(p => p.Name).ToList();
        if (missing.Count > 0)
            throw new MalformedMessageException($"{type.Name} {messageId} is malformed: missing {string.Join(", ", missing)}");
    }
}

/// <summary>Runs before every consumer of a run's message: a message for a run the store does not know is
/// parked at once (<see cref="UnknownRunException"/>, no retry); a message of a cancelled run is acknowledged
/// without work (services stop taking its work). Faults and other non-run messages pass through.</summary>
public sealed partial class RunGuardFilter<T>(IArtifactStore store, ILogger<RunGuardFilter<T>> log) : IFilter<ConsumeContext<T>> where T : class
{
    public async Task Send(ConsumeContext<T> context, IPipe<ConsumeContext<T>> next)
    {
        if (context.Message is Srlm.Contracts.IRunMessage or Srlm.Contracts.CancelRun)
        {
            MessageValidation.ThrowIfMalformed(context.Message, context.MessageId);
            var runId = MessageRun.Of(context.Message).RunId;
            if (string.IsNullOrWhiteSpace(runId))
                throw new MalformedMessageException($"{typeof(T).Name} {context.MessageId} has no RunId");
            var run = await store.GetRunAsync(runId, context.CancellationToken) ?? throw new UnknownRunException(runId);
            if (run.State == RunState.Cancelled && context.Message is not Srlm.Contracts.CancelRun)
            {
                LogSkippedCancelled(log, typeof(T).Name, context.MessageId, runId);
                return;
            }
        }
        await next.Send(context);
    }

    public void Probe(ProbeContext context) => context.CreateFilterScope("srlm-run-guard");

    [LoggerMessage(EventId = 1201, Level = LogLevel.Information, Message = "skipped {MessageType} {MessageId}: run {RunId} is cancelled")]
    private static partial void LogSkippedCancelled(ILogger logger, string messageType, Guid? messageId, string runId);
}
