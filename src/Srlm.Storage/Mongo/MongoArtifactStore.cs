namespace Srlm.Storage.Mongo;

/// <summary>
/// The distributed artifact store on MongoDB: one collection per table of the SQLite backend, unique
/// keys as _id, idempotent inserts (duplicate key = compare content), optimistic concurrency for jobs.
/// </summary>
public sealed partial class MongoArtifactStore : IArtifactStore
{
    public const int SchemaVersion = Sqlite.SqliteArtifactStore.SchemaVersion;

    private readonly MongoClient _client;
    private readonly ResiliencePipeline _retry;
    private readonly TimeProvider _clock;
    private readonly IMongoCollection<BsonDocument> _meta, _runs, _artifacts, _jobs, _metrics, _blobs, _journal, _errors, _counters;

    public IMongoDatabase Database { get; }
    public string Location { get; }

    private MongoArtifactStore(MongoClient client, IMongoDatabase db, string location, ResiliencePipeline retry, TimeProvider clock)
    {
        _client = client;
        Database = db;
        Location = location;
        _retry = retry;
        _clock = clock;
        _meta = db.GetCollection<BsonDocument>("meta");
        _runs = db.GetCollection<BsonDocument>("runs");
        _artifacts = db.GetCollection<BsonDocument>("artifacts");
        _jobs = db.GetCollection<BsonDocument>("jobs");
        _metrics = db.GetCollection<BsonDocument>("metrics");
        _blobs = db.GetCollection<BsonDocument>("blobs");
        _journal = db.GetCollection<BsonDocument>("journal");
        _errors = db.GetCollection<BsonDocument>("errors");
        _counters = db.GetCollection<BsonDocument>("counters");
    }

    /// <summary>Connect to mongodb://HOST/DB (database "srlm" when the URI names none); refuses another schema version.</summary>
    public static async Task<MongoArtifactStore> OpenAsync(string uri, ResiliencePipeline? retry = null, TimeProvider? clock = null,
        string? databaseName = null, CancellationToken ct = default)
    {
        MongoUrl url;
        try { url = MongoUrl.Create(uri); }
        catch (Exception e) when (e is MongoConfigurationException or ArgumentException or FormatException)
        {
            throw new StoreConfigurationException($"SRLM_STORE='{Redact(uri)}' is not a valid MongoDB URI: {e.Message.Split('\n')[0]}");
        }
        var settings = MongoClientSettings.FromUrl(url);
        if (url.ServerSelectionTimeout == MongoDefaults.ServerSelectionTimeout) settings.ServerSelectionTimeout = TimeSpan.FromSeconds(10);
        var client = new MongoClient(settings);
        var dbName = databaseName ?? url.DatabaseName ?? "srlm";
        var location = $"mongodb://{string.Join(',', url.Servers.Select(s => s.ToString()))}/{dbName}";
        var store = new MongoArtifactStore(client, client.GetDatabase(dbName), location, retry ?? StoreResilience.Default, clock ?? TimeProvider.System);
        try
        {
            try
            {
                // One ping without retries: an unreachable server is a configuration problem, said in one line.
                await store.Database.RunCommandAsync<BsonDocument>(new BsonDocument("ping", 1), cancellationToken: ct);
            }
            catch (Exception e) when (e is TimeoutException or MongoConnectionException or MongoAuthenticationException)
            {
                throw new StoreConfigurationException(
                    $"SRLM_STORE: cannot reach MongoDB at {location} within {settings.ServerSelectionTimeout.TotalSeconds:F0} s ({e.GetType().Name})");
            }
            await store._retry.ExecuteAsync(async token => await store.InitializeAsync(token), ct);
        }
        catch
        {
            client.Dispose();
            throw;
        }
        return store;
    }

    private static string Redact(string uri)
    {
        var at = uri.IndexOf('@');
        var scheme = uri.IndexOf("://", StringComparison.Ordinal);
        return at > 0 && scheme > 0 && at > scheme ? uri[..(scheme + 3)] + "***@" + uri[(at + 1)..] : uri;
    }

    public ValueTask DisposeAsync()
    {
        _client.Dispose();
        return ValueTask.CompletedTask;
    }

