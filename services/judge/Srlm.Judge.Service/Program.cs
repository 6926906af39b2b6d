// Host of the judge service: shared infrastructure (environment, store, logs, health) plus the bus with the
// service's consumers. The service itself lives in the Srlm.Judge library, so the same code runs in its own
// process or container and inside `srlm run`. `srlm-judge --health` probes a running instance.
using Srlm.Judge;
using Srlm.Messaging.Hosting;

return await SrlmHost.RunAsync(args, "judge", builder => builder.Services.AddJudgeService(builder.Configuration));
