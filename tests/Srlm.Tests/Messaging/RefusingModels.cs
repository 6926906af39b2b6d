using Srlm.ServiceKit;

namespace Srlm.Tests.Messaging;

/// <summary>A model provider for tests in which no model may be loaded: it counts the calls and refuses each.</summary>
public sealed class RefusingModels : IModelProvider
{
    private int _calls;

    public int Calls => Volatile.Read(ref _calls);

    public Task<ITextModel> GetAsync(string checkpointId, CancellationToken ct)
    {
        Interlocked.Increment(ref _calls);
        throw new InvalidOperationException($"model {checkpointId} asked for where no model may be loaded");
    }
}