    private async Task InitializeAsync(CancellationToken ct)
    {
        var doc = await _meta.Find(new BsonDocument("_id", "schema_version")).FirstOrDefaultAsync(ct);
        if (doc is null)
        {
            try
            {
                await _meta.InsertOneAsync(new BsonDocument { { "_id", "schema_version" }, { "value", SchemaVersion } }, cancellationToken: ct);
            }
            catch (MongoWriteException e) when (e.WriteError?.Category == ServerErrorCategory.DuplicateKey) { }
            doc = await _meta.Find(new BsonDocument("_id", "schema_version")).FirstAsync(ct);
        }
        var v = doc["value"].ToInt32();
        if (v != SchemaVersion)
            throw new StoreSchemaException(
                $"store {Location} has schema version {v} but this binary needs schema version {SchemaVersion}: " +
                (v < SchemaVersion ? "the store is older than this binary (no migration exists; use a new database)" : "the store was written by a newer srlm; upgrade this binary"));
        await _artifacts.Indexes.CreateManyAsync(
        [
            new CreateIndexModel<BsonDocument>(new BsonDocument { { "run_id", 1 }, { "iteration", 1 }, { "kind", 1 }, { "tag", 1 } }),
            new CreateIndexModel<BsonDocument>(new BsonDocument { { "kind", 1 }, { "parent_id", 1 } }),
            new CreateIndexModel<BsonDocument>(new BsonDocument { { "run_id", 1 }, { "iteration", 1 }, { "logical_key", 1 } }),
            new CreateIndexModel<BsonDocument>(new BsonDocument { { "kind", 1 }, { "id", 1 } }, new CreateIndexOptions { Unique = true }),
        ], ct);
        await _journal.Indexes.CreateManyAsync(
        [
            new CreateIndexModel<BsonDocument>(new BsonDocument("seq", 1), new CreateIndexOptions { Unique = true }),
            new CreateIndexModel<BsonDocument>(new BsonDocument { { "run_id", 1 }, { "iteration", 1 }, { "message_type", 1 }, { "seq", 1 } }),
            new CreateIndexModel<BsonDocument>(new BsonDocument("message_id", 1)),
        ], ct);
        await _jobs.Indexes.CreateOneAsync(new CreateIndexModel<BsonDocument>(new BsonDocument { { "state", 1 }, { "created_at", 1 } }), cancellationToken: ct);
        await _errors.Indexes.CreateOneAsync(new CreateIndexModel<BsonDocument>(new BsonDocument { { "run_id", 1 }, { "time", 1 } }), cancellationToken: ct);
        await _metrics.Indexes.CreateOneAsync(new CreateIndexModel<BsonDocument>(
            new BsonDocument { { "run_id", 1 }, { "iteration", 1 }, { "step", 1 }, { "name", 1 } }, new CreateIndexOptions { Unique = true }), cancellationToken: ct);
    }

    /// <summary>Overwrites the recorded schema version, for the test that proves the refusal (internal: Srlm.Tests only).</summary>
    internal Task SetStoredSchemaVersionForTestingAsync(int version, CancellationToken ct = default) =>
        _meta.ReplaceOneAsync(new BsonDocument("_id", "schema_version"), new BsonDocument { { "_id", "schema_version" }, { "value", version } },
            new ReplaceOptions { IsUpsert = true }, ct);

    private Task<T> R<T>(Func<CancellationToken, Task<T>> body, CancellationToken ct) =>
        _retry.ExecuteAsync(async token => await body(token), ct).AsTask();

    private DateTime NowUtc() => _clock.GetUtcNow().UtcDateTime;

    private static bool IsDuplicateKey(MongoWriteException e) => e.WriteError?.Category == ServerErrorCategory.DuplicateKey;

    private static BsonValue Nullable(string? s) => s is null ? BsonNull.Value : new BsonString(s);
    private static BsonValue Nullable(int? i) => i is null ? BsonNull.Value : new BsonInt32(i.Value);
    private static BsonValue Nullable(long? i) => i is null ? BsonNull.Value : new BsonInt64(i.Value);
    private static BsonValue Nullable(DateTime? t) => t is null ? BsonNull.Value : new BsonDateTime(t.Value);
    private static string? Str(BsonDocument d, string name) => d.TryGetValue(name, out var v) && !v.IsBsonNull ? v.AsString : null;
    private static DateTimeOffset Time(BsonValue v) => new(DateTime.SpecifyKind(v.ToUniversalTime(), DateTimeKind.Utc));
    private static DateTimeOffset? TimeOrNull(BsonDocument d, string name) => d.TryGetValue(name, out var v) && !v.IsBsonNull ? Time(v) : null;
}
