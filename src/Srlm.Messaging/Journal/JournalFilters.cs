using MassTransit.Serialization;

namespace Srlm.Messaging.Journal;

/// <summary>Builds journal entries from MassTransit contexts (envelope ids, headers, body, host, run, iteration).</summary>
public static class JournalEntries
{
    /// <summary>The body format of the journal: MassTransit's own System.Text.Json settings, so replay reads it back.</summary>
    public static JsonSerializerOptions BodyOptions { get; } = new(SystemTextJsonMessageSerializer.Options) { WriteIndented = false };

    public static string HostName(SrlmOptions options) => $"{Environment.MachineName}/{options.ServiceName}/{Environment.ProcessId}";

    public static JournalEntry Create<T>(Guid? messageIdValue, Guid? conversationId, Guid? correlationId, T message, JournalDirection direction,
        string? endpoint, SrlmOptions options, Headers headers)
        where T : class
    {
        var messageId = messageIdValue?.ToString() ?? NewId.NextGuid().ToString();
        var run = MessageRun.Of(message);
        return new JournalEntry
        {
            Id = direction == JournalDirection.Published ? $"{messageId}/published" : $"{messageId}/consumed/{endpoint}",
            MessageId = messageId,
            ConversationId = conversationId?.ToString(),
            CorrelationId = correlationId?.ToString(),
            MessageType = MessageRun.TypeName(typeof(T)),
            Direction = direction,
            Endpoint = endpoint,
            Headers = headers.GetAll().ToDictionary(h => h.Key, h => Convert.ToString(h.Value, System.Globalization.CultureInfo.InvariantCulture) ?? ""),
            BodyJson = JsonSerializer.Serialize(message, message.GetType(), BodyOptions),
            Time = DateTimeOffset.UtcNow,
            Host = HostName(options),
            RunId = run.RunId,
            Iteration = run.Iteration,
        };
    }

    /// <summary>The queue or exchange name at the end of a MassTransit address ("rabbitmq://host/vhost/judge-candidate" -> "judge-candidate").</summary>
    public static string? EndpointName(Uri? address)
    {
        if (address is null) return null;
        var path = address.AbsolutePath.TrimEnd('/');
        var name = path[(path.LastIndexOf('/') + 1)..];
        return name.Length == 0 ? address.ToString() : Uri.UnescapeDataString(name);
    }
}

/// <summary>Journals a consumed message AFTER its consumer succeeded (inside the consume pipeline, so a failed
/// append fails the message and it is retried: the message is acknowledged only once handled and journaled).
/// The entry id is "{messageId}/consumed/{queue}": a redelivered message is journaled once.</summary>
public sealed partial class JournalConsumeFilter<T>(JournalWriter journal, SrlmOptions options, ILogger<JournalConsumeFilter<T>> log)
    : IFilter<ConsumeContext<T>> where T : class
{
    public async Task Send(ConsumeContext<T> context, IPipe<ConsumeContext<T>> next)
    {
        await next.Send(context);
        var endpoint = JournalEntries.EndpointName(context.ReceiveContext.InputAddress);
        var entry = JournalEntries.Create(context.MessageId, context.ConversationId, context.CorrelationId, context.Message, JournalDirection.Consumed, endpoint, options, context.Headers);
        await journal.AppendAsync(entry, context.CancellationToken);
        LogConsumed(log, entry.MessageType, entry.MessageId, entry.RunId, entry.Iteration, endpoint);
    }

    public void Probe(ProbeContext context) => context.CreateFilterScope("srlm-journal-consume");

    [LoggerMessage(EventId = 1101, Level = LogLevel.Debug, Message = "consumed {MessageType} {MessageId} run={RunId} iteration={Iteration} on {Endpoint}")]
    private static partial void LogConsumed(ILogger logger, string messageType, string messageId, string? runId, int? iteration, string? endpoint);
}

/// <summary>Journals a published message once the broker accepted it. Id "{messageId}/published".</summary>
public sealed class JournalPublishFilter<T>(JournalWriter journal, SrlmOptions options) : IFilter<PublishContext<T>> where T : class
{
    public async Task Send(PublishContext<T> context, IPipe<PublishContext<T>> next)
    {
        context.ConversationId ??= NewId.NextGuid(); // so the journal has it now, not only the envelope
        // MassTransit runs a publish through the send pipeline too: this filter journals it, the send filter leaves it.
        context.GetOrAddPayload(() => JournaledAsPublished.Instance);
        await next.Send(context);
        var entry = JournalEntries.Create(context.MessageId, context.ConversationId, context.CorrelationId, context.Message, JournalDirection.Published,
            JournalEntries.EndpointName(context.DestinationAddress), options, context.Headers);
        await journal.AppendAsync(entry, context.CancellationToken);
    }

    public void Probe(ProbeContext context) => context.CreateFilterScope("srlm-journal-publish");
}

/// <summary>Journals a sent command (Send to a queue) like a published one: id "{messageId}/published".</summary>
public sealed class JournalSendFilter<T>(JournalWriter journal, SrlmOptions options) : IFilter<SendContext<T>> where T : class
{
    public async Task Send(SendContext<T> context, IPipe<SendContext<T>> next)
    {
        if (context.TryGetPayload<JournaledAsPublished>(out _))
        {
            await next.Send(context); // a publish: JournalPublishFilter writes its entry (the same id) once the broker took it
            return;
        }
        context.ConversationId ??= NewId.NextGuid();
        await next.Send(context);
        var entry = JournalEntries.Create(context.MessageId, context.ConversationId, context.CorrelationId, context.Message, JournalDirection.Published,
            JournalEntries.EndpointName(context.DestinationAddress), options, context.Headers);
        await journal.AppendAsync(entry, context.CancellationToken);
    }

    public void Probe(ProbeContext context) => context.CreateFilterScope("srlm-journal-send");
}

/// <summary>Marks a send context that belongs to a publish, whose journal entry the publish filter writes.</summary>
internal sealed class JournaledAsPublished
{
    public static readonly JournaledAsPublished Instance = new();
}
