namespace Srlm.IntegrationTests.Faults;

/// <summary>One run of the pipeline as separate OS processes: the service hosts (ServiceHarness) on their own virtual
/// host of the shared private broker (so tests never see each other's messages), a SQLite store and a checkpoint folder
/// in a temp folder, training state under SRLM_JOBS_DIR, SRLM_THREADS=1 per process. The CLI (`srlm start`, `status`,
/// ...) runs as a process too; the test reads the store directly for its polling.</summary>
public sealed class MultiProcessRun : IAsyncDisposable
{
    private readonly PrivateRabbitMqNode _node;
    private readonly ITestOutputHelper? _output;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private SqliteArtifactStore? _store;

    private MultiProcessRun(PrivateRabbitMqNode node, string vhost, string folder, ITestOutputHelper? output)
    {
        _node = node;
        _output = output;
        VirtualHost = vhost;
        Folder = folder;
        AmqpUri = $"amqp://guest:guest@127.0.0.1:{node.AmqpPort}/{Uri.EscapeDataString(vhost)}";
        Directory.CreateDirectory(Path.Combine(folder, "logs"));
        Harness = new ServiceHarness(new Dictionary<string, string>
        {
            ["SRLM_BUS"] = AmqpUri,
            ["SRLM_STORE"] = "sqlite://" + StorePath,
            ["SRLM_CHECKPOINTS"] = Path.Combine(folder, "checkpoints"),
            ["SRLM_JOBS_DIR"] = JobsDirectory,
            ["SRLM_THREADS"] = "1",
            ["SRLM_HEALTH_INTERVAL_S"] = "2",
            // A killed trainer's job is taken over by the next trainer after 6 s without a heartbeat (default 2 min).
            ["SRLM_JOB_STALE_S"] = "6",
        }, Path.Combine(folder, "logs"));
    }

    public string Folder { get; }
    public string VirtualHost { get; }
    public string AmqpUri { get; }
    public string StorePath => Path.Combine(Folder, "srlm.db");
    public string JobsDirectory => Path.Combine(Folder, "jobs");
    public ServiceHarness Harness { get; }
    public string? RunId { get; private set; }
    public PrivateRabbitMqNode Node => _node;

    /// <summary>A fresh virtual host on the node and a fresh folder.</summary>
    public static async Task<MultiProcessRun> CreateAsync(PrivateRabbitMqNode node, string name, ITestOutputHelper? output = null)
    {
        var vhost = $"{name}-{Guid.NewGuid().ToString("N")[..6]}";
        var (rc, text) = await node.CtlAsync(TimeSpan.FromSeconds(180), "add_vhost", vhost);
        if (rc != 0) throw new InvalidOperationException($"rabbitmqctl add_vhost {vhost}: {text}");
        (rc, text) = await node.CtlAsync(TimeSpan.FromSeconds(180), "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*");
        if (rc != 0) throw new InvalidOperationException($"rabbitmqctl set_permissions -p {vhost}: {text}");
        var folder = Directory.CreateTempSubdirectory($"srlm-fault-{name}-").FullName;
        return new MultiProcessRun(node, vhost, folder, output);
    }

    public void Log(string line)
    {
        try { _output?.WriteLine($"[{_clock.Elapsed.TotalSeconds,6:F1} s] {line}"); }
        catch (InvalidOperationException) { } // the test that started a shared run has finished
    }

    /// <summary>Generator, pairbuilder and trainer once, the judge <paramref name="judges"/> times; returns when every
    /// one reports healthy (its bus started: in a fresh virtual host the queues exist only from then on, and a message
    /// published before its consumers' queue is bound is dropped by the broker).</summary>
    /// <param name="trainerFaults">when given, the trainer runs in the fault host with these faults (SRLM_TEST_*).</param>
    public async Task StartServicesAsync(int judges = 1, IReadOnlyDictionary<string, string>? trainerFaults = null, int generators = 1)
    {
        for (int i = 0; i < generators; i++) Harness.Start("generator");
        for (int i = 0; i < judges; i++) Harness.Start("judge");
        Harness.Start("pairbuilder");
        if (trainerFaults is null) Harness.Start("trainer");
        else Harness.StartWithFaults("trainer", trainerFaults);
        await WaitHealthyAsync(Harness.Processes);
    }

    public async Task WaitHealthyAsync(IEnumerable<ServiceProcess> processes)
    {
        var pending = processes.ToList();
        await WaitUntilAsync(async () =>
        {
            var probes = await Task.WhenAll(pending.Select(p => p.ProbeHealthAsync()));
            pending = pending.Where((_, i) => probes[i].ExitCode != 0).ToList();
            if (pending.Count > 0) await Task.Delay(500);
            return pending.Count == 0;
        }, TimeSpan.FromMinutes(6), "every service process is healthy"); // about 3 minutes were seen at a load average of 70
    }

