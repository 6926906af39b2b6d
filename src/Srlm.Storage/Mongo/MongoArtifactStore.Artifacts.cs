namespace Srlm.Storage.Mongo;

// MongoArtifactStore: artifacts.
public sealed partial class MongoArtifactStore : IArtifactOverwrite
{
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

    Task<WriteOutcome> IArtifactOverwrite.OverwriteAsync<T>(T artifact, CancellationToken ct)
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
}
