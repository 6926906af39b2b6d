namespace Srlm.ServiceKit;

/// <summary>The start every run message's consumer shares, in one place: the run's spec is read (through the cache,
/// so a message of a run that is not stored is refused there), then the service's own <see cref="HandleAsync"/> runs.
/// A record the message names by id is read with <see cref="RequireAsync{TRecord}"/>: when it is not stored, the
/// message is malformed (parked, never retried) and the error names the message, the record and its id.</summary>
public abstract class RunConsumer<TMessage>(IArtifactStore store, RunSpecCache specs) : IConsumer<TMessage>
    where TMessage : class, IRunMessage
{
    protected IArtifactStore Store { get; } = store;

    protected RunSpecCache Specs { get; } = specs;

    public async Task Consume(ConsumeContext<TMessage> context)
    {
        var spec = await Specs.GetAsync(context.Message.RunId, context.CancellationToken);
        await HandleAsync(context, context.Message, spec, context.CancellationToken);
    }

    /// <summary>The service's work for one message of a run whose spec is <paramref name="spec"/>.</summary>
    protected abstract Task HandleAsync(ConsumeContext<TMessage> context, TMessage m, RunSpec spec, CancellationToken ct);

    /// <summary>The stored record <paramref name="id"/> the message names (<paramref name="what"/> says which, e.g.
    /// "prompt"); a <see cref="MalformedMessageException"/> when none is stored.</summary>
    protected async Task<TRecord> RequireAsync<TRecord>(ConsumeContext<TMessage> context, string what, string id, CancellationToken ct)
        where TRecord : class, IArtifact =>
        await Store.GetAsync<TRecord>(id, ct)
        ?? throw new MalformedMessageException($"{typeof(TMessage).Name} {context.MessageId}: {what} {id} is not stored");
}
