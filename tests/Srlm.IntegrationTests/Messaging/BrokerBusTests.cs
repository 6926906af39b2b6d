namespace Srlm.IntegrationTests.Messaging;

/// <summary>The srlm bus on a real RabbitMQ broker (a private node): delivery, the journal, immediate retries,
/// parking in the _error queue with the reason, fault recording, malformed and unknown-run messages, requeue.</summary>
public sealed class BrokerBusTests(RabbitMqFixture fixture) : IClassFixture<RabbitMqFixture>
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);

    private async Task<(TestBusHost Host, Calls Calls)> StartAsync()
    {
        var broker = fixture.Require();
        var calls = new Calls();
        var host = await TestBusHost.StartAsync(broker.AmqpUri, x =>
        {
            x.AddTestConsumer<EchoConsumer<JudgeCandidate>>();
            x.AddTestConsumer<AlwaysFailsConsumer<PairsReady>>();
            x.AddTestConsumer<FlakyConsumer<CheckpointReady>>();
        }, s => s.AddSingleton(calls));
        return (host, calls);
    }

    private static async Task<string> RunAsync(IArtifactStore store)
    {
        var run = "run-" + Guid.NewGuid().ToString("N")[..8];
        await store.CreateRunAsync(run, "{}", 1);
        return run;
    }

    private async Task<IConnection> ConnectAsync() => await RabbitQueues.ConnectAsync(BusOptions.Parse(fixture.Require().AmqpUri), "srlm-test");

    [SkippableFact]
    public async Task A_message_crosses_the_broker_and_the_journal_holds_its_publish_and_consume()
    {
        var (host, calls) = await StartAsync();
        await using var _ = host;
        var run = await RunAsync(host.Store);
        await host.Bus.Publish(new JudgeCandidate { RunId = run, Iteration = 1, CheckpointId = run + "/m1", PromptId = run + "/i1/p0-0", CandidateId = run + "/i1/p0-0/c0" });

        await TestBusHost.WaitUntilAsync(async () =>
            await host.Store.CountJournalAsync(new JournalQuery { RunId = run, Direction = JournalDirection.Consumed }) == 1, Wait, "consumed and journaled");
        Assert.Single(calls.Handled);
        var published = Assert.Single(await host.Store.QueryJournalAsync(new JournalQuery { RunId = run, Direction = JournalDirection.Published }));
        var consumed = Assert.Single(await host.Store.QueryJournalAsync(new JournalQuery { RunId = run, Direction = JournalDirection.Consumed }));
        Assert.Equal(published.MessageId, consumed.MessageId);
        Assert.Equal("echo-judge-candidate", consumed.Endpoint);
        Assert.Equal(1, consumed.Iteration);
        Assert.Equal(published.ConversationId, consumed.ConversationId);
    }

    [SkippableFact]
    public async Task A_failing_message_is_retried_then_parked_in_its_error_queue_with_the_reason_and_the_run_fails()
    {
        var (host, calls) = await StartAsync();
        await using var _ = host;
        var run = await RunAsync(host.Store);
        await host.Bus.Publish(new PairsReady { RunId = run, Iteration = 2, CheckpointId = run + "/m2", DatasetId = run + "/i2/pairs", Pairs = 7 });

        await TestBusHost.WaitUntilAsync(async () => (await host.Store.GetRunAsync(run))!.State == RunState.Failed, Wait, "run failed");
        Assert.Equal(4, calls.Attempts); // 1 + 3 immediate retries
        var error = Assert.Single(await host.Store.ListErrorsAsync(run));
        Assert.Equal("always-fails-pairs-ready_error", error.Queue);
        Assert.Contains($"PairsReady of run {run} cannot be handled", error.Reason);
        Assert.Contains("cannot be handled", (await host.Store.GetRunAsync(run))!.FailureReason);

        // The message itself sits in the error queue, the reason in MassTransit's fault headers.
        await using var connection = await ConnectAsync();
        await using var channel = await connection.CreateChannelAsync();
        await TestBusHost.WaitUntilAsync(async () => (await RabbitQueues.DepthsAsync(connection, ["always-fails-pairs-ready_error"]))[0].Messages > 0, Wait, "message in the error queue");
        var parked = await channel.BasicGetAsync("always-fails-pairs-ready_error", autoAck: false);
        var headers = parked!.BasicProperties.Headers!;
        Assert.Contains("cannot be handled", Encoding.UTF8.GetString((byte[])headers["MT-Fault-Message"]!));
        Assert.Contains(run, Encoding.UTF8.GetString(parked.Body.Span));
        await channel.BasicNackAsync(parked.DeliveryTag, false, requeue: true);
    }

    [SkippableFact]
    public async Task A_message_for_an_unknown_run_is_parked_with_the_reason_and_the_service_keeps_working()
    {
        var (host, calls) = await StartAsync();
        await using var _ = host;
        await host.Bus.Publish(new JudgeCandidate { RunId = "ghost-run", Iteration = 1, CheckpointId = "c", PromptId = "p", CandidateId = "ghost-run/c" });
        await TestBusHost.WaitUntilAsync(async () => (await host.Store.ListErrorsAsync("ghost-run")).Count == 1, Wait, "error recorded");
        Assert.Contains("unknown run 'ghost-run'", (await host.Store.ListErrorsAsync("ghost-run"))[0].Reason);
        Assert.Equal(0, calls.Attempts);

        var run = await RunAsync(host.Store);
        await host.Bus.Publish(new JudgeCandidate { RunId = run, Iteration = 1, CheckpointId = "c", PromptId = "p", CandidateId = run + "/c" });
        await TestBusHost.WaitUntilAsync(() => Task.FromResult(calls.Handled.Count == 1), Wait, "next message handled");
    }

    [SkippableFact]
    public async Task A_malformed_message_is_parked_with_the_reason_the_run_fails_and_the_service_keeps_working()
    {
        var (host, calls) = await StartAsync();
        await using var _ = host;
        var run = await RunAsync(host.Store);
        await using var connection = await ConnectAsync();
        await using var channel = await connection.CreateChannelAsync();
        var props = new BasicProperties { ContentType = "application/vnd.masstransit+json", Persistent = true };
        // 1. Not JSON at all: parked with the serializer's reason (no run can be named).
        var garbage = Guid.NewGuid();
        await channel.BasicPublishAsync("", "echo-judge-candidate", false, new BasicProperties(props) { MessageId = garbage.ToString() }, Encoding.UTF8.GetBytes("this is not json {"));
        await TestBusHost.WaitUntilAsync(async () => (await host.Store.ListErrorsAsync()).Any(e => e.MessageId == garbage.ToString()), Wait, "unreadable message recorded");
        var unreadable = (await host.Store.ListErrorsAsync()).Single(e => e.MessageId == garbage.ToString());
        Assert.Equal("echo-judge-candidate_error", unreadable.Queue);
        Assert.False(string.IsNullOrWhiteSpace(unreadable.Reason));

        // 2. A JudgeCandidate envelope whose message lacks its required ids: parked, the run fails.
        var id = Guid.NewGuid();
        var body = $$$"""{"messageId":"{{{id}}}","messageType":["urn:message:Srlm.Contracts:JudgeCandidate"],"message":{"runId":"{{{run}}}","iteration":1}}""";
        await channel.BasicPublishAsync("", "echo-judge-candidate", false, new BasicProperties(props) { MessageId = id.ToString() }, Encoding.UTF8.GetBytes(body));

        await TestBusHost.WaitUntilAsync(async () => (await host.Store.ListErrorsAsync(run)).Count == 1, Wait, "error recorded");
        var error = (await host.Store.ListErrorsAsync(run))[0];
        Assert.Equal("echo-judge-candidate_error", error.Queue);
        Assert.Contains("missing required properties including: 'checkpointId', 'promptId', 'candidateId'", error.Reason);
        await TestBusHost.WaitUntilAsync(async () => (await host.Store.GetRunAsync(run))!.State == RunState.Failed, Wait, "run failed");
        Assert.Equal(0, calls.Attempts);
        IReadOnlyList<QueueDepth> depths = [];
        await TestBusHost.WaitUntilAsync(async () => (depths = await RabbitQueues.DepthsAsync(connection, ["echo-judge-candidate_error", "echo-judge-candidate_skipped"]))[0].Messages >= 2,
            Wait, $"both malformed messages in echo-judge-candidate_error ({string.Join(", ", depths)})");

        var run2 = await RunAsync(host.Store);
        await host.Bus.Publish(new JudgeCandidate { RunId = run2, Iteration = 1, CheckpointId = "c", PromptId = "p", CandidateId = run2 + "/c" });
        await TestBusHost.WaitUntilAsync(() => Task.FromResult(calls.Handled.Count == 1), Wait, "next message handled");
    }

    [SkippableFact]
    public async Task Errors_requeue_moves_a_parked_message_back_and_status_shows_queue_depths()
    {
        var (host, calls) = await StartAsync();
        await using var _ = host;
        var run = await RunAsync(host.Store);
        await host.Bus.Publish(new CheckpointReady { RunId = run, Iteration = 1, CheckpointId = run + "/m2", ParentCheckpointId = run + "/m1" });
        await TestBusHost.WaitUntilAsync(async () => (await host.Store.ListErrorsAsync(run)).Count == 1, Wait, "parked");

        // The real CLI, as its own process, against the same broker and store.
        var env = new Dictionary<string, string> { ["SRLM_BUS"] = fixture.Require().AmqpUri, ["SRLM_STORE"] = "sqlite://" + Path.Combine(host.Folder, "srlm.db") };
        await using var cli = new ServiceHarness(env);
        var last = "";
        for (var deadline = DateTime.UtcNow + Wait; !last.Contains("flaky-checkpoint-ready_error 1/0", StringComparison.Ordinal); await Task.Delay(500))
            if (DateTime.UtcNow > deadline) Assert.Fail($"status never showed flaky-checkpoint-ready_error 1/0: {last}");
            else last = (await cli.CliAsync(TimeSpan.FromSeconds(60), "status", run)).Output;
        var status = await cli.CliAsync(TimeSpan.FromSeconds(60), "status", run);
        Assert.Equal(1, status.ExitCode); // failed
        Assert.Contains("run-fault 0/1", status.Output);
        var list = await cli.CliAsync(TimeSpan.FromSeconds(60), "errors", "list", "--run", run);
        Assert.Contains("not readable yet", list.Output);

        calls.Failing = false;
        var requeue = await cli.CliAsync(TimeSpan.FromSeconds(60), "errors", "requeue", "--run", run);
        Assert.True(requeue.ExitCode == 0, requeue.Output);
        Assert.Contains("flaky-checkpoint-ready_error: 1 messages moved back to flaky-checkpoint-ready", requeue.Output);
        Assert.Contains($"run {run} reopened", requeue.Output);
        await TestBusHost.WaitUntilAsync(() => Task.FromResult(calls.Handled.Count == 1), Wait, "the requeued message handled");
        Assert.Empty(await host.Store.ListErrorsAsync(run));
        Assert.Single(await host.Store.ListErrorsAsync(run, includeRequeued: true));
        Assert.Equal(RunState.Running, (await host.Store.GetRunAsync(run))!.State);
    }
}