    public ServiceProcess Service(string name) => Harness.Processes.Single(p => p.Name == name);

    /// <summary>`srlm start SPEC`; the run id is its last line.</summary>
    public async Task<string> StartRunAsync(string? spec = null)
    {
        var (rc, text) = await Harness.CliAsync(TimeSpan.FromMinutes(3), "start", spec ?? SmokeSpec);
        if (rc != 0) throw new InvalidOperationException($"srlm start exited {rc}: {text}");
        RunId = text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)[^1];
        Log($"started run {RunId}");
        return RunId;
    }

    public static string SmokeSpec => Path.Combine(ServiceBinaries.RepositoryRoot, "samples", "smoke", "run.json");

    /// <summary>A copy of samples/smoke (spec, seed files, M1) with the spec edited, for a test that needs other settings.</summary>
    public string SmokeSpecWith(Action<JsonObject> edit)
    {
        var from = Path.Combine(ServiceBinaries.RepositoryRoot, "samples", "smoke");
        var to = Path.Combine(Folder, "spec");
        foreach (var d in Directory.GetDirectories(from, "*", SearchOption.AllDirectories)) Directory.CreateDirectory(Path.Combine(to, Path.GetRelativePath(from, d)));
        foreach (var f in Directory.GetFiles(from, "*", SearchOption.AllDirectories)) File.Copy(f, Path.Combine(to, Path.GetRelativePath(from, f)), overwrite: true);
        var spec = JsonNode.Parse(File.ReadAllText(Path.Combine(from, "run.json")), documentOptions: new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true })!.AsObject();
        edit(spec);
        var path = Path.Combine(to, "run.json");
        File.WriteAllText(path, spec.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        return path;
    }

    /// <summary>The store as the services see it (SQLite in WAL mode: readable while they write).</summary>
    public async Task<IArtifactStore> StoreAsync() => _store ??= await SqliteArtifactStore.OpenAsync(StorePath);

    public async Task<RunRecord> RunAsync() => (await (await StoreAsync()).GetRunAsync(RunId!))!;

    /// <summary>Polls the store until the run is no longer running (or the timeout passes, which fails with the logs).</summary>
    public async Task<RunRecord> WaitForEndAsync(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            var run = await RunAsync();
            if (run.IsTerminal)
            {
                Log($"run {RunId} {run.State}{(run.FailureReason is null ? "" : ": " + run.FailureReason)}");
                return run;
            }
            await Task.Delay(500);
        }
        throw new TimeoutException($"run {RunId} still running after {timeout.TotalSeconds:F0} s\n{await StatusTextAsync()}\n{Harness.Logs()}");
    }

    /// <summary>Waits for the run to end and fails with status and logs unless it completed.</summary>
    public async Task AssertCompletesAsync(TimeSpan timeout)
    {
        var run = await WaitForEndAsync(timeout);
        Assert.True(run.State == RunState.Completed, $"run {RunId} ended {run.State}: {run.FailureReason}\n{await StatusTextAsync()}\n{Harness.Logs()}");
    }

    /// <summary>Polls until the condition holds; on timeout fails with the status and the logs.</summary>
    public async Task WaitUntilAsync(Func<Task<bool>> condition, TimeSpan timeout, string what)
    {
        try { await ServiceHarness.WaitUntilAsync(condition, timeout, what); }
        catch (TimeoutException e) { throw new TimeoutException($"{e.Message}\n{await StatusTextAsync()}\n{Harness.Logs()}"); }
        Log(what);
    }

    /// <summary>`srlm status RUN --json` (exit code and parsed report).</summary>
    public async Task<(int ExitCode, JsonElement Report)> StatusJsonAsync(string? store = null)
    {
        var args = new List<string> { "status", RunId!, "--json" };
        if (store is not null) args.AddRange(["--store", store]);
        var (rc, text) = await Harness.CliAsync(TimeSpan.FromMinutes(2), [.. args]);
        var start = text.IndexOf('{', StringComparison.Ordinal);
        if (start < 0) throw new InvalidOperationException($"srlm status printed no JSON (exit {rc}): {text}");
        using var doc = JsonDocument.Parse(text[start..]);
        return (rc, doc.RootElement.Clone());
    }

    public async Task<string> StatusTextAsync()
    {
        if (RunId is null) return "(no run)";
        var (rc, text) = await Harness.CliAsync(TimeSpan.FromMinutes(1), "status", RunId);
        return $"srlm status (exit {rc}):\n{text}";
    }

    /// <summary>Every candidate of the run has exactly K stored judgements, and status reports no duplicates.</summary>
    public async Task AssertEveryCandidateHasKJudgementsAsync()
    {
        var store = await StoreAsync();
        var (rc, status) = await StatusJsonAsync();
        Assert.Equal(0, rc);
        Assert.Equal("completed", status.GetProperty("state").GetString());
        var candidates = await store.ListAsync<CandidateRecord>(ArtifactQuery.OfRun(RunId!));
        Assert.NotEmpty(candidates);
        foreach (var it in status.GetProperty("iterations").EnumerateArray())
        {
            Assert.Equal(0, it.GetProperty("duplicates").GetInt64());
            var k = it.GetProperty("judge_samples").GetInt32();
            Assert.Equal(it.GetProperty("candidates").GetInt64() * k, it.GetProperty("judgments").GetInt64());
        }
        int kk = RunStatusKs(status);
        foreach (var c in candidates)
        {
            var js = await store.ListAsync<JudgementRecord>(ArtifactQuery.OfParent(c.Id));
            Assert.True(js.Count == kk, $"candidate {c.Id}: {js.Count} stored judgements, expected K = {kk}");
            Assert.Equal(Enumerable.Range(0, kk), js.Select(j => j.SampleIndex).Order());
        }
        Log($"{candidates.Count} candidates, each with exactly {kk} judgements; duplicates 0");
    }

    private static int RunStatusKs(JsonElement status) =>
        status.GetProperty("iterations").EnumerateArray().Select(i => i.GetProperty("judge_samples").GetInt32()).Distinct().Single();

    /// <summary>Consumed journal entries of one message type by the given process (its host name ends in /pid).</summary>
    public async Task<int> ConsumedByAsync(string service, int pid, string messageType)
    {
        var entries = await (await StoreAsync()).QueryJournalAsync(new JournalQuery { RunId = RunId, Direction = JournalDirection.Consumed });
        return entries.Count(e => e.MessageType == messageType && e.Host is { } h && h.EndsWith($"/{service}/{pid}", StringComparison.Ordinal));
    }

    /// <summary>Works with an existing run of the store (e.g. a copy) instead of starting one.</summary>
    public void UseRun(string runId) => RunId = runId;

    /// <summary>Every consumer queue of the four services and the fault recorder.</summary>
    public static IReadOnlyList<string> ServiceQueues { get; } = RabbitQueues.ConsumerQueues(new[]
    {
        typeof(Srlm.Generator.GeneratePromptsConsumer).Assembly, typeof(Srlm.Judge.JudgeCandidateConsumer).Assembly,
        typeof(Srlm.PairBuilder.CandidateJudgedConsumer).Assembly, typeof(Srlm.Trainer.PairsReadyConsumer).Assembly,
        typeof(Srlm.Messaging.Bus.RunFaultConsumer).Assembly,
    });

    /// <summary>Waits until the run's journal grows no more and no service queue holds a ready message, for a few
    /// seconds in a row (e.g. the evaluation of the last checkpoint after the run is marked completed).</summary>
    public async Task WaitForQuiescenceAsync(TimeSpan? timeout = null)
    {
        var store = await StoreAsync();
        long last = -1;
        int stable = 0;
        await WaitUntilAsync(async () =>
        {
            var n = await store.CountJournalAsync(new JournalQuery { RunId = RunId });
            await using var connection = await RabbitQueues.ConnectAsync(BusOptions.Parse(AmqpUri), "srlm-fault-test");
            var ready = (await RabbitQueues.DepthsAsync(connection, ServiceQueues)).Sum(q => (long)(q.Messages ?? 0));
            stable = n == last && ready == 0 ? stable + 1 : 0;
            last = n;
            await Task.Delay(750);
            return stable >= 5; // about 5 s with nothing new
        }, timeout ?? TimeSpan.FromMinutes(6), "quiescent: the journal stopped growing and every service queue is empty");
    }

    /// <summary>Ready messages and consumers of a queue of this run's virtual host (nulls when it does not exist).</summary>
    public async Task<QueueDepth> QueueAsync(string queue)
    {
        await using var connection = await RabbitQueues.ConnectAsync(BusOptions.Parse(AmqpUri), "srlm-fault-test");
        return (await RabbitQueues.DepthsAsync(connection, [queue]))[0];
    }

    public async ValueTask DisposeAsync()
    {
        Log("stopping services");
        await Harness.DisposeAsync();
        if (_store is not null) await _store.DisposeAsync();
        try { await _node.CtlAsync(TimeSpan.FromSeconds(30), "delete_vhost", VirtualHost); } catch (InvalidOperationException) { }
        if (Environment.GetEnvironmentVariable("SRLM_KEEP_TEST_DIRS") is null)
        {
            try { Directory.Delete(Folder, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }
}
