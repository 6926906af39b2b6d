namespace Srlm.Messaging.Hosting;

/// <summary>The shared main of the service hosts (srlm-generator, srlm-judge, ...): `--health` probes a running
/// instance through its heartbeat file (exit 0 healthy, 1 not); otherwise the environment is validated (one
/// line and exit 2 on a mistake) and the host runs until stopped.</summary>
public static class SrlmHost
{
    public static async Task<int> RunAsync(string[] args, string serviceName, Action<HostApplicationBuilder> configure)
    {
        if (args.Contains("--health"))
        {
            try
            {
                var env = new ConfigurationBuilder().AddEnvironmentVariables().Build();
                var (healthy, reason) = HealthProbe.Check(SrlmOptions.FromConfiguration(env, serviceName).Health);
                Console.WriteLine($"srlm-{serviceName}: {(healthy ? "healthy" : "unhealthy")}: {reason}");
                return healthy ? 0 : 1;
            }
            catch (SrlmConfigurationException e)
            {
                Console.Error.WriteLine($"srlm-{serviceName}: {e.Message}");
                return 1;
            }
        }

        IHost host;
        try
        {
            var builder = Host.CreateApplicationBuilder(args);
            var options = SrlmOptions.FromConfiguration(builder.Configuration, serviceName);
            if (!options.BusConfigured)
                throw new SrlmConfigurationException("SRLM_BUS is not set: a service host needs amqp://user:pass@host:port/vhost (or inmemory for a lone test)");
            builder.Services.AddSingleton(options);
            configure(builder);
            host = builder.Build();
        }
        catch (SrlmConfigurationException e)
        {
            Console.Error.WriteLine($"srlm-{serviceName}: {e.Message}");
            return 2;
        }
        await host.RunAsync();
        return 0;
    }
}
