namespace Srlm.Messaging.Bus;

public static class SrlmBusExtensions
{
    /// <summary>Queue names come from this formatter (consumer type <c>JudgeCandidateConsumer</c> -> queue
    /// <c>judge-candidate</c>), never from literals; the CLI uses it to find queues and their <c>_error</c> twins.</summary>
    public static IEndpointNameFormatter EndpointNameFormatter { get; } = new KebabCaseEndpointNameFormatter(includeNamespace: false);

    /// <summary>MassTransit on RabbitMQ or in memory (SRLM_BUS), configured identically either way: the given
    /// consumers (each with its definition, see <see cref="SrlmConsumerDefinition{T}"/>), the fault recorder,
    /// the message journal, endpoint names from <see cref="EndpointNameFormatter"/>. The bus starts without
    /// waiting for the broker and reconnects on its own when the broker returns.</summary>
    public static IServiceCollection AddSrlmBus(this IServiceCollection services, IConfiguration configuration,
        Action<IBusRegistrationConfigurator> addConsumers) => AddSrlmBus(services, configuration, addConsumers, recordFaults: true);

    /// <summary>A publish-only bus for the command line (replay, cancel): journaled like every other, but it
    /// receives nothing (no fault recorder competing with the services for faults).</summary>
    public static IServiceCollection AddSrlmBusClient(this IServiceCollection services, IConfiguration configuration) =>
        AddSrlmBus(services, configuration, _ => { }, recordFaults: false);

    private static IServiceCollection AddSrlmBus(IServiceCollection services, IConfiguration configuration,
        Action<IBusRegistrationConfigurator> addConsumers, bool recordFaults)
    {
        ArgumentNullException.ThrowIfNull(addConsumers);
        var options = services.FindSrlmOptions() ?? SrlmOptions.FromConfiguration(configuration);
        services.TryAddSingleton(options);
        services.TryAddSingleton<Srlm.Messaging.Journal.JournalWriter>();

        services.AddMassTransit(x =>
        {
            x.SetEndpointNameFormatter(EndpointNameFormatter);
            addConsumers(x);
            if (recordFaults) SrlmBusParts.Add(x);

            if (options.Bus.Transport == BusTransport.RabbitMq)
            {
                var b = options.Bus;
                x.UsingRabbitMq((context, cfg) =>
                {
                    cfg.Host(b.Host, (ushort)b.Port, b.VirtualHost, options.ServiceName, h =>
                    {
                        h.Username(b.Username);
                        h.Password(b.Password);
                        h.Heartbeat(TimeSpan.FromSeconds(10));
                        if (b.UseTls) h.UseSsl(s => s.ServerName = b.Host);
                    });
                    ConfigureCommon(context, cfg, recordFaults);
                });
            }
            else
            {
                x.UsingInMemory((context, cfg) => ConfigureCommon(context, cfg, recordFaults));
            }
        });
        services.Configure<MassTransitHostOptions>(o =>
        {
            // Start without the broker (it may come up later, or restart): MassTransit keeps reconnecting.
            o.WaitUntilStarted = false;
            o.StopTimeout = TimeSpan.FromSeconds(30);
        });
        return services;
    }

    private static void ConfigureCommon<TEndpointConfigurator>(IBusRegistrationContext context, IBusFactoryConfigurator<TEndpointConfigurator> cfg, bool recordFaults)
        where TEndpointConfigurator : IReceiveEndpointConfigurator
    {
        SrlmBusParts.Configure(context, cfg, recordFaults);
        cfg.ConfigureEndpoints(context);
    }

    internal static SrlmOptions? FindSrlmOptions(this IServiceCollection services) =>
        services.LastOrDefault(d => d.ServiceType == typeof(SrlmOptions))?.ImplementationInstance as SrlmOptions;
}
