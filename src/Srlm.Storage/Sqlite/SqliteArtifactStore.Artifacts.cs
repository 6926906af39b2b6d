namespace Srlm.Storage.Sqlite;

// SqliteArtifactStore: artifacts.
public sealed partial class SqliteArtifactStore : IArtifactOverwrite
{
    private static void Validate<T>(T a) where T : class, IArtifact
    {
        ArgumentNullException.ThrowIfNull(a);
        if (string.IsNullOrWhiteSpace(a.Id)) throw new ArgumentException($"{T.Kind} has an empty id");
        if (string.IsNullOrWhiteSpace(a.RunId)) throw new ArgumentException($"{T.Kind} {a.Id} has an empty run id");
    }

    public async Task<WriteOutcome> PutAsync<T>(T artifact, CancellationToken ct = default) where T : class, IArtifact =>
        (await PutManyAsync([artifact], ct))[0];

    public Task<IReadOnlyList<WriteOutcome>> PutManyAsync<T>(IReadOnlyList<T> artifacts, CancellationToken ct = default) where T : class, IArtifact
    {
        foreach (var a in artifacts) Validate(a);
        var now = _clock.GetUtcNow();
        var nowText = ArtifactJson.Time(now);
        var prepared = artifacts.Select(a => ArtifactJson.Prepare(a, now)).ToList();
        return InWriteTransaction((c, tx) =>
        {
            using var ins = Cmd(c, """
                INSERT INTO artifacts(kind, id, run_id, iteration, logical_key, parent_id, tag, json, content_hash, created_at)
                VALUES($k, $id, $run, $t, $lk, $p, $tag, $json, $h, $now) ON CONFLICT(kind, id) DO NOTHING
                """, tx, ("$k", T.Kind), ("$id", ""), ("$run", ""), ("$t", 0), ("$lk", ""), ("$p", null), ("$tag", null),
                ("$json", ""), ("$h", ""), ("$now", nowText));
            using var sel = Cmd(c, "SELECT content_hash FROM artifacts WHERE kind=$k AND id=$id", tx, ("$k", T.Kind), ("$id", ""));
            var outcomes = new WriteOutcome[artifacts.Count];
            var touched = new HashSet<string>(StringComparer.Ordinal);
            for (var i = 0; i < artifacts.Count; i++)
            {
                var a = artifacts[i];
                var (json, hash) = prepared[i];
                ins.Parameters["$id"].Value = a.Id;
                ins.Parameters["$run"].Value = a.RunId;
                ins.Parameters["$t"].Value = a.Iteration;
                ins.Parameters["$lk"].Value = a.LogicalKey;
                ins.Parameters["$p"].Value = (object?)a.ParentId ?? DBNull.Value;
                ins.Parameters["$tag"].Value = (object?)a.Tag ?? DBNull.Value;
                ins.Parameters["$json"].Value = json;
                ins.Parameters["$h"].Value = hash;
                if (ins.ExecuteNonQuery() == 1)
                {
                    outcomes[i] = WriteOutcome.Inserted;
                    touched.Add(a.RunId);
                    continue;
                }
                sel.Parameters["$id"].Value = a.Id;
                outcomes[i] = (string)sel.ExecuteScalar()! == hash ? WriteOutcome.Unchanged : WriteOutcome.Conflict;
            }
            foreach (var run in touched)
            {
                using var touch = Cmd(c, "UPDATE runs SET last_progress_at=$now WHERE id=$id", tx, ("$now", nowText), ("$id", run));
                touch.ExecuteNonQuery();
            }
            return (IReadOnlyList<WriteOutcome>)outcomes;
        }, ct);
    }

    Task<WriteOutcome> IArtifactOverwrite.OverwriteAsync<T>(T artifact, CancellationToken ct)
    {
        Validate(artifact);
        var now = _clock.GetUtcNow();
        return InWriteTransaction((c, tx) =>
        {
            using var sel = Cmd(c, "SELECT content_hash, created_at FROM artifacts WHERE kind=$k AND id=$id", tx, ("$k", T.Kind), ("$id", artifact.Id));
            string? oldHash = null;
            var created = now;
            using (var r = sel.ExecuteReader())
                if (r.Read()) { oldHash = r.GetString(0); created = ArtifactJson.ParseTime(r.GetString(1)); }
            var (json, hash) = ArtifactJson.Prepare(artifact, created);
            if (oldHash == hash) return WriteOutcome.Unchanged;
            using var up = Cmd(c, """
                INSERT INTO artifacts(kind, id, run_id, iteration, logical_key, parent_id, tag, json, content_hash, created_at)
                VALUES($k, $id, $run, $t, $lk, $p, $tag, $json, $h, $now)
                ON CONFLICT(kind, id) DO UPDATE SET run_id=$run, iteration=$t, logical_key=$lk, parent_id=$p, tag=$tag, json=$json, content_hash=$h
                """, tx, ("$k", T.Kind), ("$id", artifact.Id), ("$run", artifact.RunId), ("$t", artifact.Iteration),
                ("$lk", artifact.LogicalKey), ("$p", artifact.ParentId), ("$tag", artifact.Tag), ("$json", json), ("$h", hash),
                ("$now", ArtifactJson.Time(created)));
            up.ExecuteNonQuery();
            return oldHash is null ? WriteOutcome.Inserted : WriteOutcome.Updated;
        }, ct);
    }

