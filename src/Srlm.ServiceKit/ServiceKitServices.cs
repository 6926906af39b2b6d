using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Srlm.ServiceKit;

/// <summary>What every service needs besides the store (AddSrlmInfrastructure): the spec cache, the model
/// provider (checkpoint store + model cache; a host may register its own IModelProvider first).</summary>
public static class ServiceKitServices
{
    public static IServiceCollection AddServiceKit(this IServiceCollection services)
    {
        services.TryAddSingleton<RunSpecCache>();
        services.TryAddSingleton<IModelProvider, CheckpointModelProvider>();
        // External endpoints (spec models.prompt_model / evaluation.judge_model as {"endpoint": ...}); a host or test may
        // register its own EndpointOptions, else SRLM_ENDPOINT_* decide.
        // SRLM_ENDPOINT_* are read now, so a bad value stops the host's start with one line naming the variable.
        EndpointOptions fromEnvironment;
        try { fromEnvironment = EndpointOptions.FromEnvironment(); }
        catch (ArgumentException e) { throw new Srlm.Messaging.Configuration.SrlmConfigurationException(e.Message); }
        services.TryAddSingleton(sp => new ExternalModels(sp.GetRequiredService<Srlm.Storage.IArtifactStore>(),
            sp.GetService<Microsoft.Extensions.Logging.ILoggerFactory>() ?? Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance,
            sp.GetService<EndpointOptions>() ?? fromEnvironment));
        return services;
    }
}
