namespace Srlm.Storage.Sqlite;

// SqliteArtifactStore: runs.
public sealed partial class SqliteArtifactStore
{
    public Task<WriteOutcome> CreateRunAsync(string runId, string specJson, int specSchemaVersion, CancellationToken ct = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(runId);
        ArgumentNullException.ThrowIfNull(specJson);
        return InWriteTransaction((c, tx) =>
        {
            var now = Now();
            using var ins = Cmd(c, """
                INSERT INTO runs(id, spec_json, spec_version, state, failure_reason, created_at, updated_at, last_progress_at)
                VALUES($id, $spec, $v, 'Running', NULL, $now, $now, $now) ON CONFLICT(id) DO NOTHING
                """, tx, ("$id", runId), ("$spec", specJson), ("$v", specSchemaVersion), ("$now", now));
            if (ins.ExecuteNonQuery() == 1) return WriteOutcome.Inserted;
            using var sel = Cmd(c, "SELECT spec_json, spec_version FROM runs WHERE id=$id", tx, ("$id", runId));
            using var r = sel.ExecuteReader();
            r.Read();
            return r.GetString(0) == specJson && r.GetInt32(1) == specSchemaVersion ? WriteOutcome.Unchanged : WriteOutcome.Conflict;
        }, ct);
    }

    private static RunRecord ReadRun(SqliteDataReader r) => new()
    {
        Id = r.GetString(0),
        SpecJson = r.GetString(1),
        SpecSchemaVersion = r.GetInt32(2),
        State = Enum.Parse<RunState>(r.GetString(3)),
        FailureReason = r.IsDBNull(4) ? null : r.GetString(4),
        CreatedAt = ArtifactJson.ParseTime(r.GetString(5)),
        UpdatedAt = ArtifactJson.ParseTime(r.GetString(6)),
        LastProgressAt = ArtifactJson.ParseTime(r.GetString(7)),
    };

    private const string RunColumns = "id, spec_json, spec_version, state, failure_reason, created_at, updated_at, last_progress_at";

    public Task<RunRecord?> GetRunAsync(string runId, CancellationToken ct = default) => WithConnection(c =>
    {
        using var cmd = Cmd(c, $"SELECT {RunColumns} FROM runs WHERE id=$id", null, ("$id", runId));
        using var r = cmd.ExecuteReader();
        return r.Read() ? ReadRun(r) : null;
    }, ct);

    public Task<IReadOnlyList<RunRecord>> ListRunsAsync(CancellationToken ct = default) => WithConnection(c =>
    {
        using var cmd = Cmd(c, $"SELECT {RunColumns} FROM runs ORDER BY created_at DESC, id");
        using var r = cmd.ExecuteReader();
        var list = new List<RunRecord>();
        while (r.Read()) list.Add(ReadRun(r));
        return (IReadOnlyList<RunRecord>)list;
    }, ct);

    public Task<WriteOutcome> SetRunStateAsync(string runId, RunState state, string? failureReason = null, CancellationToken ct = default) =>
        InWriteTransaction((c, tx) =>
        {
            using var sel = Cmd(c, "SELECT state FROM runs WHERE id=$id", tx, ("$id", runId));
            var current = sel.ExecuteScalar() as string ?? throw new KeyNotFoundException($"run {runId} is not in store {Location}");
            var cur = Enum.Parse<RunState>(current);
            if (cur != RunState.Running || cur == state) return WriteOutcome.Unchanged;
            using var upd = Cmd(c, "UPDATE runs SET state=$s, failure_reason=$f, updated_at=$now, last_progress_at=$now WHERE id=$id", tx,
                ("$s", state.ToString()), ("$f", failureReason), ("$now", Now()), ("$id", runId));
            upd.ExecuteNonQuery();
            return WriteOutcome.Updated;
        }, ct);

    public Task<WriteOutcome> ReopenFailedRunAsync(string runId, CancellationToken ct = default) =>
        InWriteTransaction((c, tx) =>
        {
            using var upd = Cmd(c, "UPDATE runs SET state='Running', failure_reason=NULL, updated_at=$now, last_progress_at=$now WHERE id=$id AND state='Failed'",
                tx, ("$now", Now()), ("$id", runId));
            if (upd.ExecuteNonQuery() == 1) return WriteOutcome.Updated;
            using var sel = Cmd(c, "SELECT COUNT(*) FROM runs WHERE id=$id", tx, ("$id", runId));
            return (long)sel.ExecuteScalar()! == 1 ? WriteOutcome.Unchanged : throw new KeyNotFoundException($"run {runId} is not in store {Location}");
        }, ct);

    public Task TouchRunAsync(string runId, CancellationToken ct = default) => WithConnection(c =>
    {
        using var cmd = Cmd(c, "UPDATE runs SET last_progress_at=$now WHERE id=$id", null, ("$now", Now()), ("$id", runId));
        return cmd.ExecuteNonQuery();
    }, ct);
}
