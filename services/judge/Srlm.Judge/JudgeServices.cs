using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Srlm.ServiceKit;

namespace Srlm.Judge;

/// <summary>The judge service's registration: its services here, its consumers on the bus.</summary>
public static class JudgeServices
{
    /// <summary>What the judge needs besides the store (AddSrlmInfrastructure): the service kit (spec cache, model provider).</summary>
    public static IServiceCollection AddJudge(this IServiceCollection services) => services.AddServiceKit();

    public static IBusRegistrationConfigurator AddJudgeConsumers(this IBusRegistrationConfigurator bus)
    {
        bus.AddConsumer<JudgeCandidateConsumer, JudgeCandidateConsumerDefinition>();
        return bus;
    }
}
