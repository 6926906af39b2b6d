using System.Collections;

namespace Srlm.Tests.Storage;

public sealed class StoreFactoryTests : IDisposable
{
    private readonly TempDir _dir = new();
    public void Dispose() => _dir.Dispose();

    private static Hashtable Env(params (string, string)[] vars)
    {
        var h = new Hashtable();
        foreach (var (k, v) in vars) h[k] = v;
        return h;
    }

    [Fact]
    public async Task Sqlite_store_with_the_default_checkpoint_directory_beside_it()
    {
        var db = _dir.File("x.db");
        await using var set = await StoreFactory.FromEnvironmentAsync(Env(("SRLM_STORE", "sqlite://" + db)));
        Assert.Equal("sqlite://" + db, set.Artifacts.Location);
        var ckpt = Assert.IsType<DirectoryCheckpointStore>(set.Checkpoints);
        Assert.Equal(db + ".checkpoints", ckpt.Root);
    }

    [Fact]
    public async Task A_checkpoint_directory_from_SRLM_CHECKPOINTS_and_the_default_store_when_unset()
    {
        var ck = _dir.File("ckpts");
        await using var set = await StoreFactory.FromEnvironmentAsync(Env(("SRLM_CHECKPOINTS", ck)), defaultStore: "sqlite://" + _dir.File("d.db"));
        Assert.IsType<SqliteArtifactStore>(set.Artifacts);
        Assert.Equal(ck, Assert.IsType<DirectoryCheckpointStore>(set.Checkpoints).Root);
        Assert.True(Directory.Exists(ck));
    }

