using RabbitMQ.Client;
using RabbitMQ.Client.Exceptions;

namespace Srlm.Messaging.Broker;

/// <summary>Depth of one queue: ready messages and consumers attached (null when the queue does not exist).</summary>
public sealed record QueueDepth(string Queue, uint? Messages, uint? Consumers);

/// <summary>Operator access to the broker over plain AMQP (no management plugin needed): queue depths by
/// passive declare, and moving parked messages from an <c>_error</c> queue back to its queue.</summary>
public static class RabbitQueues
{
    /// <summary>The queue names of every consumer in the given assemblies, as the bus names them
    /// (<see cref="SrlmBusExtensions.EndpointNameFormatter"/>).</summary>
    public static IReadOnlyList<string> ConsumerQueues(IEnumerable<Assembly> assemblies)
    {
        var method = typeof(IEndpointNameFormatter).GetMethod(nameof(IEndpointNameFormatter.Consumer))!;
        return assemblies.SelectMany(SafeTypes)
            .Where(t => t is { IsClass: true, IsAbstract: false, IsGenericTypeDefinition: false } && typeof(IConsumer).IsAssignableFrom(t) && t.IsPublic)
            .Select(t => (string)method.MakeGenericMethod(t).Invoke(SrlmBusExtensions.EndpointNameFormatter, null)!)
            .Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
    }

    private static IEnumerable<Type> SafeTypes(Assembly a)
    {
        try { return a.GetTypes(); }
        catch (ReflectionTypeLoadException e) { return e.Types.Where(t => t is not null)!; }
    }

    public static async Task<IConnection> ConnectAsync(BusOptions bus, string clientName, CancellationToken ct = default)
    {
        if (bus.Transport != BusTransport.RabbitMq) throw new SrlmConfigurationException($"SRLM_BUS={bus.Display} is not a RabbitMQ broker");
        var factory = new ConnectionFactory
        {
            HostName = bus.Host, Port = bus.Port, VirtualHost = bus.VirtualHost, UserName = bus.Username, Password = bus.Password,
            ClientProvidedName = clientName, RequestedConnectionTimeout = TimeSpan.FromSeconds(10),
        };
        if (bus.UseTls) factory.Ssl = new SslOption { Enabled = true, ServerName = bus.Host };
        return await factory.CreateConnectionAsync(ct);
    }

    /// <summary>Ready-message and consumer counts of each queue (passive declare: nothing is created).</summary>
    public static async Task<IReadOnlyList<QueueDepth>> DepthsAsync(IConnection connection, IEnumerable<string> queues, CancellationToken ct = default)
    {
        var result = new List<QueueDepth>();
        foreach (var q in queues)
        {
            // A passive declare of a missing queue closes its channel (404), so each queue gets its own.
            await using var channel = await connection.CreateChannelAsync(cancellationToken: ct);
            try
            {
                var ok = await channel.QueueDeclarePassiveAsync(q, ct);
                result.Add(new QueueDepth(q, ok.MessageCount, ok.ConsumerCount));
            }
            catch (OperationInterruptedException) { result.Add(new QueueDepth(q, null, null)); }
        }
        return result;
    }

    /// <summary>Moves up to <paramref name="max"/> messages from <c>QUEUE_error</c> back to <c>QUEUE</c>, keeping
    /// body, message id and properties but dropping MassTransit's fault headers; each is acknowledged on the
    /// error queue only after the broker confirmed the copy. Returns the message ids moved.</summary>
    public static async Task<IReadOnlyList<string>> RequeueAsync(IConnection connection, string errorQueue, int max = int.MaxValue,
        Func<IReadOnlyBasicProperties, ReadOnlyMemory<byte>, bool>? select = null, CancellationToken ct = default)
    {
        if (!errorQueue.EndsWith("_error", StringComparison.Ordinal)) throw new ArgumentException($"'{errorQueue}' is not an _error queue", nameof(errorQueue));
        var target = errorQueue[..^"_error".Length];
        var moved = new List<string>();
        var skipped = new List<ulong>();
        await using var channel = await connection.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true), ct);
        await channel.QueueDeclarePassiveAsync(target, ct);
        while (moved.Count < max)
        {
            var got = await channel.BasicGetAsync(errorQueue, autoAck: false, ct);
            if (got is null) break;
            if (select is not null && !select(got.BasicProperties, got.Body))
            {
                skipped.Add(got.DeliveryTag);
                continue;
            }
            var props = new BasicProperties(got.BasicProperties);
            if (props.Headers is not null)
            {
                var headers = new Dictionary<string, object?>(props.Headers);
                foreach (var key in headers.Keys.Where(k => k.StartsWith("MT-Fault-", StringComparison.Ordinal) || k == "MT-Reason" || k.StartsWith("MT-Host-", StringComparison.Ordinal)).ToList())
                    headers.Remove(key);
                props.Headers = headers;
            }
            await channel.BasicPublishAsync("", target, mandatory: true, props, got.Body, ct);
            await channel.BasicAckAsync(got.DeliveryTag, multiple: false, ct);
            moved.Add(got.BasicProperties.MessageId ?? got.DeliveryTag.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }
        foreach (var tag in skipped) await channel.BasicNackAsync(tag, multiple: false, requeue: true, ct);
        return moved;
    }
}
