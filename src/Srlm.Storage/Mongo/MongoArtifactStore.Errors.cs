namespace Srlm.Storage.Mongo;

// MongoArtifactStore: errors.
public sealed partial class MongoArtifactStore
{
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
