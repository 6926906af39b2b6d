namespace Srlm.Storage.Mongo;

// MongoArtifactStore: journal.
public sealed partial class MongoArtifactStore
{
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
}
