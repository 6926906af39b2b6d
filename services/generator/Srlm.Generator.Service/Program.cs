// Host of the generator service: shared infrastructure (environment, store, logs, health) plus the bus with the
// service's consumers. The service itself lives in the Srlm.Generator library, so the same code runs in its own
// process or container and inside `srlm run`. `srlm-generator --health` probes a running instance.
// Evaluation (EvaluateCheckpoint) runs here and grades answers with the task families' checkers, which only a
// host may register: the Srlm.Generator library never references Srlm.Tasks (ServiceIndependenceTests).
using Srlm.Generator;
using Srlm.Messaging.Bus;
using Srlm.Messaging.Hosting;

return await SrlmHost.RunAsync(args, "generator", builder =>
{
    builder.Services.AddSrlmInfrastructure(builder.Configuration);
    builder.Services.AddSrlmBus(builder.Configuration, bus => bus.AddGeneratorConsumers());
    builder.Services.AddGenerator();
    foreach (var family in TaskFamilies.All) builder.Services.AddSingleton<IAnswerEvaluator>(new TaskFamilyEvaluator(family));
});
