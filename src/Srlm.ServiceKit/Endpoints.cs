namespace Srlm.ServiceKit;

/// <summary>Where commands go: the queue of the consumer that handles a command, named by the project's
/// endpoint name formatter from the command's type (a `JudgeCandidate` goes to the queue of
/// `JudgeCandidateConsumer`), so a service sends a command without referencing the library that handles it,
/// and `srlm run` and the distributed services agree. EndpointsTests pins every command consumer's queue to this name.</summary>
public static class Endpoints
{
    /// <summary>The queue name of command <typeparamref name="TMessage"/> (what the formatter names its consumer's endpoint).</summary>
    public static string NameOf<TMessage>() where TMessage : class =>
        SrlmBusExtensions.EndpointNameFormatter.SanitizeName(typeof(TMessage).Name);

    public static Uri Of<TMessage>() where TMessage : class => new($"queue:{NameOf<TMessage>()}");

    public static async Task SendAsync<TMessage>(this ISendEndpointProvider provider, TMessage message, CancellationToken ct)
        where TMessage : class
    {
        var endpoint = await provider.GetSendEndpoint(Of<TMessage>());
        await endpoint.Send(message, ct);
    }

    public static async Task SendAllAsync<TMessage>(this ISendEndpointProvider provider, IEnumerable<TMessage> messages, CancellationToken ct)
        where TMessage : class
    {
        var endpoint = await provider.GetSendEndpoint(Of<TMessage>());
        foreach (var message in messages) await endpoint.Send(message, ct);
    }
}
