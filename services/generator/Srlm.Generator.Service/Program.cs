// Host of the generator service: shared infrastructure (environment, store, logs, health) plus the bus with the
// service's consumers. The service itself lives in the Srlm.Generator library, so the same code runs in its own
// process or container and inside `srlm run`. `srlm-generator --health` probes a running instance.
using Srlm.Generator;
using Srlm.Messaging.Bus;
using Srlm.Messaging.Hosting;

return await SrlmHost.RunAsync(args, "generator", builder =>
{
    builder.Services.AddSrlmInfrastructure(builder.Configuration);
    builder.Services.AddSrlmBus(builder.Configuration, bus => bus.AddGeneratorConsumers());
    builder.Services.AddGenerator();
});
