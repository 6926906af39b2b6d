using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Srlm.Trainer;

public static class TrainerServices
{
    /// <summary>The trainer: job signal, status, the hosted worker. The runner (ITrainingJobRunner, default
    /// LibraryTrainingRunner), TrainingWorkerOptions and ITrainingJobHooks (default none; only the fault tests' host
    /// registers others) may be registered by the host first.</summary>
    public static IServiceCollection AddTrainer(this IServiceCollection services, TrainingWorkerOptions? options = null)
    {
        services.AddServiceKit();
        if (options is not null) services.AddSingleton(options);
        else services.TryAddSingleton(new TrainingWorkerOptions());
        services.TryAddSingleton<TrainingJobSignal>();
        services.TryAddSingleton<TrainingStatus>();
        services.TryAddSingleton<ITrainingJobRunner, LibraryTrainingRunner>();
        services.TryAddSingleton(TrainingJobHooks.None);
        services.AddHostedService<TrainingWorker>();
        return services;
    }

    public static IBusRegistrationConfigurator AddTrainerConsumers(this IBusRegistrationConfigurator bus)
    {
        bus.AddConsumer<RunStartedConsumer, RunStartedConsumerDefinition>();
        bus.AddConsumer<PairsReadyConsumer, PairsReadyConsumerDefinition>();
        return bus;
    }
}
