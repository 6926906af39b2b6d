using MongoDB.Bson;
using MongoDB.Driver;
using Polly;

namespace Srlm.Storage.Mongo;

/// <summary>
/// The distributed artifact store on MongoDB: one collection per table of the SQLite backend, unique
/// keys as _id, idempotent inserts (duplicate key = compare content), optimistic concurrency for jobs.
/// </summary>
public sealed class MongoArtifactStore : IArtifactStore
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

    /// <summary>Test/operator hook: overwrite the recorded schema version (used to prove the refusal).</summary>
    public Task SetStoredSchemaVersionForTestingAsync(int version, CancellationToken ct = default) =>
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

    // ---- runs -------------------------------------------------------------------------------------

    public Task<WriteOutcome> CreateRunAsync(string runId, string specJson, int specSchemaVersion, CancellationToken ct = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(runId);
        ArgumentNullException.ThrowIfNull(specJson);
        return R(async token =>
        {
            var now = NowUtc();
            try
            {
                await _runs.InsertOneAsync(new BsonDocument
                {
                    { "_id", runId }, { "spec_json", specJson }, { "spec_version", specSchemaVersion }, { "state", nameof(RunState.Running) },
                    { "failure_reason", BsonNull.Value }, { "created_at", now }, { "updated_at", now }, { "last_progress_at", now },
                }, cancellationToken: token);
                return WriteOutcome.Inserted;
            }
            catch (MongoWriteException e) when (IsDuplicateKey(e))
            {
                var d = await _runs.Find(new BsonDocument("_id", runId)).FirstAsync(token);
                return d["spec_json"].AsString == specJson && d["spec_version"].ToInt32() == specSchemaVersion ? WriteOutcome.Unchanged : WriteOutcome.Conflict;
            }
        }, ct);
    }

    private static RunRecord ReadRun(BsonDocument d) => new()
    {
        Id = d["_id"].AsString,
        SpecJson = d["spec_json"].AsString,
        SpecSchemaVersion = d["spec_version"].ToInt32(),
        State = Enum.Parse<RunState>(d["state"].AsString),
        FailureReason = Str(d, "failure_reason"),
        CreatedAt = Time(d["created_at"]),
        UpdatedAt = Time(d["updated_at"]),
        LastProgressAt = Time(d["last_progress_at"]),
    };

    public Task<RunRecord?> GetRunAsync(string runId, CancellationToken ct = default) => R(async token =>
    {
        var d = await _runs.Find(new BsonDocument("_id", runId)).FirstOrDefaultAsync(token);
        return d is null ? null : ReadRun(d);
    }, ct);

    public Task<IReadOnlyList<RunRecord>> ListRunsAsync(CancellationToken ct = default) => R(async token =>
    {
        var docs = await _runs.Find(new BsonDocument()).Sort(new BsonDocument { { "created_at", -1 }, { "_id", 1 } }).ToListAsync(token);
        return (IReadOnlyList<RunRecord>)docs.Select(ReadRun).ToList();
    }, ct);

    public Task<WriteOutcome> SetRunStateAsync(string runId, RunState state, string? failureReason = null, CancellationToken ct = default) => R(async token =>
    {
        if (state != RunState.Running)
        {
            var now = NowUtc();
            var res = await _runs.UpdateOneAsync(new BsonDocument { { "_id", runId }, { "state", nameof(RunState.Running) } },
                new BsonDocument("$set", new BsonDocument
                {
                    { "state", state.ToString() }, { "failure_reason", Nullable(failureReason) }, { "updated_at", now }, { "last_progress_at", now },
                }), cancellationToken: token);
            if (res.ModifiedCount == 1) return WriteOutcome.Updated;
        }
        var exists = await _runs.CountDocumentsAsync(new BsonDocument("_id", runId), cancellationToken: token);
        return exists == 0 ? throw new KeyNotFoundException($"run {runId} is not in store {Location}") : WriteOutcome.Unchanged;
    }, ct);

    public Task<WriteOutcome> ReopenFailedRunAsync(string runId, CancellationToken ct = default) => R(async token =>
    {
        var now = NowUtc();
        var res = await _runs.UpdateOneAsync(new BsonDocument { { "_id", runId }, { "state", nameof(RunState.Failed) } },
            new BsonDocument("$set", new BsonDocument
            {
                { "state", nameof(RunState.Running) }, { "failure_reason", BsonNull.Value }, { "updated_at", now }, { "last_progress_at", now },
            }), cancellationToken: token);
        if (res.ModifiedCount == 1) return WriteOutcome.Updated;
        return await _runs.CountDocumentsAsync(new BsonDocument("_id", runId), cancellationToken: token) == 1
            ? WriteOutcome.Unchanged
            : throw new KeyNotFoundException($"run {runId} is not in store {Location}");
    }, ct);

    public Task TouchRunAsync(string runId, CancellationToken ct = default) =>
        R(token => _runs.UpdateOneAsync(new BsonDocument("_id", runId), new BsonDocument("$set", new BsonDocument("last_progress_at", NowUtc())), cancellationToken: token), ct);

    // ---- artifacts --------------------------------------------------------------------------------

    private static string Key(string kind, string id) => kind + "|" + id;

    private static void Validate<T>(T a) where T : class, IArtifact
    {
        ArgumentNullException.ThrowIfNull(a);
        if (string.IsNullOrWhiteSpace(a.Id)) throw new ArgumentException($"{T.Kind} has an empty id");
        if (string.IsNullOrWhiteSpace(a.RunId)) throw new ArgumentException($"{T.Kind} {a.Id} has an empty run id");
    }

    private static BsonDocument ArtifactDoc<T>(T a, string json, string hash, DateTimeOffset created) where T : class, IArtifact => new()
    {
        { "_id", Key(T.Kind, a.Id) }, { "kind", T.Kind }, { "id", a.Id }, { "run_id", a.RunId }, { "iteration", a.Iteration },
        { "logical_key", a.LogicalKey }, { "parent_id", Nullable(a.ParentId) }, { "tag", Nullable(a.Tag) }, { "json", json },
        { "content_hash", hash }, { "created_at", created.UtcDateTime },
    };

    public Task<WriteOutcome> PutAsync<T>(T artifact, CancellationToken ct = default) where T : class, IArtifact
    {
        Validate(artifact);
        var now = _clock.GetUtcNow();
        var (json, hash) = ArtifactJson.Prepare(artifact, now);
        return R(async token =>
        {
            try
            {
                await _artifacts.InsertOneAsync(ArtifactDoc(artifact, json, hash, now), cancellationToken: token);
            }
            catch (MongoWriteException e) when (IsDuplicateKey(e))
            {
                var d = await _artifacts.Find(new BsonDocument("_id", Key(T.Kind, artifact.Id))).FirstOrDefaultAsync(token);
                // A duplicate on the (kind, id) index with another _id cannot happen: _id is built from them.
                return d is not null && d["content_hash"].AsString == hash ? WriteOutcome.Unchanged : WriteOutcome.Conflict;
            }
            await _runs.UpdateOneAsync(new BsonDocument("_id", artifact.RunId), new BsonDocument("$set", new BsonDocument("last_progress_at", now.UtcDateTime)), cancellationToken: token);
            return WriteOutcome.Inserted;
        }, ct);
    }

    public async Task<IReadOnlyList<WriteOutcome>> PutManyAsync<T>(IReadOnlyList<T> artifacts, CancellationToken ct = default) where T : class, IArtifact
    {
        // Every record is checked before any is written (as on SQLite); then each insert is its own idempotent step,
        // so a retry after a partial failure re-inserts nothing twice.
        foreach (var a in artifacts) Validate(a);
        var outcomes = new WriteOutcome[artifacts.Count];
        for (var i = 0; i < artifacts.Count; i++) outcomes[i] = await PutAsync(artifacts[i], ct);
        return outcomes;
    }

    public Task<WriteOutcome> OverwriteAsync<T>(T artifact, CancellationToken ct = default) where T : class, IArtifact
    {
        Validate(artifact);
        return R(async token =>
        {
            var old = await _artifacts.Find(new BsonDocument("_id", Key(T.Kind, artifact.Id))).FirstOrDefaultAsync(token);
            var created = old is null ? _clock.GetUtcNow() : Time(old["created_at"]);
            var (json, hash) = ArtifactJson.Prepare(artifact, created);
            if (old is not null && old["content_hash"].AsString == hash) return WriteOutcome.Unchanged;
            await _artifacts.ReplaceOneAsync(new BsonDocument("_id", Key(T.Kind, artifact.Id)), ArtifactDoc(artifact, json, hash, created),
                new ReplaceOptions { IsUpsert = true }, token);
            return old is null ? WriteOutcome.Inserted : WriteOutcome.Updated;
        }, ct);
    }

    public Task<T?> GetAsync<T>(string id, CancellationToken ct = default) where T : class, IArtifact => R(async token =>
    {
        var d = await _artifacts.Find(new BsonDocument("_id", Key(T.Kind, id))).FirstOrDefaultAsync(token);
        return d is null ? null : ArtifactJson.Read<T>(d["json"].AsString);
    }, ct);

    public async Task<IReadOnlyList<T>> GetManyAsync<T>(IEnumerable<string> ids, CancellationToken ct = default) where T : class, IArtifact
    {
        var wanted = ids.ToList();
        var found = new Dictionary<string, T>();
        foreach (var chunk in wanted.Distinct().Chunk(1000))
        {
            var docs = await R(token => _artifacts.Find(new BsonDocument("_id", new BsonDocument("$in", new BsonArray(chunk.Select(i => Key(T.Kind, i))))))
                .ToListAsync(token), ct);
            foreach (var d in docs) { var a = ArtifactJson.Read<T>(d["json"].AsString); found[a.Id] = a; }
        }
        return wanted.Where(found.ContainsKey).Select(id => found[id]).ToList();
    }

    private static BsonDocument Filter(string kind, ArtifactQuery q)
    {
        var f = new BsonDocument("kind", kind);
        if (q.RunId is not null) f["run_id"] = q.RunId;
        if (q.Iteration is not null) f["iteration"] = q.Iteration.Value;
        if (q.ParentId is not null) f["parent_id"] = q.ParentId;
        if (q.Tag is not null) f["tag"] = q.Tag;
        return f;
    }

    public Task<IReadOnlyList<T>> ListAsync<T>(ArtifactQuery query, CancellationToken ct = default) where T : class, IArtifact => R(async token =>
    {
        var docs = await _artifacts.Find(Filter(T.Kind, query)).Sort(new BsonDocument("id", 1)).Project(new BsonDocument { { "json", 1 }, { "id", 1 } }).ToListAsync(token);
        return (IReadOnlyList<T>)docs.OrderBy(d => d["id"].AsString, StringComparer.Ordinal).Select(d => ArtifactJson.Read<T>(d["json"].AsString)).ToList();
    }, ct);

    public Task<long> CountAsync<T>(ArtifactQuery query, CancellationToken ct = default) where T : class, IArtifact =>
        R(token => _artifacts.CountDocumentsAsync(Filter(T.Kind, query), cancellationToken: token), ct);

    public Task<WriteOutcome> SetPairReferenceLogProbsAsync(string pairId, double chosen, double rejected, CancellationToken ct = default) => R(async token =>
    {
        for (var attempt = 0; ; attempt++)
        {
            var d = await _artifacts.Find(new BsonDocument("_id", Key(PairRecord.Kind, pairId))).FirstOrDefaultAsync(token)
                    ?? throw new KeyNotFoundException($"pair {pairId} is not in store {Location}");
            var pair = ArtifactJson.Read<PairRecord>(d["json"].AsString);
            var outcome = Sqlite.SqliteArtifactStore.PairRefOutcome(pair, chosen, rejected);
            if (outcome != WriteOutcome.Updated) return outcome;
            var (json, hash) = ArtifactJson.Prepare(pair with { ReferenceChosenLogProb = chosen, ReferenceRejectedLogProb = rejected }, Time(d["created_at"]));
            // Compare-and-set on the whole stored JSON: the content hash leaves the reference log-probs out, so it would
            // not notice another writer that filled them in between.
            var res = await _artifacts.UpdateOneAsync(new BsonDocument { { "_id", d["_id"] }, { "json", d["json"] } },
                new BsonDocument("$set", new BsonDocument { { "json", json }, { "content_hash", hash } }), cancellationToken: token);
            if (res.ModifiedCount == 1) return WriteOutcome.Updated;
            if (attempt > 10) throw new InvalidOperationException($"pair {pairId}: reference log-probs kept changing under concurrent writers");
        }
    }, ct);

    // ---- completion and status --------------------------------------------------------------------

    private static BsonDocument SettleFilter(string runId, int iteration) => new()
    {
        { "run_id", runId }, { "iteration", iteration }, { "kind", new BsonDocument("$in", new BsonArray { PairRecord.Kind, PairDropRecord.Kind }) },
    };

    private async Task<HashSet<string>> SettledAsync(string runId, int iteration, CancellationToken ct)
    {
        var ids = await R(async token => await (await _artifacts.DistinctAsync<BsonValue>("parent_id", SettleFilter(runId, iteration), cancellationToken: token)).ToListAsync(token), ct);
        return ids.Where(v => v.IsString).Select(v => v.AsString).ToHashSet(StringComparer.Ordinal);
    }

    public async Task<long> CountSettledPromptsAsync(string runId, int iteration, CancellationToken ct = default) =>
        (await SettledAsync(runId, iteration, ct)).Count;

    public async Task<IReadOnlyList<string>> ListUnsettledPromptsAsync(string runId, int iteration, CancellationToken ct = default)
    {
        var sets = await ListAsync<PromptSetFinalRecord>(ArtifactQuery.OfRun(runId, iteration), ct);
        if (sets.Count == 0) return [];
        var settled = await SettledAsync(runId, iteration, ct);
        return sets[0].PromptIds.Where(p => !settled.Contains(p)).Distinct().ToList();
    }

    private Task<long> DuplicatesAsync(string runId, int iteration, CancellationToken ct) => R(async token =>
    {
        var pipeline = new[]
        {
            new BsonDocument("$match", new BsonDocument { { "run_id", runId }, { "iteration", iteration } }),
            new BsonDocument("$group", new BsonDocument { { "_id", "$logical_key" }, { "n", new BsonDocument("$sum", 1) } }),
            new BsonDocument("$match", new BsonDocument("n", new BsonDocument("$gt", 1))),
            new BsonDocument("$group", new BsonDocument { { "_id", BsonNull.Value }, { "extra", new BsonDocument("$sum", new BsonDocument("$subtract", new BsonArray { "$n", 1 })) } }),
        };
        var r = await (await _artifacts.AggregateAsync<BsonDocument>(pipeline, cancellationToken: token)).FirstOrDefaultAsync(token);
        return r is null ? 0L : r["extra"].ToInt64();
    }, ct);

    public async Task<IterationStatus> GetIterationStatusAsync(string runId, int iteration, CancellationToken ct = default)
    {
        var counts = await R(async token =>
        {
            var pipeline = new[]
            {
                new BsonDocument("$match", new BsonDocument { { "run_id", runId }, { "iteration", iteration } }),
                new BsonDocument("$group", new BsonDocument { { "_id", new BsonDocument { { "kind", "$kind" }, { "tag", "$tag" } } }, { "n", new BsonDocument("$sum", 1) } }),
            };
            var rows = await (await _artifacts.AggregateAsync<BsonDocument>(pipeline, cancellationToken: token)).ToListAsync(token);
            var d = new Dictionary<(string, string), long>();
            foreach (var row in rows)
            {
                var id = row["_id"].AsBsonDocument;
                var tag = id.TryGetValue("tag", out var t) && t.IsString ? t.AsString : "";
                d[(id["kind"].AsString, tag)] = row["n"].ToInt64();
            }
            return d;
        }, ct);
        var duplicates = await DuplicatesAsync(runId, iteration, ct);
        var settled = await CountSettledPromptsAsync(runId, iteration, ct);
        var finalSet = (await ListAsync<PromptSetFinalRecord>(ArtifactQuery.OfRun(runId, iteration), ct)).FirstOrDefault();
        var start = (await ListAsync<IterationRecord>(ArtifactQuery.OfRun(runId, iteration), ct)).FirstOrDefault();
        var output = (await ListAsync<CheckpointRecord>(ArtifactQuery.OfRun(runId, iteration + 1), ct)).FirstOrDefault(c => c.IsMain);
        return StatusMath.Build(runId, iteration, counts, duplicates, settled, finalSet, start, output);
    }

    public async Task<IReadOnlyList<IterationStatus>> GetRunStatusAsync(string runId, CancellationToken ct = default)
    {
        var iterations = await R(async token => await (await _artifacts.DistinctAsync<int>("iteration",
            new BsonDocument { { "run_id", runId }, { "kind", new BsonDocument("$nin", new BsonArray { CheckpointRecord.Kind, EvaluationRecord.Kind }) } },
            cancellationToken: token)).ToListAsync(token), ct);
        var result = new List<IterationStatus>();
        foreach (var t in iterations.Order()) result.Add(await GetIterationStatusAsync(runId, t, ct));
        return result;
    }

    public Task<IReadOnlyList<DuplicateGroup>> ListDuplicatesAsync(string runId, int? iteration = null, CancellationToken ct = default) => R(async token =>
    {
        var match = new BsonDocument("run_id", runId);
        if (iteration is not null) match["iteration"] = iteration.Value;
        var pipeline = new[]
        {
            new BsonDocument("$match", match),
            new BsonDocument("$group", new BsonDocument
            {
                { "_id", new BsonDocument { { "iteration", "$iteration" }, { "key", "$logical_key" } } },
                { "n", new BsonDocument("$sum", 1) }, { "kinds", new BsonDocument("$addToSet", "$kind") }, { "ids", new BsonDocument("$push", "$id") },
            }),
            new BsonDocument("$match", new BsonDocument("n", new BsonDocument("$gt", 1))),
        };
        var rows = await (await _artifacts.AggregateAsync<BsonDocument>(pipeline, cancellationToken: token)).ToListAsync(token);
        // Found per (iteration, key), reported per key, as on SQLite.
        return (IReadOnlyList<DuplicateGroup>)rows.GroupBy(r => r["_id"]["key"].AsString)
            .Select(g => new DuplicateGroup(
                string.Join('+', g.SelectMany(r => r["kinds"].AsBsonArray.Select(k => k.AsString)).Distinct().Order(StringComparer.Ordinal)),
                g.Key,
                g.SelectMany(r => r["ids"].AsBsonArray.Select(i => i.AsString)).Order(StringComparer.Ordinal).ToList()))
            .OrderBy(g => g.LogicalKey, StringComparer.Ordinal).ToList();
    }, ct);

    public Task<IReadOnlyList<LineageStep>> GetLineageAsync(string checkpointId, CancellationToken ct = default) => Lineage.WalkAsync(this, checkpointId, ct);

    // ---- jobs -------------------------------------------------------------------------------------

    private static JobRecord ReadJob(BsonDocument d) => new()
    {
        Id = d["_id"].AsString,
        Kind = Enum.Parse<JobKind>(d["kind"].AsString),
        RunId = d["run_id"].AsString,
        Iteration = d["iteration"].ToInt32(),
        State = Enum.Parse<JobState>(d["state"].AsString),
        InputCheckpointId = Str(d, "input_checkpoint_id"),
        DatasetId = Str(d, "dataset_id"),
        OutputCheckpointId = Str(d, "output_checkpoint_id"),
        StateDir = Str(d, "state_dir"),
        ParametersJson = Str(d, "parameters_json"),
        Owner = Str(d, "owner"),
        HeartbeatAt = TimeOrNull(d, "heartbeat_at"),
        Step = d["step"].ToInt64(),
        TotalSteps = d["total_steps"].IsBsonNull ? null : d["total_steps"].ToInt64(),
        Attempts = d["attempts"].ToInt32(),
        Error = Str(d, "error"),
        CreatedAt = Time(d["created_at"]),
        UpdatedAt = Time(d["updated_at"]),
    };

    public Task<WriteOutcome> EnqueueJobAsync(JobRecord job, CancellationToken ct = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(job.Id);
        return R(async token =>
        {
            var now = NowUtc();
            try
            {
                await _jobs.InsertOneAsync(new BsonDocument
                {
                    { "_id", job.Id }, { "kind", job.Kind.ToString() }, { "run_id", job.RunId }, { "iteration", job.Iteration },
                    { "state", nameof(JobState.Queued) }, { "input_checkpoint_id", Nullable(job.InputCheckpointId) }, { "dataset_id", Nullable(job.DatasetId) },
                    { "output_checkpoint_id", Nullable(job.OutputCheckpointId) }, { "state_dir", Nullable(job.StateDir) },
                    { "parameters_json", Nullable(job.ParametersJson) }, { "owner", BsonNull.Value }, { "heartbeat_at", BsonNull.Value },
                    { "step", 0L }, { "total_steps", Nullable(job.TotalSteps) }, { "attempts", 0 }, { "error", BsonNull.Value },
                    { "created_at", now }, { "updated_at", now }, { "version", 0L },
                }, cancellationToken: token);
                return WriteOutcome.Inserted;
            }
            catch (MongoWriteException e) when (IsDuplicateKey(e))
            {
                return WriteOutcome.Unchanged;
            }
        }, ct);
    }

    public Task<JobRecord?> GetJobAsync(string jobId, CancellationToken ct = default) => R(async token =>
    {
        var d = await _jobs.Find(new BsonDocument("_id", jobId)).FirstOrDefaultAsync(token);
        return d is null ? null : ReadJob(d);
    }, ct);

    public Task<IReadOnlyList<JobRecord>> ListJobsAsync(string? runId = null, JobState? state = null, CancellationToken ct = default) => R(async token =>
    {
        var f = new BsonDocument();
        if (runId is not null) f["run_id"] = runId;
        if (state is not null) f["state"] = state.Value.ToString();
        var docs = await _jobs.Find(f).Sort(new BsonDocument { { "created_at", 1 }, { "_id", 1 } }).ToListAsync(token);
        return (IReadOnlyList<JobRecord>)docs.Select(ReadJob).ToList();
    }, ct);

    private bool Claimable(BsonDocument d, string owner, DateTime now, TimeSpan staleAfter)
    {
        var state = d["state"].AsString;
        if (state == nameof(JobState.Queued)) return true;
        if (state != nameof(JobState.Running)) return false;
        var hb = d["heartbeat_at"];
        return Str(d, "owner") == owner || hb.IsBsonNull || hb.ToUniversalTime() < now - staleAfter;
    }

    /// <summary>Claim with optimistic concurrency on the job's version; null when not claimable.</summary>
    private async Task<JobRecord?> ClaimDocAsync(BsonDocument d, string owner, TimeSpan staleAfter, CancellationToken ct)
    {
        var now = NowUtc();
        if (!Claimable(d, owner, now, staleAfter)) return null;
        var sameOwner = d["state"].AsString == nameof(JobState.Running) && Str(d, "owner") == owner;
        var updated = await _jobs.FindOneAndUpdateAsync(
            new BsonDocument { { "_id", d["_id"] }, { "version", d["version"] } },
            new BsonDocument
            {
                { "$set", new BsonDocument { { "state", nameof(JobState.Running) }, { "owner", owner }, { "heartbeat_at", now }, { "updated_at", now } } },
                { "$inc", new BsonDocument { { "version", 1L }, { "attempts", sameOwner ? 0 : 1 } } },
            },
            new FindOneAndUpdateOptions<BsonDocument> { ReturnDocument = ReturnDocument.After }, ct);
        if (updated is null) return null;
        await _runs.UpdateOneAsync(new BsonDocument("_id", updated["run_id"]), new BsonDocument("$set", new BsonDocument("last_progress_at", now)), cancellationToken: ct);
        return ReadJob(updated);
    }

    public Task<JobRecord?> TryClaimJobAsync(string jobId, string owner, TimeSpan staleAfter, CancellationToken ct = default) => R(async token =>
    {
        for (var attempt = 0; attempt < 5; attempt++)
        {
            var d = await _jobs.Find(new BsonDocument("_id", jobId)).FirstOrDefaultAsync(token);
            if (d is null || !Claimable(d, owner, NowUtc(), staleAfter)) return null;
            if (await ClaimDocAsync(d, owner, staleAfter, token) is { } job) return job;
        }
        return null;
    }, ct);

    public Task<JobRecord?> ClaimNextJobAsync(string owner, TimeSpan staleAfter, IReadOnlyCollection<JobKind>? kinds = null, CancellationToken ct = default) => R(async token =>
    {
        var f = new BsonDocument("state", new BsonDocument("$in", new BsonArray { nameof(JobState.Queued), nameof(JobState.Running) }));
        if (kinds is not null) f["kind"] = new BsonDocument("$in", new BsonArray(kinds.Select(k => k.ToString())));
        var docs = await _jobs.Find(f).Sort(new BsonDocument { { "created_at", 1 }, { "_id", 1 } }).ToListAsync(token);
        foreach (var d in docs)
            if (await ClaimDocAsync(d, owner, staleAfter, token) is { } job) return job;
        return null;
    }, ct);

    public Task<bool> HeartbeatJobAsync(string jobId, string owner, long step, string? stateDir = null, CancellationToken ct = default) => R(async token =>
    {
        var now = NowUtc();
        var set = new BsonDocument { { "heartbeat_at", now }, { "updated_at", now }, { "step", step } };
        if (stateDir is not null) set["state_dir"] = stateDir;
        var res = await _jobs.FindOneAndUpdateAsync(
            new BsonDocument { { "_id", jobId }, { "owner", owner }, { "state", nameof(JobState.Running) } },
            new BsonDocument { { "$set", set }, { "$inc", new BsonDocument("version", 1L) } }, cancellationToken: token);
        if (res is null) return false;
        await _runs.UpdateOneAsync(new BsonDocument("_id", res["run_id"]), new BsonDocument("$set", new BsonDocument("last_progress_at", now)), cancellationToken: token);
        return true;
    }, ct);

    public Task<bool> CompleteJobAsync(string jobId, string owner, string? outputCheckpointId = null, CancellationToken ct = default) => R(async token =>
    {
        var now = NowUtc();
        var set = new BsonDocument { { "state", nameof(JobState.Completed) }, { "updated_at", now }, { "heartbeat_at", now }, { "error", BsonNull.Value } };
        if (outputCheckpointId is not null) set["output_checkpoint_id"] = outputCheckpointId;
        var res = await _jobs.UpdateOneAsync(new BsonDocument { { "_id", jobId }, { "owner", owner }, { "state", nameof(JobState.Running) } },
            new BsonDocument { { "$set", set }, { "$inc", new BsonDocument("version", 1L) } }, cancellationToken: token);
        if (res.ModifiedCount == 1) return true;
        var d = await _jobs.Find(new BsonDocument("_id", jobId)).FirstOrDefaultAsync(token);
        return d is not null && d["state"].AsString == nameof(JobState.Completed);
    }, ct);

    public Task<bool> FailJobAsync(string jobId, string owner, string error, CancellationToken ct = default) => R(async token =>
    {
        var res = await _jobs.UpdateOneAsync(new BsonDocument { { "_id", jobId }, { "owner", owner }, { "state", nameof(JobState.Running) } },
            new BsonDocument
            {
                { "$set", new BsonDocument { { "state", nameof(JobState.Failed) }, { "updated_at", NowUtc() }, { "error", error } } },
                { "$inc", new BsonDocument("version", 1L) },
            }, cancellationToken: token);
        return res.ModifiedCount == 1;
    }, ct);

    // ---- metrics ----------------------------------------------------------------------------------

    public Task PutMetricsAsync(IEnumerable<MetricRecord> metrics, CancellationToken ct = default)
    {
        var models = metrics.Select(m => (WriteModel<BsonDocument>)new ReplaceOneModel<BsonDocument>(
            new BsonDocument("_id", $"{m.RunId}|{m.Iteration}|{m.Step}|{m.Name}"),
            new BsonDocument { { "_id", $"{m.RunId}|{m.Iteration}|{m.Step}|{m.Name}" }, { "run_id", m.RunId }, { "iteration", m.Iteration }, { "step", m.Step }, { "name", m.Name }, { "value", m.Value } })
        { IsUpsert = true }).ToList();
        if (models.Count == 0) return Task.CompletedTask;
        return R(token => _metrics.BulkWriteAsync(models, new BulkWriteOptions { IsOrdered = false }, token), ct);
    }

    public Task<IReadOnlyList<MetricRecord>> ListMetricsAsync(string runId, int? iteration = null, string? namePrefix = null, CancellationToken ct = default) => R(async token =>
    {
        var f = new BsonDocument("run_id", runId);
        if (iteration is not null) f["iteration"] = iteration.Value;
        var docs = await _metrics.Find(f).ToListAsync(token);
        return (IReadOnlyList<MetricRecord>)docs
            .Select(d => new MetricRecord(d["run_id"].AsString, d["iteration"].ToInt32(), d["step"].ToInt64(), d["name"].AsString, d["value"].ToDouble()))
            .Where(m => namePrefix is null || m.Name.StartsWith(namePrefix, StringComparison.Ordinal))
            .OrderBy(m => m.Iteration).ThenBy(m => m.Step).ThenBy(m => m.Name, StringComparer.Ordinal).ToList();
    }, ct);

    // ---- blobs ------------------------------------------------------------------------------------

    /// <summary>Blobs live in documents; MongoDB caps a document at 16 MB.</summary>
    public const int MaxBlobBytes = 15 * 1024 * 1024;

    public Task<BlobInfo> PutBlobAsync(ReadOnlyMemory<byte> content, string? name = null, string? mediaType = null, CancellationToken ct = default)
    {
        if (content.Length > MaxBlobBytes)
            throw new InvalidDataException($"blob {name ?? "(unnamed)"} is {content.Length} bytes; the MongoDB store keeps blobs up to {MaxBlobBytes} bytes");
        var sha = ArtifactJson.Sha256Hex(content.Span);
        var bytes = content.ToArray();
        return R(async token =>
        {
            try
            {
                await _blobs.InsertOneAsync(new BsonDocument
                {
                    { "_id", sha }, { "size", (long)bytes.Length }, { "name", Nullable(name) }, { "media_type", Nullable(mediaType) },
                    { "content", new BsonBinaryData(bytes) }, { "created_at", NowUtc() },
                }, cancellationToken: token);
            }
            catch (MongoWriteException e) when (IsDuplicateKey(e)) { }
            return (await GetBlobInfoAsync(sha, token))!;
        }, ct);
    }

    public Task<BlobInfo?> GetBlobInfoAsync(string sha256, CancellationToken ct = default) => R(async token =>
    {
        var d = await _blobs.Find(new BsonDocument("_id", sha256.ToLowerInvariant())).Project(new BsonDocument("content", 0)).FirstOrDefaultAsync(token);
        return d is null ? null : new BlobInfo(d["_id"].AsString, d["size"].ToInt64(), Str(d, "name"), Str(d, "media_type"), Time(d["created_at"]));
    }, ct);

    public Task<byte[]?> GetBlobAsync(string sha256, CancellationToken ct = default) => R(async token =>
    {
        var d = await _blobs.Find(new BsonDocument("_id", sha256.ToLowerInvariant())).FirstOrDefaultAsync(token);
        if (d is null) return null;
        var bytes = d["content"].AsBsonBinaryData.Bytes;
        var actual = ArtifactJson.Sha256Hex(bytes);
        return actual == sha256.ToLowerInvariant() ? bytes
            : throw new StoreIntegrityException($"blob {sha256} in {Location} is corrupt: its bytes hash to {actual}");
    }, ct);

    // ---- journal ----------------------------------------------------------------------------------

    private async Task<long> NextSequenceAsync(string name, CancellationToken ct)
    {
        var d = await _counters.FindOneAndUpdateAsync(new BsonDocument("_id", name), new BsonDocument("$inc", new BsonDocument("value", 1L)),
            new FindOneAndUpdateOptions<BsonDocument> { IsUpsert = true, ReturnDocument = ReturnDocument.After }, ct);
        return d["value"].ToInt64();
    }

    /// <summary>One entry after the other (each is its own idempotent insert with its own sequence number).</summary>
    public async Task<IReadOnlyList<WriteOutcome>> AppendJournalManyAsync(IReadOnlyList<JournalEntry> entries, CancellationToken ct = default)
    {
        foreach (var e in entries) ArgumentException.ThrowIfNullOrWhiteSpace(e.Id);
        var outcomes = new WriteOutcome[entries.Count];
        for (int i = 0; i < entries.Count; i++) outcomes[i] = await AppendJournalAsync(entries[i], ct);
        return outcomes;
    }

    public Task<WriteOutcome> AppendJournalAsync(JournalEntry e, CancellationToken ct = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(e.Id);
        return R(async token =>
        {
            if (await _journal.CountDocumentsAsync(new BsonDocument("_id", e.Id), cancellationToken: token) > 0) return WriteOutcome.Unchanged;
            var seq = await NextSequenceAsync("journal", token);
            try
            {
                await _journal.InsertOneAsync(new BsonDocument
                {
                    { "_id", e.Id }, { "seq", seq }, { "message_id", e.MessageId }, { "conversation_id", Nullable(e.ConversationId) },
                    { "correlation_id", Nullable(e.CorrelationId) }, { "message_type", e.MessageType }, { "direction", e.Direction.ToString() },
                    { "endpoint", Nullable(e.Endpoint) }, { "headers_json", ArtifactJson.Serialize(e.Headers) }, { "body_json", e.BodyJson }, { "time", e.Time.UtcDateTime },
                    { "time_text", ArtifactJson.Time(e.Time) }, { "host", Nullable(e.Host) }, { "run_id", Nullable(e.RunId) }, { "iteration", Nullable(e.Iteration) },
                }, cancellationToken: token);
                return WriteOutcome.Inserted;
            }
            catch (MongoWriteException ex) when (IsDuplicateKey(ex))
            {
                return WriteOutcome.Unchanged;
            }
        }, ct);
    }

    private static BsonDocument JournalFilter(JournalQuery q)
    {
        var f = new BsonDocument("seq", new BsonDocument("$gt", q.AfterSequence));
        if (q.RunId is not null) f["run_id"] = q.RunId;
        if (q.Iteration is not null) f["iteration"] = q.Iteration.Value;
        if (q.MessageType is not null) f["message_type"] = q.MessageType;
        if (q.Direction is not null) f["direction"] = q.Direction.Value.ToString();
        if (q.MessageId is not null) f["message_id"] = q.MessageId;
        return f;
    }

    public Task<IReadOnlyList<JournalEntry>> QueryJournalAsync(JournalQuery query, CancellationToken ct = default) => R(async token =>
    {
        if (query.Limit <= 0) return [];
        var find = _journal.Find(JournalFilter(query)).Sort(new BsonDocument("seq", 1));
        if (query.Limit < int.MaxValue) find = find.Limit(query.Limit);
        var docs = await find.ToListAsync(token);
        return (IReadOnlyList<JournalEntry>)docs.Select(d => new JournalEntry
        {
            Id = d["_id"].AsString,
            Sequence = d["seq"].ToInt64(),
            MessageId = d["message_id"].AsString,
            ConversationId = Str(d, "conversation_id"),
            CorrelationId = Str(d, "correlation_id"),
            MessageType = d["message_type"].AsString,
            Direction = Enum.Parse<JournalDirection>(d["direction"].AsString),
            Endpoint = Str(d, "endpoint"),
            // Header names may hold '.' or '$', which BSON field names should not: kept as JSON text.
            Headers = ArtifactJson.Read<Dictionary<string, string>>(d["headers_json"].AsString),
            BodyJson = d["body_json"].AsString,
            Time = ArtifactJson.ParseTime(d["time_text"].AsString),
            Host = Str(d, "host"),
            RunId = Str(d, "run_id"),
            Iteration = d["iteration"].IsBsonNull ? null : d["iteration"].ToInt32(),
        }).ToList();
    }, ct);

    public Task<long> CountJournalAsync(JournalQuery query, CancellationToken ct = default) =>
        R(token => _journal.CountDocumentsAsync(JournalFilter(query), cancellationToken: token), ct);

    // ---- errors -----------------------------------------------------------------------------------

    public Task<WriteOutcome> PutErrorAsync(ErrorRecord e, CancellationToken ct = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(e.Id);
        return R(async token =>
        {
            try
            {
                await _errors.InsertOneAsync(new BsonDocument
                {
                    { "_id", e.Id }, { "message_id", Nullable(e.MessageId) }, { "message_type", e.MessageType }, { "queue", Nullable(e.Queue) },
                    { "reason", e.Reason }, { "exception_type", Nullable(e.ExceptionType) }, { "body_json", Nullable(e.BodyJson) },
                    { "run_id", Nullable(e.RunId) }, { "iteration", Nullable(e.Iteration) }, { "time", e.Time.UtcDateTime },
                    { "time_text", ArtifactJson.Time(e.Time) }, { "host", Nullable(e.Host) }, { "requeued_at", BsonNull.Value },
                }, cancellationToken: token);
                return WriteOutcome.Inserted;
            }
            catch (MongoWriteException ex) when (IsDuplicateKey(ex))
            {
                return WriteOutcome.Unchanged;
            }
        }, ct);
    }

    public Task<IReadOnlyList<ErrorRecord>> ListErrorsAsync(string? runId = null, bool includeRequeued = false, CancellationToken ct = default) => R(async token =>
    {
        var f = new BsonDocument();
        if (runId is not null) f["run_id"] = runId;
        if (!includeRequeued) f["requeued_at"] = BsonNull.Value;
        var docs = await _errors.Find(f).Sort(new BsonDocument { { "time", 1 }, { "_id", 1 } }).ToListAsync(token);
        return (IReadOnlyList<ErrorRecord>)docs.Select(d => new ErrorRecord
        {
            Id = d["_id"].AsString,
            MessageId = Str(d, "message_id"),
            MessageType = d["message_type"].AsString,
            Queue = Str(d, "queue"),
            Reason = d["reason"].AsString,
            ExceptionType = Str(d, "exception_type"),
            BodyJson = Str(d, "body_json"),
            RunId = Str(d, "run_id"),
            Iteration = d["iteration"].IsBsonNull ? null : d["iteration"].ToInt32(),
            Time = ArtifactJson.ParseTime(d["time_text"].AsString),
            Host = Str(d, "host"),
            RequeuedAt = TimeOrNull(d, "requeued_at"),
        }).ToList();
    }, ct);

    public Task<bool> MarkErrorRequeuedAsync(string errorId, CancellationToken ct = default) => R(async token =>
    {
        var res = await _errors.UpdateOneAsync(new BsonDocument { { "_id", errorId }, { "requeued_at", BsonNull.Value } },
            new BsonDocument("$set", new BsonDocument("requeued_at", NowUtc())), cancellationToken: token);
        return res.ModifiedCount == 1;
    }, ct);
}
