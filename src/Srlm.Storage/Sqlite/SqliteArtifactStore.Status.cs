namespace Srlm.Storage.Sqlite;

// SqliteArtifactStore: completion and status.
public sealed partial class SqliteArtifactStore
{
    public Task<long> CountSettledPromptsAsync(string runId, int iteration, CancellationToken ct = default) => WithConnection(c =>
    {
        using var cmd = Cmd(c, "SELECT COUNT(DISTINCT parent_id) FROM artifacts WHERE run_id=$run AND iteration=$t AND kind IN ('pair', 'pair_drop')",
            null, ("$run", runId), ("$t", iteration));
        return (long)cmd.ExecuteScalar()!;
    }, ct);

    private HashSet<string> SettledPromptIds(SqliteConnection c, string runId, int iteration)
    {
        using var cmd = Cmd(c, "SELECT DISTINCT parent_id FROM artifacts WHERE run_id=$run AND iteration=$t AND kind IN ('pair', 'pair_drop')",
            null, ("$run", runId), ("$t", iteration));
        using var r = cmd.ExecuteReader();
        var set = new HashSet<string>(StringComparer.Ordinal);
        while (r.Read()) if (!r.IsDBNull(0)) set.Add(r.GetString(0));
        return set;
    }

    public async Task<IReadOnlyList<string>> ListUnsettledPromptsAsync(string runId, int iteration, CancellationToken ct = default)
    {
        var sets = await ListAsync<PromptSetFinalRecord>(ArtifactQuery.OfRun(runId, iteration), ct);
        if (sets.Count == 0) return [];
        var settled = await WithConnection(c => SettledPromptIds(c, runId, iteration), ct);
        return sets[0].PromptIds.Where(p => !settled.Contains(p)).Distinct().ToList();
    }

    public async Task<IterationStatus> GetIterationStatusAsync(string runId, int iteration, CancellationToken ct = default)
    {
        var counts = await WithConnection(c =>
        {
            using var cmd = Cmd(c, "SELECT kind, COALESCE(tag, ''), COUNT(*) FROM artifacts WHERE run_id=$run AND iteration=$t GROUP BY kind, tag",
                null, ("$run", runId), ("$t", iteration));
            using var r = cmd.ExecuteReader();
            var d = new Dictionary<(string, string), long>();
            while (r.Read()) d[(r.GetString(0), r.GetString(1))] = r.GetInt64(2);
            return d;
        }, ct);
        var (duplicates, settled) = await WithConnection(c =>
        {
            using var dup = Cmd(c, """
                SELECT COALESCE(SUM(n - 1), 0) FROM
                  (SELECT COUNT(*) AS n FROM artifacts WHERE run_id=$run AND iteration=$t GROUP BY logical_key HAVING COUNT(*) > 1)
                """, null, ("$run", runId), ("$t", iteration));
            using var set = Cmd(c, "SELECT COUNT(DISTINCT parent_id) FROM artifacts WHERE run_id=$run AND iteration=$t AND kind IN ('pair', 'pair_drop')",
                null, ("$run", runId), ("$t", iteration));
            return ((long)dup.ExecuteScalar()!, (long)set.ExecuteScalar()!);
        }, ct);
        var finalSet = (await ListAsync<PromptSetFinalRecord>(ArtifactQuery.OfRun(runId, iteration), ct)).FirstOrDefault();
        var start = (await ListAsync<IterationRecord>(ArtifactQuery.OfRun(runId, iteration), ct)).FirstOrDefault();
        var output = (await ListAsync<CheckpointRecord>(ArtifactQuery.OfRun(runId, iteration + 1), ct)).FirstOrDefault(c => c.IsMain);
        return StatusMath.Build(runId, iteration, counts, duplicates, settled, finalSet, start, output);
    }

    public async Task<IReadOnlyList<IterationStatus>> GetRunStatusAsync(string runId, CancellationToken ct = default)
    {
        var iterations = await WithConnection(c =>
        {
            using var cmd = Cmd(c, "SELECT DISTINCT iteration FROM artifacts WHERE run_id=$run AND kind NOT IN ('checkpoint', 'evaluation') ORDER BY iteration",
                null, ("$run", runId));
            using var r = cmd.ExecuteReader();
            var list = new List<int>();
            while (r.Read()) list.Add(r.GetInt32(0));
            return list;
        }, ct);
        var result = new List<IterationStatus>();
        foreach (var t in iterations) result.Add(await GetIterationStatusAsync(runId, t, ct));
        return result;
    }

    public Task<IReadOnlyList<DuplicateGroup>> ListDuplicatesAsync(string runId, int? iteration = null, CancellationToken ct = default) => WithConnection(c =>
    {
        using var cmd = Cmd(c, """
            SELECT a.kind, a.logical_key, a.id FROM artifacts a
            JOIN (SELECT iteration, logical_key FROM artifacts WHERE run_id=$run AND ($t IS NULL OR iteration=$t)
                  GROUP BY iteration, logical_key HAVING COUNT(*) > 1) d
              ON a.iteration = d.iteration AND a.logical_key = d.logical_key
            WHERE a.run_id=$run ORDER BY a.logical_key, a.id
            """, null, ("$run", runId), ("$t", iteration));
        using var r = cmd.ExecuteReader();
        var rows = new List<(string Kind, string Key, string Id)>();
        while (r.Read()) rows.Add((r.GetString(0), r.GetString(1), r.GetString(2)));
        return (IReadOnlyList<DuplicateGroup>)rows.GroupBy(x => x.Key)
            .Select(g => new DuplicateGroup(string.Join('+', g.Select(x => x.Kind).Distinct().Order(StringComparer.Ordinal)), g.Key, g.Select(x => x.Id).Order(StringComparer.Ordinal).ToList()))
            .ToList();
    }, ct);

    public Task<IReadOnlyList<LineageStep>> GetLineageAsync(string checkpointId, CancellationToken ct = default) =>
        Lineage.WalkAsync(this, checkpointId, ct);
}
