namespace Srlm.Storage.Mongo;

// MongoArtifactStore: runs.
public sealed partial class MongoArtifactStore
{
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
}
