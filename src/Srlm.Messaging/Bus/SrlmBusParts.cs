namespace Srlm.Messaging.Bus;

/// <summary>What every srlm bus has besides the service's own consumers.</summary>
internal static class SrlmBusParts
{
    public static void Add(IBusRegistrationConfigurator x)
    {
        x.AddConsumer<RunFaultConsumer, RunFaultConsumerDefinition>();
        x.AddSingleton<ReceiveFaultRecorder>();
    }

    /// <summary>Filters on every endpoint, added before the endpoints are configured: the journal (outermost, so
    /// it sees the final outcome after retries) and the run guard.</summary>
    public static void Configure(IBusRegistrationContext context, IBusFactoryConfigurator cfg, bool recordFaults)
    {
        cfg.UseConsumeFilter(typeof(JournalConsumeFilter<>), context);
        cfg.UseConsumeFilter(typeof(RunGuardFilter<>), context);
        cfg.UsePublishFilter(typeof(JournalPublishFilter<>), context);
        cfg.UseSendFilter(typeof(JournalSendFilter<>), context);
        if (recordFaults) cfg.ConnectReceiveObserver(context.GetRequiredService<ReceiveFaultRecorder>());
    }
}
