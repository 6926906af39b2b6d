using MassTransit;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Srlm.Messaging.Bus;
using Srlm.Messaging.Configuration;
using Srlm.Messaging.Hosting;
using Srlm.Storage;

namespace Srlm.Tests.Messaging;

/// <summary>A srlm process in the test: the real AddSrlmInfrastructure + AddSrlmBus on a temporary SQLite store.</summary>
public sealed class TestBusHost : IAsyncDisposable
{
    private TestBusHost(IHost host, string folder) { Host = host; Folder = folder; }

    public IHost Host { get; }
    public string Folder { get; }
    public IArtifactStore Store => Host.Services.GetRequiredService<IArtifactStore>();
    public IBus Bus => Host.Services.GetRequiredService<IBus>();

    public static async Task<TestBusHost> StartAsync(string bus, Action<IBusRegistrationConfigurator> consumers,
        Action<IServiceCollection>? services = null, string? folder = null, string service = "test")
    {
        folder ??= Directory.CreateTempSubdirectory("srlm-bus-test-").FullName;
        var builder = Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["SRLM_BUS"] = bus,
            ["SRLM_STORE"] = "sqlite://" + Path.Combine(folder, "srlm.db"),
            ["SRLM_HEALTH_FILE"] = Path.Combine(folder, service + ".health"),
            ["SRLM_HEALTH_INTERVAL_S"] = "0.5",
            ["SRLM_HEALTH_MAX_AGE_S"] = "5",
        });
        builder.Services.AddSingleton(SrlmOptions.FromConfiguration(builder.Configuration, service));
        builder.Services.AddSrlmInfrastructure(builder.Configuration);
        builder.Services.AddSrlmBus(builder.Configuration, consumers);
        services?.Invoke(builder.Services);
        var host = builder.Build();
        await host.StartAsync();
        // The host starts without waiting for the broker; a test publishing raw AMQP needs the queues bound first.
        var ready = await host.Services.GetRequiredService<IBusControl>().WaitForHealthStatus(BusHealthStatus.Healthy, TimeSpan.FromSeconds(60));
        if (ready != BusHealthStatus.Healthy) throw new TimeoutException($"bus not healthy after 60 s ({ready})");
        return new TestBusHost(host, folder);
    }

    public static async Task WaitUntilAsync(Func<Task<bool>> condition, TimeSpan timeout, string what)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (await condition()) return;
            await Task.Delay(50);
        }
        throw new TimeoutException($"not reached within {timeout.TotalSeconds:F0} s: {what}");
    }

    public async ValueTask DisposeAsync()
    {
        await Host.StopAsync();
        Host.Dispose();
        try { Directory.Delete(Folder, recursive: true); } catch (IOException) { }
    }
}

/// <summary>Counts what test consumers saw, per test.</summary>
public sealed class Calls
{
    private int _attempts;
    private readonly System.Collections.Concurrent.ConcurrentQueue<object> _handled = new();
    public int Attempts => Volatile.Read(ref _attempts);
    public IReadOnlyCollection<object> Handled => _handled;
    public void Attempt() => Interlocked.Increment(ref _attempts);
    public void Done(object message) => _handled.Enqueue(message);

    /// <summary>While true, flaky test consumers throw.</summary>
    public volatile bool Failing = true;
}
