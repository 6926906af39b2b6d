namespace Srlm.Storage.Sqlite;

// SqliteArtifactStore: errors.
public sealed partial class SqliteArtifactStore
{
    public Task<WriteOutcome> PutErrorAsync(ErrorRecord e, CancellationToken ct = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(e.Id);
        return InWriteTransaction((c, tx) =>
        {
            using var ins = Cmd(c, """
                INSERT INTO errors(id, message_id, message_type, queue, reason, exception_type, body_json, run_id, iteration, time, host, requeued_at)
                VALUES($id, $mid, $type, $q, $reason, $ex, $body, $run, $t, $time, $host, NULL) ON CONFLICT(id) DO NOTHING
                """, tx, ("$id", e.Id), ("$mid", e.MessageId), ("$type", e.MessageType), ("$q", e.Queue), ("$reason", e.Reason),
                ("$ex", e.ExceptionType), ("$body", e.BodyJson), ("$run", e.RunId), ("$t", e.Iteration), ("$time", ArtifactJson.Time(e.Time)), ("$host", e.Host));
            return ins.ExecuteNonQuery() == 1 ? WriteOutcome.Inserted : WriteOutcome.Unchanged;
        }, ct);
    }

    public Task<IReadOnlyList<ErrorRecord>> ListErrorsAsync(string? runId = null, bool includeRequeued = false, CancellationToken ct = default) => WithConnection(c =>
    {
        using var cmd = Cmd(c, """
            SELECT id, message_id, message_type, queue, reason, exception_type, body_json, run_id, iteration, time, host, requeued_at FROM errors
            WHERE ($run IS NULL OR run_id=$run) AND ($all = 1 OR requeued_at IS NULL) ORDER BY time, id
            """, null, ("$run", runId), ("$all", includeRequeued ? 1 : 0));
        using var r = cmd.ExecuteReader();
        var list = new List<ErrorRecord>();
        while (r.Read())
            list.Add(new ErrorRecord
            {
                Id = r.GetString(0),
                MessageId = S(r, 1),
                MessageType = r.GetString(2),
                Queue = S(r, 3),
                Reason = r.GetString(4),
                ExceptionType = S(r, 5),
                BodyJson = S(r, 6),
                RunId = S(r, 7),
                Iteration = r.IsDBNull(8) ? null : r.GetInt32(8),
                Time = ArtifactJson.ParseTime(r.GetString(9)),
                Host = S(r, 10),
                RequeuedAt = r.IsDBNull(11) ? null : ArtifactJson.ParseTime(r.GetString(11)),
            });
        return (IReadOnlyList<ErrorRecord>)list;
    }, ct);

    public Task<bool> MarkErrorRequeuedAsync(string errorId, CancellationToken ct = default) => InWriteTransaction((c, tx) =>
    {
        using var cmd = Cmd(c, "UPDATE errors SET requeued_at=$now WHERE id=$id AND requeued_at IS NULL", tx, ("$now", Now()), ("$id", errorId));
        return cmd.ExecuteNonQuery() == 1;
    }, ct);
}
