namespace Srlm.Cli.Commands;

/// <summary>What the operator verbs (runs, status, cancel, replay, errors, export, lineage, audit) share: the
/// environment (SRLM_STORE, SRLM_CHECKPOINTS, SRLM_BUS) read and validated like the services read it, the stores
/// opened through Srlm.Storage's factory, and a publish-only bus when a verb must publish.</summary>
internal sealed class OpsEnvironment : IAsyncDisposable
{
    private OpsEnvironment(IConfiguration configuration, SrlmOptions options, StoreSet stores)
    {
        Configuration = configuration;
        Options = options;
        Stores = stores;
    }

    public IConfiguration Configuration { get; }
    public SrlmOptions Options { get; }
    public StoreSet Stores { get; }
    public IArtifactStore Store => Stores.Artifacts;

    /// <summary>Opens the stores; a configuration mistake becomes a one-line UsageException.</summary>
    /// <param name="storeOverride">--store from the command line, overriding SRLM_STORE.</param>
    public static OpsEnvironment Open(string? storeOverride = null)
    {
        var builder = new ConfigurationBuilder().AddEnvironmentVariables();
        if (storeOverride is not null) builder.AddInMemoryCollection([new KeyValuePair<string, string?>("SRLM_STORE", storeOverride)]);
        var configuration = builder.Build();
        // These verbs read runs that exist: a mistyped SQLite path is an error, not a new empty store.
        if (configuration["SRLM_STORE"] is { } uri && uri.StartsWith("sqlite://", StringComparison.OrdinalIgnoreCase)
            && uri.Length > "sqlite://".Length && !File.Exists(uri["sqlite://".Length..]))
            throw new UsageException($"SRLM_STORE={uri}: no store at {Path.GetFullPath(uri["sqlite://".Length..])}");
        try
        {
            var options = SrlmOptions.FromConfiguration(configuration, "cli");
            return new OpsEnvironment(configuration, options, SrlmInfrastructureExtensions.OpenStores(configuration));
        }
        catch (SrlmConfigurationException e) { throw new UsageException(e.Message); }
    }

    /// <summary>A started publish-only bus on SRLM_BUS (which must be a RabbitMQ broker: an in-memory bus in this
    /// process would reach no service). Dispose the returned handle to stop it.</summary>
    public async Task<BusHandle> StartBusAsync(string verb, CancellationToken ct)
    {
        if (Options.Bus.Transport != BusTransport.RabbitMq)
            throw new UsageException($"{verb} publishes to the services: set SRLM_BUS=amqp://user:pass@host:port/vhost (it is {Options.Bus.Display})");
        var services = new ServiceCollection();
        services.AddLogging(b => b.AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(LogLevel.Warning));
        services.AddSingleton(Options);
        services.AddSingleton(Stores.Artifacts);
        services.AddSingleton(Stores.Checkpoints);
        services.AddSrlmBusClient(Configuration);
        var provider = services.BuildServiceProvider();
        var bus = provider.GetRequiredService<IBusControl>();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(30));
        try
        {
            await bus.StartAsync(timeout.Token);
        }
        catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
        {
            await provider.DisposeAsync();
            throw new UsageException($"cannot reach the broker at {Options.Bus.Display}: {Redact.Uri(e.Message)}");
        }
        return new BusHandle(bus, provider);
    }

    public ValueTask DisposeAsync() => Stores.DisposeAsync();

    internal sealed class BusHandle(IBusControl bus, ServiceProvider provider) : IAsyncDisposable
    {
        public IBus Bus => bus;

        public async ValueTask DisposeAsync()
        {
            await bus.StopAsync(TimeSpan.FromSeconds(30));
            await provider.DisposeAsync();
        }
    }
}
