using MassTransit;
using Srlm.Messaging.Bus;

namespace Srlm.Judge;

/// <summary>Where commands go: the queue of the consumer that handles them, named by the project's endpoint
/// name formatter (never a string literal), so `srlm run` and the distributed services agree.</summary>
public static class Endpoints
{
    public static Uri Of<TConsumer>() where TConsumer : class, IConsumer =>
        new($"queue:{SrlmBusExtensions.EndpointNameFormatter.Consumer<TConsumer>()}");

    public static async Task SendAsync<TConsumer, TMessage>(this ISendEndpointProvider provider, TMessage message, CancellationToken ct)
        where TConsumer : class, IConsumer where TMessage : class
    {
        var endpoint = await provider.GetSendEndpoint(Of<TConsumer>());
        await endpoint.Send(message, ct);
    }

    public static async Task SendAllAsync<TConsumer, TMessage>(this ISendEndpointProvider provider, IEnumerable<TMessage> messages, CancellationToken ct)
        where TConsumer : class, IConsumer where TMessage : class
    {
        var endpoint = await provider.GetSendEndpoint(Of<TConsumer>());
        foreach (var message in messages) await endpoint.Send(message, ct);
    }
}
