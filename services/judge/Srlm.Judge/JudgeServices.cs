using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Srlm.Judge;

/// <summary>The judge service's registration: its services here, its consumers on the bus.</summary>
public static class JudgeServices
{
    /// <summary>What the judge needs besides the store (AddSrlmInfrastructure): the spec cache and the model
    /// provider (checkpoint store + model cache; a host may register its own IModelProvider first).</summary>
    public static IServiceCollection AddJudge(this IServiceCollection services)
    {
        services.TryAddSingleton<RunSpecCache>();
        services.TryAddSingleton<IModelProvider, CheckpointModelProvider>();
        return services;
    }

    public static IBusRegistrationConfigurator AddJudgeConsumers(this IBusRegistrationConfigurator bus)
    {
        bus.AddConsumer<JudgeCandidateConsumer, JudgeCandidateConsumerDefinition>();
        return bus;
    }
}
