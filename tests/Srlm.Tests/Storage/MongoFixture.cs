using Srlm.Storage.Mongo;
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

    public async Task InitializeAsync()
    {
        var fromEnv = Environment.GetEnvironmentVariable("MONGODB_URI");
        if (!string.IsNullOrWhiteSpace(fromEnv))
        {
            Uri = fromEnv;
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