    [Theory]
    [InlineData(null, "SRLM_STORE is not set")]
    [InlineData("postgres://x", "SRLM_STORE='postgres://x' is not valid")]
    [InlineData("sqlite://", "has no file path")]
    [InlineData("mongodb://", "is not a valid MongoDB URI")]
    public async Task Bad_SRLM_STORE_values_give_one_line_errors(string? value, string expected)
    {
        var env = value is null ? Env() : Env(("SRLM_STORE", value));
        var e = await Assert.ThrowsAsync<StoreConfigurationException>(() => StoreFactory.FromEnvironmentAsync(env));
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public async Task An_unreachable_MongoDB_is_a_one_line_error_naming_it()
    {
        // Port 9 (discard) on loopback: nothing listens; server selection gives up after 1 s.
        var e = await Assert.ThrowsAsync<StoreConfigurationException>(() =>
            StoreFactory.FromEnvironmentAsync(Env(("SRLM_STORE", "mongodb://127.0.0.1:9/srlmx?serverSelectionTimeoutMS=1000&connectTimeoutMS=500"))));
        Assert.Contains("cannot reach MongoDB at mongodb://127.0.0.1:9/srlmx", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Theory]
    [InlineData("gridfs", "SRLM_CHECKPOINTS=gridfs needs SRLM_STORE=mongodb")]
    [InlineData("s3://bucket/x", "SRLM_CHECKPOINTS='s3://bucket/x' is not valid")]
    public async Task Bad_SRLM_CHECKPOINTS_values_give_one_line_errors(string value, string expected)
    {
        var e = await Assert.ThrowsAsync<StoreConfigurationException>(() =>
            StoreFactory.FromEnvironmentAsync(Env(("SRLM_STORE", "sqlite://" + _dir.File("y.db")), ("SRLM_CHECKPOINTS", value))));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public async Task A_checkpoint_directory_whose_parent_is_missing_is_refused()
    {
        var e = await Assert.ThrowsAsync<StoreConfigurationException>(() =>
            StoreFactory.FromEnvironmentAsync(Env(("SRLM_STORE", "sqlite://" + _dir.File("z.db")), ("SRLM_CHECKPOINTS", _dir.File("a/b/c")))));
        Assert.Contains(_dir.File("a/b"), e.Message);
    }
}

public sealed class StoreResilienceTests
{
    [Fact]
    public void Only_transient_errors_are_retried()
    {
        Assert.True(StoreResilience.IsTransient(new SqliteException("busy", 5)));
        Assert.True(StoreResilience.IsTransient(new SqliteException("locked", 6)));
        Assert.True(StoreResilience.IsTransient(new SqliteException("busy snapshot", 5 | (2 << 8))));
        Assert.False(StoreResilience.IsTransient(new SqliteException("constraint", 19)));
        Assert.True(StoreResilience.IsTransient(new IOException("disk hiccup")));
        Assert.True(StoreResilience.IsTransient(new TimeoutException("server selection")));
        Assert.False(StoreResilience.IsTransient(new FileNotFoundException("gone")));
        Assert.False(StoreResilience.IsTransient(new DirectoryNotFoundException("gone")));
        Assert.False(StoreResilience.IsTransient(new KeyNotFoundException()));
        Assert.False(StoreResilience.IsTransient(new StoreConflictException("x")));
        Assert.False(StoreResilience.IsTransient(new StoreIntegrityException("x")));
        Assert.False(StoreResilience.IsTransient(new InvalidOperationException()));
    }

    [Fact]
    public async Task A_busy_call_is_retried_until_it_succeeds_and_a_logic_error_is_tried_once()
    {
        var retried = 0;
        var pipeline = StoreResilience.Create(maxRetries: 5, firstDelay: TimeSpan.FromMilliseconds(1), onRetry: (_, _) => retried++);
        var calls = 0;
        var result = await pipeline.ExecuteAsync(_ =>
        {
            if (++calls < 3) throw new SqliteException("database is locked", 5);
            return ValueTask.FromResult(42);
        });
        Assert.Equal(42, result);
        Assert.Equal(3, calls);
        Assert.Equal(2, retried);

        calls = 0;
        await Assert.ThrowsAsync<KeyNotFoundException>(async () => await pipeline.ExecuteAsync<int>(_ => { calls++; throw new KeyNotFoundException(); }));
        Assert.Equal(1, calls);

        calls = 0;
        await Assert.ThrowsAsync<SqliteException>(async () => await pipeline.ExecuteAsync<int>(_ => { calls++; throw new SqliteException("busy", 5); }));
        Assert.Equal(6, calls); // 1 try + 5 retries, then the error surfaces
    }
}

public sealed class StoreSetCheckpointTests : IDisposable
{
    private readonly TempDir _dir = new();
    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task A_checkpoint_put_through_the_store_set_is_recorded_and_verified_against_the_record()
    {
        await using var set = await StoreFactory.FromEnvironmentAsync(new Hashtable { ["SRLM_STORE"] = "sqlite://" + _dir.File("s.db") });
        var src = Directory.CreateDirectory(_dir.File("m1")).FullName;
        File.WriteAllText(Path.Combine(src, "config.json"), "{}");
        File.WriteAllBytes(Path.Combine(src, "model.safetensors"), new byte[4096]);
        var template = new CheckpointRecord { Id = "r/m1", RunId = "r", Iteration = 1, ParentCheckpointId = "r/m0", Location = "", Files = [], Origin = "sft" };

        var (record, outcome) = await set.PutCheckpointAsync(template, src);
        Assert.Equal(WriteOutcome.Inserted, outcome);
        Assert.Equal(2, record.Files.Count);
        Assert.Equal(WriteOutcome.Unchanged, (await set.PutCheckpointAsync(template, src)).Outcome);
        Assert.Equal(record.Files, (await set.Artifacts.GetAsync<CheckpointRecord>("r/m1"))!.Files);

        var dir = await set.MaterializeCheckpointAsync("r/m1");
        Assert.True(File.Exists(Path.Combine(dir, "model.safetensors")));

        // The store's own manifest and file rewritten together: the artifact record still catches it.
        File.WriteAllText(Path.Combine(dir, "config.json"), """{"tampered":true}""");
        var manifestPath = Path.Combine(dir, CheckpointFiles.ManifestName);
        var m = ArtifactJson.Read<CheckpointManifest>(File.ReadAllText(manifestPath));
        var fixedUp = m with { Files = m.Files.Select(f => f.Path == "config.json" ? CheckpointFiles.HashAsync(dir, f.Path, default).Result : f).ToList() };
        File.WriteAllText(manifestPath, ArtifactJson.Serialize(fixedUp));
        await set.Checkpoints.MaterializeAsync("r/m1"); // consistent with its own manifest...
        var e = await Assert.ThrowsAsync<StoreIntegrityException>(() => set.MaterializeCheckpointAsync("r/m1"));
        Assert.Contains("config.json", e.Message);
        await Assert.ThrowsAsync<KeyNotFoundException>(() => set.MaterializeCheckpointAsync("r/m9"));
    }
}
