// Host of the trainer service: shared infrastructure (environment, store, logs, health) plus the bus with the
// service's consumers. The service itself lives in the Srlm.Trainer library, so the same code runs in its own
// process or container and inside `srlm run`. `srlm-trainer --health` probes a running instance.
using Srlm.Trainer;
using Srlm.Messaging.Bus;
using Srlm.Messaging.Hosting;

return await SrlmHost.RunAsync(args, "trainer", builder =>
{
    builder.Services.AddSrlmInfrastructure(builder.Configuration);
    builder.Services.AddSrlmBus(builder.Configuration, bus => bus.AddTrainerConsumers());
    // SRLM_JOBS_DIR, SRLM_JOB_STALE_S: where resumable training state lives and when a dead worker's job is taken over.
    builder.Services.AddTrainer(TrainingWorkerOptions.FromEnvironment(k => builder.Configuration[k]));
});
