using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Srlm.Messaging.Hosting;

namespace Srlm.Judge;

/// <summary>The judge service's registration: its services here, its consumers on the bus.</summary>
public static class JudgeServices
{
    /// <summary>The judge service host's whole registration (srlm-judge calls it, and so does the pipeline benchmark's
    /// srlm-bench-judge, so what the benchmark measures is the service's own wiring): shared infrastructure from the
    /// environment (store, logs, health), the bus with the judge's consumers, the judge's services.</summary>
    public static IServiceCollection AddJudgeService(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddSrlmInfrastructure(configuration);
        services.AddSrlmBus(configuration, bus => bus.AddJudgeConsumers());
        return services.AddJudge();
    }

    /// <summary>What the judge needs besides the store (AddSrlmInfrastructure): the service kit (spec cache, model provider).</summary>
    public static IServiceCollection AddJudge(this IServiceCollection services) => services.AddServiceKit();

    public static IBusRegistrationConfigurator AddJudgeConsumers(this IBusRegistrationConfigurator bus)
    {
        bus.AddConsumer<JudgeCandidateConsumer, JudgeCandidateConsumerDefinition>();
        return bus;
    }
}
