namespace Srlm.Tests.Storage;

/// <summary>The conformance suite on a real SQLite file per test.</summary>
public sealed class SqliteArtifactStoreConformanceTests : ArtifactStoreConformance, IDisposable
{
    private readonly TempDir _dir = new();

    protected override async Task<IArtifactStore> OpenFreshAsync() =>
        await SqliteArtifactStore.OpenAsync(_dir.File($"{Guid.NewGuid():N}.db"), clock: Clock);

    protected override async Task<IArtifactStore> TamperSchemaVersionAndReopenAsync(IArtifactStore store, int version)
    {
        var path = ((SqliteArtifactStore)store).Path;
        await store.DisposeAsync();
        await using (var c = new SqliteConnection($"Data Source={path};Pooling=false"))
        {
            c.Open();
            using var cmd = c.CreateCommand();
            cmd.CommandText = $"UPDATE meta SET value='{version}' WHERE key='schema_version'";
            Assert.Equal(1, cmd.ExecuteNonQuery());
        }
        return await SqliteArtifactStore.OpenAsync(path);
    }

    public void Dispose() => _dir.Dispose();
}

/// <summary>SQLite-only properties: WAL, several writers on one file, refusal of foreign files.</summary>
public sealed class SqliteArtifactStoreTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task The_store_file_is_in_WAL_mode_and_records_its_schema_version()
    {
        var path = _dir.File("s.db");
        await using (var store = await SqliteArtifactStore.OpenAsync(path))
            Assert.Equal(SqliteArtifactStore.SchemaVersion, await store.ReadStoredSchemaVersionAsync());
        await using var c = new SqliteConnection($"Data Source={path};Pooling=false");
        c.Open();
        using var cmd = c.CreateCommand();
        cmd.CommandText = "PRAGMA journal_mode";
        Assert.Equal("wal", (string)cmd.ExecuteScalar()!);
    }

    [Fact]
    public async Task Two_store_instances_writing_one_file_concurrently_lose_nothing()
    {
        var path = _dir.File("shared.db");
        await using var a = await SqliteArtifactStore.OpenAsync(path);
        await using var b = await SqliteArtifactStore.OpenAsync(path);
        await a.CreateRunAsync("r", "{}", 1);
        // Each instance has its own connection pool: these are separate connections contending for the write lock.
        async Task Write(IArtifactStore s, int from)
        {
            for (var i = from; i < from + 150; i++)
            {
                var c = Make.Candidate("r", 1, $"p{i % 40}", i);
                await s.PutAsync(c);
                await s.AppendJournalAsync(Make.Journal("r", 1, $"m{i}", "GenerateResponses", JournalDirection.Consumed, DateTimeOffset.UtcNow));
            }
        }
        await Task.WhenAll(
            Task.Run(() => Write(a, 0)), Task.Run(() => Write(a, 100)),
            Task.Run(() => Write(b, 50)), Task.Run(() => Write(b, 150)));
        // Ids 0..299 overlap between writers; each must be stored exactly once.
        Assert.Equal(300, await a.CountAsync<CandidateRecord>(ArtifactQuery.OfRun("r", 1)));
        Assert.Equal(300, await b.CountJournalAsync(new JournalQuery { RunId = "r" }));
        Assert.Equal(0, (await b.GetIterationStatusAsync("r", 1)).Duplicates);
    }

    /// <summary>A python3 process that opens the store at <paramref name="path"/>, takes SQLite's write lock (BEGIN
    /// IMMEDIATE), inserts a metric of run <paramref name="runId"/>, holds the lock for <paramref name="holdSeconds"/>
    /// and commits; returned once it holds the lock (within 30 s).</summary>
    private static async Task<Process> HoldWriteLockAsync(string path, string runId, double holdSeconds)
    {
        var psi = new ProcessStartInfo("python3", ["-c", $$"""
            import sqlite3, time
            c = sqlite3.connect(r'{{path}}', isolation_level=None)
            c.execute('BEGIN IMMEDIATE')
            c.execute("INSERT INTO metrics(run_id, iteration, step, name, value) VALUES('{{runId}}', 0, 0, 'x', 1)")
            print('locked', flush=True)
            time.sleep({{holdSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture)}})
            c.execute('COMMIT')
            """]) { RedirectStandardOutput = true, RedirectStandardError = true };
        var holder = Process.Start(psi)!;
        Assert.Equal("locked", await holder.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(30)));
        return holder;
    }

    [Fact]
    public async Task A_write_waits_for_another_process_holding_the_write_lock()
    {
        var path = _dir.File("locked.db");
        await using var store = await SqliteArtifactStore.OpenAsync(path);
        // A second OS process takes the write lock for ~1.5 s.
        using var other = await HoldWriteLockAsync(path, "other", holdSeconds: 1.5);
        var sw = Stopwatch.StartNew();
        Assert.Equal(WriteOutcome.Inserted, await store.PutAsync(Make.Prompt("r", 1, 0)));
        sw.Stop();
        using (var bounded = new CancellationTokenSource(TimeSpan.FromSeconds(60))) await other.WaitForExitAsync(bounded.Token);
        Assert.True(other.ExitCode == 0, await other.StandardError.ReadToEndAsync());
        Assert.True(sw.Elapsed > TimeSpan.FromSeconds(0.5), $"write returned after {sw.Elapsed} while the lock was held");
        Assert.Single(await store.ListMetricsAsync("other"));
    }

    [Fact]
    public async Task A_writer_killed_inside_its_transaction_loses_its_write_and_blocks_nobody()
    {
        var path = _dir.File("killed.db");
        await using var store = await SqliteArtifactStore.OpenAsync(path);
        using var other = await HoldWriteLockAsync(path, "dead", holdSeconds: 60);
        var write = store.PutAsync(Make.Prompt("r", 1, 0));
        await Task.Delay(300);
        Assert.False(write.IsCompleted); // waiting for the lock holder
        other.Kill(); // SIGKILL: no rollback, no close
        var sw = Stopwatch.StartNew();
        Assert.Equal(WriteOutcome.Inserted, await write);
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(5), $"write took {sw.Elapsed} after the holder died");
        Assert.Empty(await store.ListMetricsAsync("dead"));
        await using var reopened = await SqliteArtifactStore.OpenAsync(path);
        Assert.Equal(1, await reopened.CountAsync<PromptRecord>(ArtifactQuery.OfRun("r")));
    }

    [Fact]
    public async Task A_sqlite_file_that_is_not_an_srlm_store_is_refused()
    {
        var path = _dir.File("foreign.db");
        await using (var c = new SqliteConnection($"Data Source={path};Pooling=false"))
        {
            c.Open();
            using var cmd = c.CreateCommand();
            cmd.CommandText = "CREATE TABLE t(x)";
            cmd.ExecuteNonQuery();
        }
        var e = await Assert.ThrowsAsync<StoreSchemaException>(() => SqliteArtifactStore.OpenAsync(path));
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public async Task A_missing_directory_is_a_configuration_error_naming_it()
    {
        var e = await Assert.ThrowsAsync<StoreConfigurationException>(() => SqliteArtifactStore.OpenAsync(_dir.File("no/such/dir/s.db")));
        Assert.Contains("no/such/dir", e.Message);
    }
}
