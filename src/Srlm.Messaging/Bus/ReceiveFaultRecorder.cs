namespace Srlm.Messaging.Bus;

/// <summary>Records messages that fail before any consumer sees them (a body that is not JSON, a message whose
/// required fields are missing): MassTransit parks them in the <c>_error</c> queue but cannot publish a typed
/// Fault&lt;T&gt;, so this observer stores the error record (same id scheme as <see cref="RunFaultConsumer"/>, so a
/// fault seen by both is stored once) and fails the run when the raw body names a known one.</summary>
public sealed partial class ReceiveFaultRecorder(IServiceProvider services, SrlmOptions options, ILogger<ReceiveFaultRecorder> log) : IReceiveObserver
{
    public Task PreReceive(ReceiveContext context) => Task.CompletedTask;
    public Task PostReceive(ReceiveContext context) => Task.CompletedTask;
    public Task PostConsume<T>(ConsumeContext<T> context, TimeSpan duration, string consumerType) where T : class => Task.CompletedTask;
    public Task ConsumeFault<T>(ConsumeContext<T> context, TimeSpan duration, string consumerType, Exception exception) where T : class => Task.CompletedTask;

    public async Task ReceiveFault(ReceiveContext context, Exception exception)
    {
        // Consumer faults are recorded by RunFaultConsumer from their Fault<T>. Left to this observer: messages that
        // could not be read at all, and those the run guard rejected before any consumer (no Fault<T> for them).
        // A rejection seen by both is stored once: both use the id "{messageId}/{queue}_error".
        if (!IsUnreadable(exception) && !IsPermanent(exception)) return;
        try
        {
            await Record(context, exception);
        }
        catch (Exception e)
        {
            LogRecordFailed(log, e.Message);
        }
    }

    private static bool IsPermanent(Exception exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
            if (e is PermanentMessageException) return true;
        return false;
    }

    private static bool IsUnreadable(Exception exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
            if (e is JsonException || e.GetType().Name.EndsWith("SerializationException", StringComparison.Ordinal)) return true;
        return exception is AggregateException a && a.InnerExceptions.Any(IsUnreadable);
    }

    private async Task Record(ReceiveContext context, Exception exception)
    {
        var store = services.GetRequiredService<IArtifactStore>();
        var queue = JournalEntries.EndpointName(context.InputAddress);
        var errorQueue = queue + "_error";
        var body = SafeBody(context);
        var (messageId, messageType, runId, iteration, checkpointId) = Sniff(body, context);
        var inner = exception.GetBaseException();
        var reason = inner == exception
            ? $"{exception.GetType().FullName}: {exception.Message}"
            : $"{exception.GetType().FullName}: {exception.Message} ({inner.GetType().FullName}: {inner.Message})";
        var error = new ErrorRecord
        {
            Id = $"{messageId ?? Guid.NewGuid().ToString()}/{errorQueue}",
            MessageId = messageId,
            MessageType = messageType ?? "(unreadable)",
            Queue = errorQueue,
            Reason = reason,
            ExceptionType = exception.GetType().FullName,
            BodyJson = body,
            RunId = runId,
            Iteration = iteration,
            Time = DateTimeOffset.UtcNow,
            Host = JournalEntries.HostName(options),
        };
        await store.PutErrorAsync(error);
        LogParked(log, error.MessageType, messageId, runId, errorQueue, reason);

        if (runId is null) return;
        var run = await store.GetRunAsync(runId);
        if (run is null || run.IsTerminal) return;
        var failure = $"{error.MessageType} {messageId} parked in {errorQueue}: {reason}";
        if (await store.SetRunStateAsync(runId, RunState.Failed, failure) == WriteOutcome.Updated)
            await services.GetRequiredService<IBus>().Publish(new RunFailed { RunId = runId, Iteration = iteration ?? 0, CheckpointId = checkpointId ?? "", Reason = failure });
    }

    private static string? SafeBody(ReceiveContext context)
    {
        try
        {
            var text = context.Body.GetString();
            return text.Length > 64_000 ? text[..64_000] : text;
        }
        catch (Exception) { return null; }
    }

    /// <summary>Best effort: ids and run from a MassTransit JSON envelope, even when the message itself is invalid.</summary>
    private static (string? MessageId, string? MessageType, string? RunId, int? Iteration, string? CheckpointId) Sniff(string? body, ReceiveContext context)
    {
        string? messageId = context.TryGetPayload<RabbitMqBasicConsumeContext>(out var rabbit) ? rabbit.Properties.MessageId : null;
        messageId ??= context.TransportHeaders.Get<string>("MessageId");
        string? type = null, runId = null, checkpoint = null;
        int? iteration = null;
        if (body is null) return (messageId, type, runId, iteration, checkpoint);
        try
        {
            using var doc = JsonDocument.Parse(body);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) return (messageId, type, runId, iteration, checkpoint);
            if (Prop(root, "messageId") is { ValueKind: JsonValueKind.String } id) messageId = id.GetString();
            if (Prop(root, "messageType") is { ValueKind: JsonValueKind.Array } types && types.GetArrayLength() > 0)
                type = types[0].GetString()?.Replace("urn:message:", "", StringComparison.Ordinal).Replace(':', '.');
            var message = Prop(root, "message") ?? root;
            if (message.ValueKind == JsonValueKind.Object)
            {
                if (Prop(message, "runId") is { ValueKind: JsonValueKind.String } r) runId = r.GetString();
                if (Prop(message, "iteration") is { ValueKind: JsonValueKind.Number } i && i.TryGetInt32(out var n)) iteration = n;
                if (Prop(message, "checkpointId") is { ValueKind: JsonValueKind.String } c) checkpoint = c.GetString();
            }
        }
        catch (JsonException) { }
        return (messageId, type, runId, iteration, checkpoint);
    }

    private static JsonElement? Prop(JsonElement e, string name)
    {
        foreach (var p in e.EnumerateObject())
            if (p.Name.Equals(name, StringComparison.OrdinalIgnoreCase)) return p.Value;
        return null;
    }

    [LoggerMessage(EventId = 1302, Level = LogLevel.Error, Message = "rejected {MessageType} {MessageId} of run {RunId} parked in {ErrorQueue}: {Reason}")]
    private static partial void LogParked(ILogger logger, string messageType, string? messageId, string? runId, string errorQueue, string reason);

    [LoggerMessage(EventId = 1303, Level = LogLevel.Error, Message = "could not record a receive fault: {Error}")]
    private static partial void LogRecordFailed(ILogger logger, string error);
}
