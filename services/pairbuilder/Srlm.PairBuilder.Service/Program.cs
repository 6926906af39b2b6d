// Host of the pairbuilder service: shared infrastructure (environment, store, logs, health) plus the bus with the
// service's consumers. The service itself lives in the Srlm.PairBuilder library, so the same code runs in its own
// process or container and inside `srlm run`. `srlm-pairbuilder --health` probes a running instance.
using Srlm.PairBuilder;
using Srlm.Messaging.Bus;
using Srlm.Messaging.Hosting;

return await SrlmHost.RunAsync(args, "pairbuilder", builder =>
{
    builder.Services.AddSrlmInfrastructure(builder.Configuration);
    builder.Services.AddSrlmBus(builder.Configuration, bus => bus.AddPairBuilderConsumers());
    builder.Services.AddPairBuilder();
});
