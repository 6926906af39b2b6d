using System.Collections.Concurrent;
using System.Reflection;
using System.Text.Json;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using Srlm.Storage;

namespace Srlm.Bench.JudgeHost;

/// <summary>Counts every call the process makes on its artifact store, by method (the health check's probe apart), and
/// writes the counts as JSON to SRLM_BENCH_COUNTS when the host stops, for `srlm bench pipeline` to divide by the
/// judgements handled. Each call still goes to the real store; the counter adds a dictionary increment.</summary>
public class StoreCallCounter : DispatchProxy
{
    public const string Variable = "SRLM_BENCH_COUNTS";
    /// <summary>The id StoreHealthCheck reads (a periodic probe, not a judgement's work).</summary>
    private const string HealthProbeRun = "~health-probe~";

    private IArtifactStore _inner = null!;
    private ConcurrentDictionary<string, long> _counts = null!;

    /// <summary>Wraps the registered IArtifactStore; does nothing when SRLM_BENCH_COUNTS is unset.</summary>
    public static void Decorate(IServiceCollection services, IConfiguration configuration)
    {
        if (configuration[Variable] is not { Length: > 0 } file) return;
        var counts = new ConcurrentDictionary<string, long>(StringComparer.Ordinal);
        var registered = services.Last(d => d.ServiceType == typeof(IArtifactStore));
        services.Remove(registered);
        services.AddSingleton(sp =>
        {
            var inner = (IArtifactStore)(registered.ImplementationInstance ?? registered.ImplementationFactory?.Invoke(sp)
                ?? ActivatorUtilities.CreateInstance(sp, registered.ImplementationType!));
            var proxy = Create<IArtifactStore, StoreCallCounter>();
            var counter = (StoreCallCounter)(object)proxy;
            counter._inner = inner;
            counter._counts = counts;
            return proxy;
        });
        services.AddHostedService(_ => new CountsWriter(file, counts));
    }

    protected override object? Invoke(MethodInfo? method, object?[]? args)
    {
        ArgumentNullException.ThrowIfNull(method);
        if (method.Name != nameof(IArtifactStore.DisposeAsync) && !method.IsSpecialName)
        {
            var health = method.Name == nameof(IArtifactStore.GetRunAsync) && args?[0] is HealthProbeRun;
            _counts.AddOrUpdate(health ? "health:" + method.Name : method.Name, 1, (_, n) => n + 1);
        }
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

    private sealed class CountsWriter(string file, ConcurrentDictionary<string, long> counts) : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public async Task StopAsync(CancellationToken cancellationToken)
        {
            var snapshot = new SortedDictionary<string, long>(counts, StringComparer.Ordinal);
            var temp = file + ".tmp";
            await File.WriteAllTextAsync(temp, JsonSerializer.Serialize(snapshot), cancellationToken);
            File.Move(temp, file, overwrite: true);
        }
    }
}
