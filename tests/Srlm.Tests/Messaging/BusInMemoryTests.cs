namespace Srlm.Tests.Messaging;

/// <summary>The srlm bus wiring on MassTransit's in-memory transport with a real SQLite store: retries, parking,
/// fault recording, the run guard and the journal behave as on RabbitMQ (the integration tests repeat the
/// important ones on a real broker).</summary>
public sealed class BusInMemoryTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(20);

    private static async Task<(TestBusHost Host, Calls Calls)> StartAsync(Action<IBusRegistrationConfigurator> consumers)
    {
        var calls = new Calls();
        var host = await TestBusHost.StartAsync("inmemory", consumers, s => s.AddSingleton(calls));
        return (host, calls);
    }

    [Fact]
    public async Task A_consumed_message_is_journaled_as_published_and_consumed_with_its_envelope()
    {
        var (host, calls) = await StartAsync(x => x.AddTestConsumer<EchoConsumer<IterationStarted>>());
        await using var _ = host;
        await host.Store.CreateRunAsync("run-a", "{}", 1);
        var message = new IterationStarted { RunId = "run-a", Iteration = 2, CheckpointId = "run-a/m2" };
        await host.Bus.Publish(message);

        await TestBusHost.WaitUntilAsync(async () =>
            await host.Store.CountJournalAsync(new JournalQuery { RunId = "run-a", Direction = JournalDirection.Consumed }) >= 1, Wait, "consumed entry");
        Assert.Equal(message, Assert.Single(calls.Handled));

        var published = Assert.Single(await host.Store.QueryJournalAsync(new JournalQuery { RunId = "run-a", Direction = JournalDirection.Published }));
        var consumed = Assert.Single(await host.Store.QueryJournalAsync(new JournalQuery { RunId = "run-a", Direction = JournalDirection.Consumed }));
        Assert.Equal(published.MessageId, consumed.MessageId);
        Assert.Equal("Srlm.Contracts.IterationStarted", consumed.MessageType);
        Assert.Equal(2, consumed.Iteration);
        Assert.Equal("echo-iteration-started", consumed.Endpoint);
        Assert.NotNull(consumed.ConversationId);
        Assert.Contains("test", consumed.Host);
        Assert.Contains("\"checkpointId\":\"run-a/m2\"", consumed.BodyJson);
    }

    [Fact]
    public async Task A_failing_message_is_tried_four_times_then_recorded_and_the_run_fails_with_the_reason()
    {
        var (host, calls) = await StartAsync(x => x.AddTestConsumer<AlwaysFailsConsumer<GeneratePrompts>>());
        await using var _ = host;
        await host.Store.CreateRunAsync("run-b", "{}", 1);
        await host.Bus.Publish(new GeneratePrompts { RunId = "run-b", Iteration = 1, CheckpointId = "run-b/m1", Shard = 3, ShardCount = 4 });

        await TestBusHost.WaitUntilAsync(async () => (await host.Store.GetRunAsync("run-b"))!.State == RunState.Failed, Wait, "run failed");
        Assert.Equal(1 + 3, calls.Attempts);
        var error = Assert.Single(await host.Store.ListErrorsAsync("run-b"));
        Assert.Equal("always-fails-generate-prompts_error", error.Queue);
        Assert.Contains("GeneratePrompts of run run-b cannot be handled", error.Reason);
        Assert.Equal("System.InvalidOperationException", error.ExceptionType);
        Assert.Equal(1, error.Iteration);
        var run = await host.Store.GetRunAsync("run-b");
        Assert.Contains("GeneratePrompts of run run-b cannot be handled", run!.FailureReason);
        Assert.Contains("always-fails-generate-prompts_error", run.FailureReason);
        await TestBusHost.WaitUntilAsync(async () =>
            await host.Store.CountJournalAsync(new JournalQuery { RunId = "run-b", MessageType = "Srlm.Contracts.RunFailed" }) >= 1, Wait, "RunFailed journaled");
        await TestBusHost.WaitUntilAsync(async () =>
            (await host.Store.QueryJournalAsync(new JournalQuery { RunId = "run-b", MessageType = "MassTransit.Fault<Srlm.Contracts.GeneratePrompts>" }))
            .Any(e => e.Direction == JournalDirection.Consumed && e.Endpoint == "run-fault" && e.Iteration == 1), Wait, "the fault journaled as consumed, with its run");
    }

    [Fact]
    public async Task An_error_a_retry_cannot_fix_is_parked_after_one_attempt()
    {
        var (host, calls) = await StartAsync(x => x.AddTestConsumer<PermanentFailureConsumer<GenerateResponses>>());
        await using var _ = host;
        await host.Store.CreateRunAsync("run-c", "{}", 1);
        await host.Bus.Publish(new GenerateResponses { RunId = "run-c", Iteration = 1, CheckpointId = "x", PromptId = "other/i1/p0-0" });

        await TestBusHost.WaitUntilAsync(async () => (await host.Store.ListErrorsAsync("run-c")).Count == 1, Wait, "error recorded");
        Assert.Equal(1, calls.Attempts);
        Assert.Contains("MalformedMessageException", (await host.Store.ListErrorsAsync("run-c"))[0].Reason);
    }

    [Fact]
    public async Task A_message_for_an_unknown_run_is_parked_without_reaching_the_consumer_and_work_goes_on()
    {
        var (host, calls) = await StartAsync(x => x.AddTestConsumer<EchoConsumer<IterationStarted>>());
        await using var _ = host;
        await host.Bus.Publish(new IterationStarted { RunId = "no-such-run", Iteration = 1, CheckpointId = "c" });
        await TestBusHost.WaitUntilAsync(async () => (await host.Store.ListErrorsAsync("no-such-run")).Count == 1, Wait, "error recorded");
        var error = (await host.Store.ListErrorsAsync("no-such-run"))[0];
        Assert.Contains("unknown run 'no-such-run'", error.Reason);
        Assert.Equal(0, calls.Attempts);

        await host.Store.CreateRunAsync("run-d", "{}", 1);
        await host.Bus.Publish(new IterationStarted { RunId = "run-d", Iteration = 1, CheckpointId = "c" });
        await TestBusHost.WaitUntilAsync(() => Task.FromResult(calls.Attempts == 1), Wait, "next message consumed");
    }

    [Fact]
    public async Task Messages_of_a_cancelled_run_are_acknowledged_without_work()
    {
        var (host, calls) = await StartAsync(x => x.AddTestConsumer<EchoConsumer<IterationStarted>>());
        await using var _ = host;
        await host.Store.CreateRunAsync("run-e", "{}", 1);
        await host.Store.SetRunStateAsync("run-e", RunState.Cancelled);
        await host.Store.CreateRunAsync("run-f", "{}", 1);
        await host.Bus.Publish(new IterationStarted { RunId = "run-e", Iteration = 1, CheckpointId = "c" });
        await host.Bus.Publish(new IterationStarted { RunId = "run-f", Iteration = 1, CheckpointId = "c" });
        await TestBusHost.WaitUntilAsync(async () =>
            await host.Store.CountJournalAsync(new JournalQuery { Direction = JournalDirection.Consumed, MessageType = "Srlm.Contracts.IterationStarted" }) == 2, Wait, "both consumed");
        Assert.Equal("run-f", ((IterationStarted)Assert.Single(calls.Handled)).RunId);
        Assert.Empty(await host.Store.ListErrorsAsync());
    }

    [Fact]
    public async Task Replay_republishes_a_journaled_slice_into_a_new_run()
    {
        var (host, calls) = await StartAsync(x => x.AddTestConsumer<EchoConsumer<IterationStarted>>());
        await using var _ = host;
        await host.Store.CreateRunAsync("run-r", "{}", 1);
        await host.Bus.Publish(new IterationStarted { RunId = "run-r", Iteration = 1, CheckpointId = "run-r/m1" });
        await host.Bus.Publish(new IterationStarted { RunId = "run-r", Iteration = 2, CheckpointId = "run-r/m2" });
        await TestBusHost.WaitUntilAsync(() => Task.FromResult(calls.Handled.Count == 2), Wait, "both handled");

        var items = await Srlm.Messaging.Operations.JournalReplay.SelectAsync(host.Store, "run-r", iteration: 2, type: "IterationStarted");
        Assert.Equal(2, Assert.Single(items).Entry.Iteration);
        var stores = host.Host.Services.GetRequiredService<StoreSet>();
        await Srlm.Messaging.Operations.JournalReplay.CopyRunAsync(stores.Artifacts, stores.Checkpoints, "run-r", "run-s", items[0].Entry.Time,
            Srlm.Messaging.Operations.JournalReplay.InputsOf(items, "run-r"));
        await Srlm.Messaging.Operations.JournalReplay.PublishAsync(host.Bus, items, "run-r", "run-s");
        await TestBusHost.WaitUntilAsync(() => Task.FromResult(calls.Handled.Count == 3), Wait, "replayed message handled");
        Assert.Contains(new IterationStarted { RunId = "run-s", Iteration = 2, CheckpointId = "run-s/m2" }, calls.Handled);
        // The consumed entry is journaled after the consumer returns, so wait for it rather than race it.
        var consumed = new JournalQuery { RunId = "run-s", Direction = JournalDirection.Consumed };
        await TestBusHost.WaitUntilAsync(async () => await host.Store.CountJournalAsync(consumed) >= 1, Wait, "replayed message journaled");
        Assert.Equal(1, await host.Store.CountJournalAsync(consumed));
    }
}
