using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace Srlm.Messaging.Hosting;

public static class SrlmInfrastructureExtensions
{
    /// <summary>Everything a srlm process needs besides its bus and its own services, from the environment:
    /// <see cref="SrlmOptions"/> (validated: a mistake throws <see cref="SrlmConfigurationException"/>, one line),
    /// the artifact store and checkpoint store (SRLM_STORE, SRLM_CHECKPOINTS through Srlm.Storage's factory, opened
    /// now so a bad value stops the start), libtorch threads (SRLM_THREADS), the model device (SRLM_DEVICE, resolved now), single-line UTC console logs (JSON when
    /// SRLM_LOG_FORMAT=json) that never show credentials, the store and bus health checks with the heartbeat file
    /// that `--health` reads, and OpenTelemetry export when OTEL_EXPORTER_OTLP_ENDPOINT is set.
    /// A store already registered (a test, `srlm run`) is kept.</summary>
    /// <param name="defaultStore">used when SRLM_STORE is unset (e.g. "sqlite://srlm.db" for `srlm run`); null makes SRLM_STORE required.</param>
    public static IServiceCollection AddSrlmInfrastructure(this IServiceCollection services, IConfiguration configuration, string? defaultStore = null)
    {
        var options = services.FindSrlmOptions() ?? SrlmOptions.FromConfiguration(configuration);
        services.TryAddSingleton(options);

        // The device every model of this process is loaded on: SRLM_DEVICE=cuda without a GPU libtorch sees stops the start.
        try { Srlm.Model.TorchRuntime.UseDevice(options.Device); }
        catch (ArgumentException e) { throw new SrlmConfigurationException(e.Message); }

        if (options.Threads is { } threads)
        {
            Environment.SetEnvironmentVariable("SRLM_THREADS", threads.ToString(System.Globalization.CultureInfo.InvariantCulture));
            Srlm.Model.TorchRuntime.Initialise();
        }

        if (!services.Any(d => d.ServiceType == typeof(IArtifactStore)))
        {
            var set = OpenStores(configuration, defaultStore);
            services.AddSingleton(_ => set); // factory registration: the container disposes it at shutdown
            services.AddSingleton(sp => sp.GetRequiredService<StoreSet>().Artifacts);
            services.AddSingleton(sp => sp.GetRequiredService<StoreSet>().Checkpoints);
        }

        services.AddLogging(b =>
        {
            if (string.Equals(configuration["SRLM_LOG_FORMAT"], "json", StringComparison.OrdinalIgnoreCase))
                b.AddJsonConsole(o => { o.UseUtcTimestamp = true; o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ"; });
            else
                b.AddSimpleConsole(o => { o.SingleLine = true; o.UseUtcTimestamp = true; o.TimestampFormat = "HH:mm:ss.fff "; });
            b.AddFilter("MassTransit", LogLevel.Information);
            // The heartbeat logs each health change once; the health-check service would repeat it every interval.
            b.AddFilter("Microsoft.Extensions.Diagnostics.HealthChecks", LogLevel.Critical);
        });
        services.AddHostedService<StartupBanner>();

        services.AddHealthChecks().AddCheck<StoreHealthCheck>("store", HealthStatus.Unhealthy, ["ready"]);
        services.AddHostedService<HeartbeatService>();

        if (options.OtlpEndpoint is not null)
        {
            services.AddOpenTelemetry()
                .ConfigureResource(r => r.AddService("srlm-" + options.ServiceName))
                .WithTracing(t => t.AddSource("MassTransit").AddOtlpExporter(o => SetOtlpEndpoint(o, options.OtlpEndpoint, "traces")))
                .WithMetrics(m => m.AddMeter("MassTransit").AddOtlpExporter(o => SetOtlpEndpoint(o, options.OtlpEndpoint, "metrics")));
        }
        return services;
    }

    /// <summary>OTEL_EXPORTER_OTLP_ENDPOINT is a base URL: over gRPC (the default) it is used as is, over
    /// http/protobuf (OTEL_EXPORTER_OTLP_PROTOCOL) each signal goes to BASE/v1/traces or BASE/v1/metrics. An
    /// Endpoint set in code turns the SDK's own appending off, so the path is added here.</summary>
    public static void SetOtlpEndpoint(OpenTelemetry.Exporter.OtlpExporterOptions o, Uri endpoint, string signal) =>
        o.Endpoint = o.Protocol == OpenTelemetry.Exporter.OtlpExportProtocol.HttpProtobuf
            ? new Uri(endpoint.AbsoluteUri.TrimEnd('/') + "/v1/" + signal)
            : endpoint;

    /// <summary>Opens the stores named by SRLM_STORE / SRLM_CHECKPOINTS (any failure is one configuration line).</summary>
    public static StoreSet OpenStores(IConfiguration configuration, string? defaultStore = null)
    {
        var env = new System.Collections.Hashtable();
        foreach (var key in new[] { StoreFactory.StoreVariable, StoreFactory.CheckpointsVariable, StoreFactory.CheckpointCacheVariable })
            if (configuration[key] is { Length: > 0 } v) env[key] = v;
        try
        {
            return StoreFactory.FromEnvironmentAsync(env, defaultStore).GetAwaiter().GetResult();
        }
        catch (StoreConfigurationException e) { throw new SrlmConfigurationException(e.Message); }
        catch (StoreSchemaException e) { throw new SrlmConfigurationException(e.Message); }
        catch (Exception e) when (e is not SrlmConfigurationException)
        {
            var where = Redact.Uri(configuration[StoreFactory.StoreVariable] ?? defaultStore ?? "(unset)");
            throw new SrlmConfigurationException($"SRLM_STORE={where} cannot be opened: {Redact.Uri(e.Message)}");
        }
    }
}

/// <summary>The store answers a cheap read.</summary>
public sealed class StoreHealthCheck(IArtifactStore store) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        try
        {
            await store.GetRunAsync("~health-probe~", cancellationToken);
            return HealthCheckResult.Healthy(Redact.Uri(store.Location));
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            return HealthCheckResult.Unhealthy($"{Redact.Uri(store.Location)}: {Redact.Uri(e.Message)}");
        }
    }
}

/// <summary>Logs the process's configuration once at start, credentials redacted.</summary>
internal sealed partial class StartupBanner(SrlmOptions options, ILogger<StartupBanner> log) : Microsoft.Extensions.Hosting.IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        LogStarting(log, $"{options.Describe()} device={Srlm.Model.TorchRuntime.Describe(Srlm.Model.TorchRuntime.Device)}");
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    [LoggerMessage(EventId = 1000, Level = LogLevel.Information, Message = "starting: {Configuration}")]
    private static partial void LogStarting(ILogger logger, string configuration);
}