    public Task<T?> GetAsync<T>(string id, CancellationToken ct = default) where T : class, IArtifact => WithConnection(c =>
    {
        using var cmd = Cmd(c, "SELECT json FROM artifacts WHERE kind=$k AND id=$id", null, ("$k", T.Kind), ("$id", id));
        return cmd.ExecuteScalar() is string json ? ArtifactJson.Read<T>(json) : null;
    }, ct);

    public async Task<IReadOnlyList<T>> GetManyAsync<T>(IEnumerable<string> ids, CancellationToken ct = default) where T : class, IArtifact
    {
        var wanted = ids.ToList();
        var found = new Dictionary<string, T>();
        foreach (var chunk in wanted.Distinct().Chunk(500))
        {
            var part = await WithConnection(c =>
            {
                var names = chunk.Select((_, i) => $"$i{i}").ToArray();
                using var cmd = Cmd(c, $"SELECT json FROM artifacts WHERE kind=$k AND id IN ({string.Join(',', names)})", null,
                    [("$k", T.Kind), .. chunk.Select((id, i) => (names[i], (object?)id))]);
                using var r = cmd.ExecuteReader();
                var list = new List<T>();
                while (r.Read()) list.Add(ArtifactJson.Read<T>(r.GetString(0)));
                return list;
            }, ct);
            foreach (var a in part) found[a.Id] = a;
        }
        return wanted.Where(found.ContainsKey).Select(id => found[id]).ToList();
    }

    private static (string Where, (string, object?)[] Args) Filter(string kind, ArtifactQuery q)
    {
        var clauses = new List<string> { "kind=$k" };
        var args = new List<(string, object?)> { ("$k", kind) };
        if (q.RunId is not null) { clauses.Add("run_id=$run"); args.Add(("$run", q.RunId)); }
        if (q.Iteration is not null) { clauses.Add("iteration=$t"); args.Add(("$t", q.Iteration)); }
        if (q.ParentId is not null) { clauses.Add("parent_id=$p"); args.Add(("$p", q.ParentId)); }
        if (q.Tag is not null) { clauses.Add("tag=$tag"); args.Add(("$tag", q.Tag)); }
        return (string.Join(" AND ", clauses), args.ToArray());
    }

    public Task<IReadOnlyList<T>> ListAsync<T>(ArtifactQuery query, CancellationToken ct = default) where T : class, IArtifact => WithConnection(c =>
    {
        var (where, args) = Filter(T.Kind, query);
        using var cmd = Cmd(c, $"SELECT json FROM artifacts WHERE {where} ORDER BY id", null, args);
        using var r = cmd.ExecuteReader();
        var list = new List<T>();
        while (r.Read()) list.Add(ArtifactJson.Read<T>(r.GetString(0)));
        return (IReadOnlyList<T>)list;
    }, ct);

    public Task<long> CountAsync<T>(ArtifactQuery query, CancellationToken ct = default) where T : class, IArtifact => WithConnection(c =>
    {
        var (where, args) = Filter(T.Kind, query);
        using var cmd = Cmd(c, $"SELECT COUNT(*) FROM artifacts WHERE {where}", null, args);
        return (long)cmd.ExecuteScalar()!;
    }, ct);

    public Task<WriteOutcome> SetPairReferenceLogProbsAsync(string pairId, double chosen, double rejected, CancellationToken ct = default) =>
        InWriteTransaction((c, tx) =>
        {
            using var sel = Cmd(c, "SELECT json, created_at FROM artifacts WHERE kind=$k AND id=$id", tx, ("$k", PairRecord.Kind), ("$id", pairId));
            using var r = sel.ExecuteReader();
            if (!r.Read()) throw new KeyNotFoundException($"pair {pairId} is not in store {Location}");
            var pair = ArtifactJson.Read<PairRecord>(r.GetString(0));
            var created = ArtifactJson.ParseTime(r.GetString(1));
            r.Close();
            var outcome = PairRefOutcome(pair, chosen, rejected);
            if (outcome != WriteOutcome.Updated) return outcome;
            var (json, hash) = ArtifactJson.Prepare(pair with { ReferenceChosenLogProb = chosen, ReferenceRejectedLogProb = rejected }, created);
            using var up = Cmd(c, "UPDATE artifacts SET json=$json, content_hash=$h WHERE kind=$k AND id=$id", tx,
                ("$json", json), ("$h", hash), ("$k", PairRecord.Kind), ("$id", pairId));
            up.ExecuteNonQuery();
            return WriteOutcome.Updated;
        }, ct);

    internal static WriteOutcome PairRefOutcome(PairRecord pair, double chosen, double rejected) =>
        pair.ReferenceChosenLogProb is null && pair.ReferenceRejectedLogProb is null ? WriteOutcome.Updated
        : pair.ReferenceChosenLogProb == chosen && pair.ReferenceRejectedLogProb == rejected ? WriteOutcome.Unchanged
        : WriteOutcome.Conflict;
}
