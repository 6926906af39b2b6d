using System.Reflection;

namespace Srlm.FaultHost;

/// <summary>The fault SRLM_TEST_NON_IDEMPOTENT=judgement: the artifact store as a careless writer would use it, for the
/// fault test that proves the `duplicates` counter sees such a writer. Judge samples are stored under fresh random ids
/// and the process never sees the ones already stored, so every delivery of a JudgeCandidate stores K more samples
/// for the same (candidate, sample index). Everything else goes to the real store unchanged. Only srlm-faulthost has it.</summary>
public class NonIdempotentStore : DispatchProxy
{
    private IArtifactStore _inner = null!;

    public static IArtifactStore Wrap(IArtifactStore inner)
    {
        var proxy = Create<IArtifactStore, NonIdempotentStore>();
        ((NonIdempotentStore)(object)proxy)._inner = inner;
        return proxy;
    }

    private static JudgementRecord Careless(JudgementRecord j) => j with { Id = $"{j.Id}~{Guid.NewGuid():N}" };

    protected override object? Invoke(MethodInfo? method, object?[]? args)
    {
        ArgumentNullException.ThrowIfNull(method);
        if (method.Name == nameof(IArtifactStore.PutAsync) && args?[0] is JudgementRecord j)
            args[0] = Careless(j);
        else if (method.Name == nameof(IArtifactStore.PutManyAsync) && args?[0] is IReadOnlyList<JudgementRecord> many)
            args[0] = many.Select(Careless).ToList();
        else if (method.Name == nameof(IArtifactStore.ListAsync) && method.IsGenericMethod && method.GetGenericArguments()[0] == typeof(JudgementRecord))
            return Task.FromResult<IReadOnlyList<JudgementRecord>>([]);
        try
        {
            return method.Invoke(_inner, args);
        }
        catch (TargetInvocationException e) when (e.InnerException is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(e.InnerException);
            throw;
        }
    }
}
