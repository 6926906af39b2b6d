namespace Srlm.Storage.Mongo;

// MongoArtifactStore: completion and status.
public sealed partial class MongoArtifactStore
{
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
}
