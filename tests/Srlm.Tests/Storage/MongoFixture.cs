using Testcontainers.MongoDb;

namespace Srlm.Tests.Storage;

/// <summary>
/// A MongoDB for the conformance suite: MONGODB_URI when set, else a Testcontainers container when
/// Docker runs; otherwise <see cref="SkipReason"/> says why the MongoDB tests skip.
/// </summary>
public sealed class MongoFixture : IAsyncLifetime
{
    private MongoDbContainer? _container;

    public string? Uri { get; private set; }
    public string? SkipReason { get; private set; }
    public string? FailReason { get; private set; }

    public async Task InitializeAsync()
    {
        var fromEnv = Environment.GetEnvironmentVariable("MONGODB_URI");
        if (!string.IsNullOrWhiteSpace(fromEnv))
        {
            // Set but unreachable is a failure, not a skip: found once here instead of once per test.
            Uri = fromEnv;
            try
            {
                await using var probe = await MongoArtifactStore.OpenAsync(fromEnv, databaseName: "srlm_test_probe");
            }
            catch (Exception e)
            {
                FailReason = $"MONGODB_URI is set but MongoDB cannot be used: {e.Message}";
            }
            return;
        }
        try
        {
            _container = new MongoDbBuilder("mongo:7").Build();
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(120));
            await _container.StartAsync(cts.Token);
            Uri = _container.GetConnectionString();
        }
        catch (Exception e)
        {
            SkipReason = $"MongoDB tests skipped: MONGODB_URI is not set and a MongoDB container could not start ({e.GetType().Name}: {e.Message.Split('\n')[0]})";
            _container = null;
        }
    }

    /// <summary>A fresh database per call, so tests never see each other's data.</summary>
    public Task<MongoArtifactStore> OpenFreshAsync(TimeProvider? clock = null, string? database = null)
    {
        if (FailReason is not null) throw new InvalidOperationException(FailReason);
        Skip.If(Uri is null, SkipReason);
        return MongoArtifactStore.OpenAsync(Uri!, clock: clock, databaseName: database ?? $"srlm_test_{Guid.NewGuid():N}");
    }

    public async Task DisposeAsync()
    {
        if (_container is not null) await _container.DisposeAsync();
    }
}

[CollectionDefinition(Name)]
public sealed class MongoCollection : ICollectionFixture<MongoFixture>
{
    public const string Name = "mongo";
}
