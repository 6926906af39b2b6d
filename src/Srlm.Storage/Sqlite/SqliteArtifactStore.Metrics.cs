namespace Srlm.Storage.Sqlite;

// SqliteArtifactStore: metrics.
public sealed partial class SqliteArtifactStore
{
    public Task PutMetricsAsync(IEnumerable<MetricRecord> metrics, CancellationToken ct = default)
    {
        var list = metrics.ToList();
        return InWriteTransaction((c, tx) =>
        {
            using var cmd = Cmd(c, """
                INSERT INTO metrics(run_id, iteration, step, name, value) VALUES($run, $t, $step, $name, $v)
                ON CONFLICT(run_id, iteration, step, name) DO UPDATE SET value=$v
                """, tx, ("$run", ""), ("$t", 0), ("$step", 0L), ("$name", ""), ("$v", 0.0));
            foreach (var m in list)
            {
                cmd.Parameters["$run"].Value = m.RunId;
                cmd.Parameters["$t"].Value = m.Iteration;
                cmd.Parameters["$step"].Value = m.Step;
                cmd.Parameters["$name"].Value = m.Name;
                cmd.Parameters["$v"].Value = m.Value;
                cmd.ExecuteNonQuery();
            }
            return list.Count;
        }, ct);
    }

    public Task<IReadOnlyList<MetricRecord>> ListMetricsAsync(string runId, int? iteration = null, string? namePrefix = null, CancellationToken ct = default) =>
        WithConnection(c =>
        {
            using var cmd = Cmd(c, """
                SELECT run_id, iteration, step, name, value FROM metrics
                WHERE run_id=$run AND ($t IS NULL OR iteration=$t) AND ($p IS NULL OR substr(name, 1, length($p)) = $p)
                ORDER BY iteration, step, name
                """, null, ("$run", runId), ("$t", iteration), ("$p", namePrefix));
            using var r = cmd.ExecuteReader();
            var list = new List<MetricRecord>();
            while (r.Read()) list.Add(new MetricRecord(r.GetString(0), r.GetInt32(1), r.GetInt64(2), r.GetString(3), r.GetDouble(4)));
            return (IReadOnlyList<MetricRecord>)list;
        }, ct);
}
