// Host of the pipeline benchmark's judge replicas (`srlm bench pipeline` starts one process per replica): the judge
// service's own registration (JudgeServices.AddJudgeService, as srlm-judge), with the zero-cost scorer registered
// first (the judge's TryAdd keeps it) and the store wrapped in a call counter.
using Srlm.Bench.JudgeHost;
using Srlm.Judge;
using Srlm.Messaging.Hosting;

return await SrlmHost.RunAsync(args, "judge", builder =>
{
    builder.Services.AddSingleton<IModelProvider, ZeroCostScorer>();
    builder.Services.AddJudgeService(builder.Configuration);
    StoreCallCounter.Decorate(builder.Services, builder.Configuration);
});
