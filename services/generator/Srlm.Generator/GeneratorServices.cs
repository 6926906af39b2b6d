using Microsoft.Extensions.DependencyInjection;

namespace Srlm.Generator;

/// <summary>The generator service's registration (prompt generation, candidate sampling and evaluation).</summary>
public static class GeneratorServices
{
    /// <summary>Evaluators (IAnswerEvaluator) and the model provider are registered by the host.</summary>
    public static IServiceCollection AddGenerator(this IServiceCollection services) => services.AddServiceKit();

    public static IBusRegistrationConfigurator AddGeneratorConsumers(this IBusRegistrationConfigurator bus)
    {
        bus.AddConsumer<IterationStartedConsumer, IterationStartedConsumerDefinition>();
        bus.AddConsumer<GeneratePromptsConsumer, GeneratePromptsConsumerDefinition>();
        bus.AddConsumer<GenerateResponsesConsumer, GenerateResponsesConsumerDefinition>();
        bus.AddConsumer<CheckpointReadyConsumer, CheckpointReadyConsumerDefinition>();
        bus.AddConsumer<EvaluateCheckpointConsumer, EvaluateCheckpointConsumerDefinition>();
        return bus;
    }
}
