namespace Srlm.Storage.Sqlite;

// SqliteArtifactStore: journal.
public sealed partial class SqliteArtifactStore
{
    /// <summary>One entry: the batch path with one element (the same statement, one transaction).</summary>
    public async Task<WriteOutcome> AppendJournalAsync(JournalEntry e, CancellationToken ct = default) => (await AppendJournalManyAsync([e], ct))[0];

    public Task<IReadOnlyList<WriteOutcome>> AppendJournalManyAsync(IReadOnlyList<JournalEntry> entries, CancellationToken ct = default)
    {
        foreach (var e in entries) ArgumentException.ThrowIfNullOrWhiteSpace(e.Id);
        return InWriteTransaction((c, tx) =>
        {
            using var ins = Cmd(c, """
                INSERT INTO journal(id, message_id, conversation_id, correlation_id, message_type, direction, endpoint, headers_json, body_json, time, host, run_id, iteration)
                VALUES($id, $mid, $conv, $corr, $type, $dir, $ep, $hdr, $body, $time, $host, $run, $t) ON CONFLICT(id) DO NOTHING
                """, tx, ("$id", ""), ("$mid", ""), ("$conv", null), ("$corr", null), ("$type", ""), ("$dir", ""), ("$ep", null), ("$hdr", ""),
                ("$body", ""), ("$time", ""), ("$host", null), ("$run", null), ("$t", null));
            var outcomes = new WriteOutcome[entries.Count];
            for (int i = 0; i < entries.Count; i++)
            {
                var e = entries[i];
                ins.Parameters["$id"].Value = e.Id;
                ins.Parameters["$mid"].Value = e.MessageId;
                ins.Parameters["$conv"].Value = (object?)e.ConversationId ?? DBNull.Value;
                ins.Parameters["$corr"].Value = (object?)e.CorrelationId ?? DBNull.Value;
                ins.Parameters["$type"].Value = e.MessageType;
                ins.Parameters["$dir"].Value = e.Direction.ToString();
                ins.Parameters["$ep"].Value = (object?)e.Endpoint ?? DBNull.Value;
                ins.Parameters["$hdr"].Value = ArtifactJson.Serialize(e.Headers);
                ins.Parameters["$body"].Value = e.BodyJson;
                ins.Parameters["$time"].Value = ArtifactJson.Time(e.Time);
                ins.Parameters["$host"].Value = (object?)e.Host ?? DBNull.Value;
                ins.Parameters["$run"].Value = (object?)e.RunId ?? DBNull.Value;
                ins.Parameters["$t"].Value = (object?)e.Iteration ?? DBNull.Value;
                outcomes[i] = ins.ExecuteNonQuery() == 1 ? WriteOutcome.Inserted : WriteOutcome.Unchanged;
            }
            return (IReadOnlyList<WriteOutcome>)outcomes;
        }, ct);
    }

    private static (string Where, (string, object?)[] Args) JournalFilter(JournalQuery q) =>
        ("""
         ($run IS NULL OR run_id=$run) AND ($t IS NULL OR iteration=$t) AND ($type IS NULL OR message_type=$type)
         AND ($dir IS NULL OR direction=$dir) AND ($mid IS NULL OR message_id=$mid) AND seq > $after
         """,
         [("$run", q.RunId), ("$t", q.Iteration), ("$type", q.MessageType), ("$dir", q.Direction?.ToString()), ("$mid", q.MessageId), ("$after", q.AfterSequence)]);

    public Task<IReadOnlyList<JournalEntry>> QueryJournalAsync(JournalQuery query, CancellationToken ct = default) => WithConnection(c =>
    {
        if (query.Limit <= 0) return (IReadOnlyList<JournalEntry>)[];
        var (where, args) = JournalFilter(query);
        using var cmd = Cmd(c, $"""
            SELECT seq, id, message_id, conversation_id, correlation_id, message_type, direction, endpoint, headers_json, body_json, time, host, run_id, iteration
            FROM journal WHERE {where} ORDER BY seq LIMIT $limit
            """, null, [.. args, ("$limit", (long)query.Limit)]);
        using var r = cmd.ExecuteReader();
        var list = new List<JournalEntry>();
        while (r.Read())
            list.Add(new JournalEntry
            {
                Sequence = r.GetInt64(0),
                Id = r.GetString(1),
                MessageId = r.GetString(2),
                ConversationId = S(r, 3),
                CorrelationId = S(r, 4),
                MessageType = r.GetString(5),
                Direction = Enum.Parse<JournalDirection>(r.GetString(6)),
                Endpoint = S(r, 7),
                Headers = ArtifactJson.Read<Dictionary<string, string>>(r.GetString(8)),
                BodyJson = r.GetString(9),
                Time = ArtifactJson.ParseTime(r.GetString(10)),
                Host = S(r, 11),
                RunId = S(r, 12),
                Iteration = r.IsDBNull(13) ? null : r.GetInt32(13),
            });
        return (IReadOnlyList<JournalEntry>)list;
    }, ct);

    public Task<long> CountJournalAsync(JournalQuery query, CancellationToken ct = default) => WithConnection(c =>
    {
        var (where, args) = JournalFilter(query);
        using var cmd = Cmd(c, $"SELECT COUNT(*) FROM journal WHERE {where}", null, args);
        return (long)cmd.ExecuteScalar()!;
    }, ct);
}
