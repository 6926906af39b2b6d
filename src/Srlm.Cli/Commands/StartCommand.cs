namespace Srlm.Cli.Commands;

/// <summary>`srlm start SPEC`: uploads the spec, its seed files and the starting checkpoint into the
/// deployment's stores (SRLM_STORE, SRLM_CHECKPOINTS) and publishes RunStarted on SRLM_BUS. The run id is
/// the last line of the output.</summary>
public sealed class StartCommand : ICommand
{
    public string Name => "start";

    public string Summary => "submit a run spec to a deployment (SRLM_BUS, SRLM_STORE); prints the run id last";

    public async Task<int> RunAsync(string[] args, CancellationToken cancel)
    {
        var a = new Args(args);
        a.EnsureAllRead();
        if (a.Positional.Count != 1) throw new UsageException("usage: srlm start SPEC");
        RunSpec spec;
        try { spec = RunSpecJson.Load(a.Positional[0]); }
        catch (RunSpecException e) { throw new UsageException(e.Message); }

        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration.AddEnvironmentVariables();
        SrlmOptions options;
        try
        {
            options = SrlmOptions.FromConfiguration(builder.Configuration, "cli");
            if (!options.BusConfigured || options.Bus.Transport != BusTransport.RabbitMq)
                throw new UsageException("SRLM_BUS must name the deployment's broker (amqp://user:pass@host:port/vhost); to run in this process use `srlm run SPEC`");
            if (options.Store is null) throw new UsageException("SRLM_STORE must name the deployment's store (sqlite://PATH or mongodb://HOST/DB)");
            builder.Services.AddSingleton(options);
            builder.Services.AddSrlmInfrastructure(builder.Configuration);
            builder.Services.AddSrlmBus(builder.Configuration, _ => { });
        }
        catch (SrlmConfigurationException e) { throw new UsageException(e.Message); }
        builder.Logging.ClearProviders();
        // The broker drops a message published to an exchange no queue is bound to: on a broker (or vhost) where no
        // trainer has ever started, RunStarted would vanish and the run would sit there. Refuse instead (nothing uploaded).
        var runStartedQueue = SrlmBusExtensions.EndpointNameFormatter.Consumer<Srlm.Trainer.RunStartedConsumer>();
        RabbitMQ.Client.IConnection connection;
        try { connection = await RabbitQueues.ConnectAsync(options.Bus, "srlm-start", cancel); }
        catch (RabbitMQ.Client.Exceptions.BrokerUnreachableException e) { throw new UsageException($"cannot reach the broker at {options.Bus.Display}: {Redact.Uri(e.Message)}"); }
        await using (connection)
        {
            if ((await RabbitQueues.DepthsAsync(connection, [runStartedQueue], cancel))[0].Messages is null)
                throw new UsageException($"no trainer has ever connected to {options.Bus.Display}: its queue '{runStartedQueue}' does not exist, " +
                                         "so the broker would drop RunStarted; start the services first");
        }
        using var host = builder.Build();
        await host.StartAsync(cancel);
        try
        {
            var store = host.Services.GetRequiredService<IArtifactStore>();
            var runId = RunUpload.NewRunId(spec.Name);
            var uploaded = await RunUpload.UploadAsync(store, host.Services.GetRequiredService<ICheckpointStore>(), spec,
                Path.GetDirectoryName(Path.GetFullPath(a.Positional[0]))!, runId, cancel);
            var bus = host.Services.GetRequiredService<IBus>();
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancel);
            timeout.CancelAfter(TimeSpan.FromSeconds(60));
            await bus.Publish(new RunStarted { RunId = runId, Iteration = 0, CheckpointId = uploaded.StartCheckpointId }, timeout.Token);
            Console.WriteLine($"uploaded spec, seed files and {uploaded.StartCheckpointId} to {store.Location}");
            Console.WriteLine(runId);
        }
        finally
        {
            await host.StopAsync(CancellationToken.None);
        }
        return 0;
    }
}
