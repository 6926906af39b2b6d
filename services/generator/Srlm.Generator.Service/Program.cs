// Host of the generator service: shared infrastructure (environment, store, logs, health) plus the bus with the
// service's consumers. The service itself lives in the Srlm.Generator library, so the same code runs in its own
// process or container and inside `srlm run`. `srlm-generator --health` probes a running instance.
// The evaluation hosted here grades held-out answers with the task families' checkers (spec.evaluation.evaluator):
// the host registers them, as `srlm run` does; the service library itself never references the task checkers.
using Microsoft.Extensions.DependencyInjection;
using Srlm.Generator;
using Srlm.Messaging.Bus;
using Srlm.Messaging.Hosting;
using Srlm.Tasks;

return await SrlmHost.RunAsync(args, "generator", builder =>
{
    builder.Services.AddSrlmInfrastructure(builder.Configuration);
    builder.Services.AddSrlmBus(builder.Configuration, bus => bus.AddGeneratorConsumers());
    builder.Services.AddGenerator();
    foreach (var family in TaskFamilies.All) builder.Services.AddSingleton<IAnswerEvaluator>(new TaskFamilyEvaluator(family));
});

/// <summary>A task family's checker as an evaluator.</summary>
internal sealed class TaskFamilyEvaluator(ITaskFamily family) : IAnswerEvaluator
{
    public string Name => family.Name;

    public bool? IsCorrect(string instruction, string answer) => family.Check(instruction, answer)?.Correct;
}
