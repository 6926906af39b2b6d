using System.Collections;
using Microsoft.Data.Sqlite;
using Srlm.Storage;
using Srlm.Storage.Checkpoints;
using Srlm.Storage.Sqlite;

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
