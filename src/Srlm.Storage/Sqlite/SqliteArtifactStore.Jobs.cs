namespace Srlm.Storage.Sqlite;

// SqliteArtifactStore: jobs.
public sealed partial class SqliteArtifactStore
{
    private const string JobColumns = "id, kind, run_id, iteration, state, input_checkpoint_id, dataset_id, output_checkpoint_id, state_dir, " +
                                      "parameters_json, owner, heartbeat_at, step, total_steps, attempts, error, created_at, updated_at";

    private static string? S(SqliteDataReader r, int i) => r.IsDBNull(i) ? null : r.GetString(i);

    private static JobRecord ReadJob(SqliteDataReader r) => new()
    {
        Id = r.GetString(0),
        Kind = Enum.Parse<JobKind>(r.GetString(1)),
        RunId = r.GetString(2),
        Iteration = r.GetInt32(3),
        State = Enum.Parse<JobState>(r.GetString(4)),
        InputCheckpointId = S(r, 5),
        DatasetId = S(r, 6),
        OutputCheckpointId = S(r, 7),
        StateDir = S(r, 8),
        ParametersJson = S(r, 9),
        Owner = S(r, 10),
        HeartbeatAt = r.IsDBNull(11) ? null : ArtifactJson.ParseTime(r.GetString(11)),
        Step = r.GetInt64(12),
        TotalSteps = r.IsDBNull(13) ? null : r.GetInt64(13),
        Attempts = r.GetInt32(14),
        Error = S(r, 15),
        CreatedAt = ArtifactJson.ParseTime(r.GetString(16)),
        UpdatedAt = ArtifactJson.ParseTime(r.GetString(17)),
    };

    private static JobRecord? SelectJob(SqliteConnection c, SqliteTransaction? tx, string id)
    {
        using var cmd = Cmd(c, $"SELECT {JobColumns} FROM jobs WHERE id=$id", tx, ("$id", id));
        using var r = cmd.ExecuteReader();
        return r.Read() ? ReadJob(r) : null;
    }

    public Task<WriteOutcome> EnqueueJobAsync(JobRecord job, CancellationToken ct = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(job.Id);
        return InWriteTransaction((c, tx) =>
        {
            var now = Now();
            using var ins = Cmd(c, $"""
                INSERT INTO jobs({JobColumns}) VALUES($id, $kind, $run, $t, 'Queued', $in, $ds, $out, $sd, $par, NULL, NULL, 0, $total, 0, NULL, $now, $now)
                ON CONFLICT(id) DO NOTHING
                """, tx, ("$id", job.Id), ("$kind", job.Kind.ToString()), ("$run", job.RunId), ("$t", job.Iteration),
                ("$in", job.InputCheckpointId), ("$ds", job.DatasetId), ("$out", job.OutputCheckpointId), ("$sd", job.StateDir),
                ("$par", job.ParametersJson), ("$total", job.TotalSteps), ("$now", now));
            return ins.ExecuteNonQuery() == 1 ? WriteOutcome.Inserted : WriteOutcome.Unchanged;
        }, ct);
    }

    public Task<JobRecord?> GetJobAsync(string jobId, CancellationToken ct = default) => WithConnection(c => SelectJob(c, null, jobId), ct);

    public Task<IReadOnlyList<JobRecord>> ListJobsAsync(string? runId = null, JobState? state = null, CancellationToken ct = default) => WithConnection(c =>
    {
        using var cmd = Cmd(c, $"SELECT {JobColumns} FROM jobs WHERE ($run IS NULL OR run_id=$run) AND ($s IS NULL OR state=$s) ORDER BY created_at, id",
            null, ("$run", runId), ("$s", state?.ToString()));
        using var r = cmd.ExecuteReader();
        var list = new List<JobRecord>();
        while (r.Read()) list.Add(ReadJob(r));
        return (IReadOnlyList<JobRecord>)list;
    }, ct);

