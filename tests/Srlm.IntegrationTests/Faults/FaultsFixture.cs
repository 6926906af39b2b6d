namespace Srlm.IntegrationTests.Faults;

/// <summary>What the fault tests share: one private broker node (restartable; every test gets its own virtual host)
/// and, started on first use, one completed multi-process smoke run (two judge replicas) that the read-only checks
/// (audit, journal, lineage) and the redelivery test (on a copy) look at, so CI pays for it once.</summary>
public sealed class FaultsFixture : IAsyncLifetime
{
    private readonly RestartableRabbitMqFixture _broker = new();
    private readonly SemaphoreSlim _gate = new(1, 1);
    private Task<CompletedRun>? _completed;

    public Task InitializeAsync() => _broker.InitializeAsync();

    public PrivateRabbitMqNode Require() => _broker.Require();

    /// <summary>The shared completed run (started by the first test that asks; later ones wait for the same one).</summary>
    public async Task<CompletedRun> CompletedRunAsync(ITestOutputHelper output)
    {
        await _gate.WaitAsync();
        try { _completed ??= CompletedRun.StartAsync(Require(), output); }
        finally { _gate.Release(); }
        return await _completed;
    }

    public async Task DisposeAsync()
    {
        if (_completed is { IsCompletedSuccessfully: true }) await _completed.Result.DisposeAsync();
        await _broker.DisposeAsync();
    }
}

/// <summary>A finished run whose services have been stopped: its store and checkpoints stay for reading.</summary>
public sealed class CompletedRun : IAsyncDisposable
{
    private CompletedRun(MultiProcessRun run, TimeSpan elapsed)
    {
        Run = run;
        Elapsed = elapsed;
    }

    public MultiProcessRun Run { get; }
    public string RunId => Run.RunId!;
    public TimeSpan Elapsed { get; }

    public static async Task<CompletedRun> StartAsync(PrivateRabbitMqNode node, ITestOutputHelper output)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var run = await MultiProcessRun.CreateAsync(node, "shared", output);
        try
        {
            await run.StartServicesAsync(judges: 2);
            await run.StartRunAsync();
            await run.AssertCompletesAsync(TimeSpan.FromMinutes(8));
            // Completed is stored at the last hand-off; the evaluation of the last checkpoint may still be under way.
            await run.WaitForQuiescenceAsync();
            // Stop the services: the checks read the store, and the other tests get the CPU.
            foreach (var p in run.Harness.Processes) await p.StopAsync();
            run.Log($"shared run {run.RunId} completed in {sw.Elapsed.TotalSeconds:F0} s");
            return new CompletedRun(run, sw.Elapsed);
        }
        catch
        {
            await run.DisposeAsync();
            throw;
        }
    }

    /// <summary>A consistent copy of the store (VACUUM INTO) for a test that changes it.</summary>
    public string CopyStore(string path)
    {
        using var c = new SqliteConnection($"Data Source={Run.StorePath};Mode=ReadOnly;Pooling=False");
        c.Open();
        using var cmd = c.CreateCommand();
        cmd.CommandText = "VACUUM INTO $p";
        cmd.Parameters.AddWithValue("$p", path);
        cmd.ExecuteNonQuery();
        return path;
    }

    public ValueTask DisposeAsync() => Run.DisposeAsync();
}

[CollectionDefinition(Name)]
public sealed class FaultsCollection : ICollectionFixture<FaultsFixture>
{
    public const string Name = "faults (multi-process, real broker)";
}
