namespace Srlm.Storage.Mongo;

// MongoArtifactStore: metrics.
public sealed partial class MongoArtifactStore
{
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
}
