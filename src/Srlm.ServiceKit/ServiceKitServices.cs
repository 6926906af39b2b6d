using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Srlm.ServiceKit;

/// <summary>What every service needs besides the store (AddSrlmInfrastructure): the spec cache and the model
/// provider (checkpoint store + model cache; a host may register its own IModelProvider first).</summary>
public static class ServiceKitServices
{
    public static IServiceCollection AddServiceKit(this IServiceCollection services)
    {
        services.TryAddSingleton<RunSpecCache>();
        services.TryAddSingleton<IModelProvider, CheckpointModelProvider>();
        return services;
    }
}
