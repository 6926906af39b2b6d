namespace Srlm.IntegrationTests.Messaging;

/// <summary>A service host as its own OS process against a private broker that the test stops and restarts:
/// the `--health` probe (what a Dockerfile HEALTHCHECK runs) follows broker connectivity, the service
/// reconnects and consumes again, and a SIGKILLed service is reported unhealthy until it is restarted.</summary>
public sealed class BrokerRestartTests(RestartableRabbitMqFixture fixture) : IClassFixture<RestartableRabbitMqFixture>
{
    private static async Task WaitForProbe(ServiceProcess service, ServiceHarness harness, int exitCode, TimeSpan timeout, string what)
    {
        (int ExitCode, string Output) last = default;
        try
        {
            await ServiceHarness.WaitUntilAsync(async () => (last = await service.ProbeHealthAsync()).ExitCode == exitCode, timeout, what);
        }
        catch (TimeoutException e)
        {
            throw new TimeoutException($"{e.Message}; last probe: {last.ExitCode} {last.Output}\n{harness.Logs()}");
        }
    }

    [SkippableFact]
    public async Task Health_follows_the_broker_and_a_service_process_reconnects_after_a_broker_restart()
    {
        var node = fixture.Require();
        var folder = Directory.CreateTempSubdirectory("srlm-restart-").FullName;
        var storeUri = "sqlite://" + Path.Combine(folder, "srlm.db");
        await using var harness = new ServiceHarness(new Dictionary<string, string>
        {
            ["SRLM_BUS"] = node.AmqpUri, ["SRLM_STORE"] = storeUri,
            ["SRLM_HEALTH_INTERVAL_S"] = "1", ["SRLM_HEALTH_MAX_AGE_S"] = "5",
        }, folder);
        var service = harness.Start("pairbuilder");
        await WaitForProbe(service, harness, 0, TimeSpan.FromSeconds(90), "healthy after start");

        await node.StopAsync();
        await WaitForProbe(service, harness, 1, TimeSpan.FromSeconds(30), "unhealthy while the broker is down");
        await node.StartAgainAsync();
        await WaitForProbe(service, harness, 0, TimeSpan.FromSeconds(90), "healthy again after the broker returned");

        // The reconnected process consumes again: a Fault<JudgeCandidate> put on its fault queue is recorded
        // by it (the test process runs no bus) and fails the run.
        await using var store = await StoreFactory.OpenArtifactStoreAsync(storeUri);
        await store.CreateRunAsync("restart-run", "{}", 1);
        await using (var connection = await RabbitQueues.ConnectAsync(BusOptions.Parse(node.AmqpUri), "srlm-test"))
        await using (var channel = await connection.CreateChannelAsync())
        {
            var id = Guid.NewGuid();
            var body = $$$"""
                {"messageId":"{{{id}}}","messageType":["urn:message:MassTransit:Fault[[Srlm.Contracts:JudgeCandidate]]","urn:message:MassTransit:Fault"],
                 "message":{"faultId":"{{{Guid.NewGuid()}}}","faultedMessageId":"{{{Guid.NewGuid()}}}","timestamp":"{{{DateTime.UtcNow:O}}}",
                   "exceptions":[{"exceptionType":"System.InvalidOperationException","message":"judge exploded"}],
                   "message":{"runId":"restart-run","iteration":1,"checkpointId":"restart-run/m1","promptId":"p","candidateId":"c"} } }
                """;
            var props = new BasicProperties { ContentType = "application/vnd.masstransit+json", MessageId = id.ToString(), Persistent = true };
            await channel.BasicPublishAsync("", "run-fault", false, props, Encoding.UTF8.GetBytes(body));
        }
        await ServiceHarness.WaitUntilAsync(async () => (await store.GetRunAsync("restart-run"))!.State == RunState.Failed,
            TimeSpan.FromSeconds(30), "the service process recorded the fault");
        Assert.Contains("judge exploded", (await store.ListErrorsAsync("restart-run"))[0].Reason);
        // Journaled as consumed by that process (the entry is appended right after the consumer returns).
        await ServiceHarness.WaitUntilAsync(async () =>
            (await store.QueryJournalAsync(new JournalQuery { RunId = "restart-run", Direction = JournalDirection.Consumed }))
            .Any(e => e.Host!.Contains($"/pairbuilder/{service.Pid}", StringComparison.Ordinal) && e.Endpoint == "run-fault"),
            TimeSpan.FromSeconds(10), "the fault journaled as consumed by the service process");

        // SIGKILL: no goodbye heartbeat, so the probe sees the heartbeat go stale; a restart is healthy again.
        service.Kill();
        await WaitForProbe(service, harness, 1, TimeSpan.FromSeconds(20), "unhealthy after SIGKILL");
        service.Start();
        await WaitForProbe(service, harness, 0, TimeSpan.FromSeconds(90), "healthy after restart");
    }
}