    private bool ClaimInTransaction(SqliteConnection c, SqliteTransaction tx, string jobId, string owner, TimeSpan staleAfter)
    {
        var now = _clock.GetUtcNow();
        using var cmd = Cmd(c, """
            UPDATE jobs SET state='Running', owner=$o, heartbeat_at=$now, updated_at=$now,
                   attempts = attempts + (CASE WHEN state='Running' AND owner=$o THEN 0 ELSE 1 END)
            WHERE id=$id AND (state='Queued' OR (state='Running' AND (owner=$o OR heartbeat_at IS NULL OR heartbeat_at < $stale)))
            """, tx, ("$o", owner), ("$now", ArtifactJson.Time(now)), ("$id", jobId), ("$stale", ArtifactJson.Time(now - staleAfter)));
        if (cmd.ExecuteNonQuery() != 1) return false;
        using var touch = Cmd(c, "UPDATE runs SET last_progress_at=$now WHERE id=(SELECT run_id FROM jobs WHERE id=$id)", tx,
            ("$now", ArtifactJson.Time(now)), ("$id", jobId));
        touch.ExecuteNonQuery();
        return true;
    }

    public Task<JobRecord?> TryClaimJobAsync(string jobId, string owner, TimeSpan staleAfter, CancellationToken ct = default) =>
        InWriteTransaction((c, tx) => ClaimInTransaction(c, tx, jobId, owner, staleAfter) ? SelectJob(c, tx, jobId) : null, ct);

    public Task<JobRecord?> ClaimNextJobAsync(string owner, TimeSpan staleAfter, IReadOnlyCollection<JobKind>? kinds = null, CancellationToken ct = default) =>
        InWriteTransaction((c, tx) =>
        {
            var stale = ArtifactJson.Time(_clock.GetUtcNow() - staleAfter);
            using var cmd = Cmd(c, """
                SELECT id, kind FROM jobs
                WHERE state='Queued' OR (state='Running' AND (owner=$o OR heartbeat_at IS NULL OR heartbeat_at < $stale))
                ORDER BY created_at, id
                """, tx, ("$o", owner), ("$stale", stale));
            var ids = new List<string>();
            using (var r = cmd.ExecuteReader())
                while (r.Read())
                    if (kinds is null || kinds.Contains(Enum.Parse<JobKind>(r.GetString(1)))) ids.Add(r.GetString(0));
            foreach (var id in ids)
                if (ClaimInTransaction(c, tx, id, owner, staleAfter)) return SelectJob(c, tx, id);
            return null;
        }, ct);

    public Task<bool> HeartbeatJobAsync(string jobId, string owner, long step, string? stateDir = null, CancellationToken ct = default) =>
        InWriteTransaction((c, tx) =>
        {
            var now = Now();
            using var cmd = Cmd(c, """
                UPDATE jobs SET heartbeat_at=$now, updated_at=$now, step=$step, state_dir=COALESCE($sd, state_dir)
                WHERE id=$id AND owner=$o AND state='Running'
                """, tx, ("$now", now), ("$step", step), ("$sd", stateDir), ("$id", jobId), ("$o", owner));
            if (cmd.ExecuteNonQuery() != 1) return false;
            using var touch = Cmd(c, "UPDATE runs SET last_progress_at=$now WHERE id=(SELECT run_id FROM jobs WHERE id=$id)", tx, ("$now", now), ("$id", jobId));
            touch.ExecuteNonQuery();
            return true;
        }, ct);

    public Task<bool> CompleteJobAsync(string jobId, string owner, string? outputCheckpointId = null, CancellationToken ct = default) =>
        InWriteTransaction((c, tx) =>
        {
            using var cmd = Cmd(c, """
                UPDATE jobs SET state='Completed', updated_at=$now, heartbeat_at=$now, output_checkpoint_id=COALESCE($out, output_checkpoint_id), error=NULL
                WHERE id=$id AND owner=$o AND state='Running'
                """, tx, ("$now", Now()), ("$out", outputCheckpointId), ("$id", jobId), ("$o", owner));
            if (cmd.ExecuteNonQuery() == 1) return true;
            return SelectJob(c, tx, jobId)?.State == JobState.Completed;
        }, ct);

    public Task<bool> FailJobAsync(string jobId, string owner, string error, CancellationToken ct = default) =>
        InWriteTransaction((c, tx) =>
        {
            using var cmd = Cmd(c, "UPDATE jobs SET state='Failed', updated_at=$now, error=$e WHERE id=$id AND owner=$o AND state='Running'",
                tx, ("$now", Now()), ("$e", error), ("$id", jobId), ("$o", owner));
            return cmd.ExecuteNonQuery() == 1;
        }, ct);
}
