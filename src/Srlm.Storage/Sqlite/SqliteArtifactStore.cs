using System.Data;
using Microsoft.Data.Sqlite;
using Polly;

namespace Srlm.Storage.Sqlite;

/// <summary>
/// The embedded artifact store: one SQLite file in WAL mode that several local processes may share
/// (busy timeout + IMMEDIATE write transactions + Polly retry on SQLITE_BUSY/LOCKED).
/// </summary>
public sealed class SqliteArtifactStore : IArtifactStore
{
    /// <summary>The schema this binary reads and writes. A file with another version is refused.</summary>
    public const int SchemaVersion = 1;

    private readonly string _connectionString;
    private readonly ResiliencePipeline _retry;
    private readonly TimeProvider _clock;

    public string Path { get; }
    public string Location => $"sqlite://{Path}";

    private SqliteArtifactStore(string path, ResiliencePipeline retry, TimeProvider clock)
    {
        Path = path;
        _retry = retry;
        _clock = clock;
        _connectionString = new SqliteConnectionStringBuilder
        {
            DataSource = path,
            Mode = SqliteOpenMode.ReadWriteCreate,
            Pooling = true,
            DefaultTimeout = 30,
        }.ToString();
    }

    /// <summary>Open (creating when absent) the store file; refuses a file of another schema version.</summary>
    public static async Task<SqliteArtifactStore> OpenAsync(string path, ResiliencePipeline? retry = null, TimeProvider? clock = null, CancellationToken ct = default)
    {
        if (string.IsNullOrWhiteSpace(path)) throw new StoreConfigurationException("sqlite store path is empty");
        var full = System.IO.Path.GetFullPath(path);
        var dir = System.IO.Path.GetDirectoryName(full);
        if (dir is not null && !Directory.Exists(dir))
            throw new StoreConfigurationException($"sqlite store {full}: directory {dir} does not exist");
        var store = new SqliteArtifactStore(full, retry ?? StoreResilience.Default, clock ?? TimeProvider.System);
        await store._retry.ExecuteAsync(token => new ValueTask<int>(Task.Run(store.Initialize, token)), ct);
        return store;
    }

    public ValueTask DisposeAsync()
    {
        // Pooled connections keep the file open; release them so the file can be deleted/moved.
        using (var c = new SqliteConnection(_connectionString)) SqliteConnection.ClearPool(c);
        return ValueTask.CompletedTask;
    }

    private string Now() => ArtifactJson.Time(_clock.GetUtcNow());

    private SqliteConnection OpenConnection()
    {
        var c = new SqliteConnection(_connectionString);
        c.Open();
        using var cmd = c.CreateCommand();
        cmd.CommandText = "PRAGMA busy_timeout=10000; PRAGMA synchronous=NORMAL;";
        cmd.ExecuteNonQuery();
        return c;
    }

    // Microsoft.Data.Sqlite's async methods run synchronously (a lock wait would block the caller's
    // thread), so each call runs on the thread pool: callers get a task that really is pending.

    private Task<T> WithConnection<T>(Func<SqliteConnection, T> body, CancellationToken ct) =>
        _retry.ExecuteAsync(token => new ValueTask<T>(Task.Run(() =>
        {
            using var c = OpenConnection();
            return body(c);
        }, token)), ct).AsTask();

    /// <summary>Runs <paramref name="body"/> in a BEGIN IMMEDIATE transaction (the write lock taken up front).</summary>
    private Task<T> InWriteTransaction<T>(Func<SqliteConnection, SqliteTransaction, T> body, CancellationToken ct) =>
        _retry.ExecuteAsync(token => new ValueTask<T>(Task.Run(() =>
        {
            using var c = OpenConnection();
            using var tx = c.BeginTransaction(IsolationLevel.Serializable, deferred: false);
            var result = body(c, tx);
            tx.Commit();
            return result;
        }, token)), ct).AsTask();

    private static SqliteCommand Cmd(SqliteConnection c, string sql, SqliteTransaction? tx = null, params (string Name, object? Value)[] args)
    {
        var cmd = c.CreateCommand();
        cmd.CommandText = sql;
        cmd.Transaction = tx;
        foreach (var (name, value) in args) cmd.Parameters.AddWithValue(name, value ?? DBNull.Value);
        return cmd;
    }

    private const string Schema = """
        CREATE TABLE runs(
            id TEXT PRIMARY KEY, spec_json TEXT NOT NULL, spec_version INTEGER NOT NULL, state TEXT NOT NULL,
            failure_reason TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, last_progress_at TEXT NOT NULL);
        CREATE TABLE artifacts(
            kind TEXT NOT NULL, id TEXT NOT NULL, run_id TEXT NOT NULL, iteration INTEGER NOT NULL,
            logical_key TEXT NOT NULL, parent_id TEXT, tag TEXT, json TEXT NOT NULL, content_hash TEXT NOT NULL,
            created_at TEXT NOT NULL, PRIMARY KEY(kind, id));
        CREATE INDEX ix_artifacts_run ON artifacts(run_id, iteration, kind, tag);
        CREATE INDEX ix_artifacts_parent ON artifacts(kind, parent_id);
        CREATE INDEX ix_artifacts_logical ON artifacts(run_id, iteration, logical_key);
        CREATE TABLE jobs(
            id TEXT PRIMARY KEY, kind TEXT NOT NULL, run_id TEXT NOT NULL, iteration INTEGER NOT NULL, state TEXT NOT NULL,
            input_checkpoint_id TEXT, dataset_id TEXT, output_checkpoint_id TEXT, state_dir TEXT, parameters_json TEXT,
            owner TEXT, heartbeat_at TEXT, step INTEGER NOT NULL, total_steps INTEGER, attempts INTEGER NOT NULL,
            error TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
        CREATE INDEX ix_jobs_state ON jobs(state, created_at);
        CREATE TABLE metrics(
            run_id TEXT NOT NULL, iteration INTEGER NOT NULL, step INTEGER NOT NULL, name TEXT NOT NULL, value REAL NOT NULL,
            PRIMARY KEY(run_id, iteration, step, name));
        CREATE TABLE blobs(
            sha256 TEXT PRIMARY KEY, size INTEGER NOT NULL, name TEXT, media_type TEXT, content BLOB NOT NULL, created_at TEXT NOT NULL);
        CREATE TABLE journal(
            seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, message_id TEXT NOT NULL, conversation_id TEXT,
            correlation_id TEXT, message_type TEXT NOT NULL, direction TEXT NOT NULL, endpoint TEXT, headers_json TEXT NOT NULL,
            body_json TEXT NOT NULL, time TEXT NOT NULL, host TEXT, run_id TEXT, iteration INTEGER);
        CREATE INDEX ix_journal_run ON journal(run_id, iteration, message_type);
        CREATE INDEX ix_journal_message ON journal(message_id);
        CREATE TABLE errors(
            id TEXT PRIMARY KEY, message_id TEXT, message_type TEXT NOT NULL, queue TEXT, reason TEXT NOT NULL,
            exception_type TEXT, body_json TEXT, run_id TEXT, iteration INTEGER, time TEXT NOT NULL, host TEXT, requeued_at TEXT);
        CREATE INDEX ix_errors_run ON errors(run_id, time);
        """;

    private int Initialize()
    {
        using var c = OpenConnection();
        // WAL is a property of the file; setting it needs no transaction and is a no-op when already set.
        using (var wal = Cmd(c, "PRAGMA journal_mode=WAL;")) wal.ExecuteNonQuery();
        using var tx = c.BeginTransaction(IsolationLevel.Serializable, deferred: false);
        using (var hasMeta = Cmd(c, "SELECT COUNT(*) FROM sqlite_master WHERE type='table' AND name='meta'", tx))
        {
            if ((long)hasMeta.ExecuteScalar()! == 0)
            {
                using var anyTable = Cmd(c, "SELECT COUNT(*) FROM sqlite_master WHERE type='table'", tx);
                if ((long)anyTable.ExecuteScalar()! > 0)
                    throw new StoreSchemaException($"sqlite store {Path} is not an srlm store (it has tables but no srlm schema version)");
                using var create = Cmd(c, "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);" + Schema, tx);
                create.ExecuteNonQuery();
                using var version = Cmd(c, "INSERT INTO meta(key, value) VALUES('schema_version', $v), ('created_at', $t)", tx,
                    ("$v", SchemaVersion.ToString(System.Globalization.CultureInfo.InvariantCulture)), ("$t", Now()));
                version.ExecuteNonQuery();
                tx.Commit();
                return SchemaVersion;
            }
        }
        using var read = Cmd(c, "SELECT value FROM meta WHERE key='schema_version'", tx);
        var stored = read.ExecuteScalar() as string;
        if (!int.TryParse(stored, System.Globalization.CultureInfo.InvariantCulture, out var v))
            throw new StoreSchemaException($"sqlite store {Path} has no readable schema version ('{stored}'); this binary needs schema version {SchemaVersion}");
        if (v != SchemaVersion)
            throw new StoreSchemaException(
                $"store {Location} has schema version {v} but this binary needs schema version {SchemaVersion}: " +
                (v < SchemaVersion ? "the store is older than this binary (no migration exists; use a new store file)" : "the store was written by a newer srlm; upgrade this binary"));
        tx.Commit();
        return v;
    }

    /// <summary>Test/operator hook: the schema version recorded in the file.</summary>
    public Task<int> ReadStoredSchemaVersionAsync(CancellationToken ct = default) => WithConnection(c =>
    {
        using var cmd = Cmd(c, "SELECT value FROM meta WHERE key='schema_version'");
        return int.Parse((string)cmd.ExecuteScalar()!, System.Globalization.CultureInfo.InvariantCulture);
    }, ct);

    // ---- runs -------------------------------------------------------------------------------------

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

    // ---- artifacts --------------------------------------------------------------------------------

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

    public Task<WriteOutcome> OverwriteAsync<T>(T artifact, CancellationToken ct = default) where T : class, IArtifact
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

    // ---- completion and status --------------------------------------------------------------------

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

    // ---- jobs -------------------------------------------------------------------------------------

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

    // ---- metrics ----------------------------------------------------------------------------------

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

    // ---- blobs ------------------------------------------------------------------------------------

    public Task<BlobInfo> PutBlobAsync(ReadOnlyMemory<byte> content, string? name = null, string? mediaType = null, CancellationToken ct = default)
    {
        var sha = ArtifactJson.Sha256Hex(content.Span);
        var bytes = content.ToArray();
        return InWriteTransaction((c, tx) =>
        {
            using var ins = Cmd(c, "INSERT INTO blobs(sha256, size, name, media_type, content, created_at) VALUES($sha, $size, $name, $mt, $content, $now) ON CONFLICT(sha256) DO NOTHING",
                tx, ("$sha", sha), ("$size", bytes.LongLength), ("$name", name), ("$mt", mediaType), ("$content", bytes), ("$now", Now()));
            ins.ExecuteNonQuery();
            return SelectBlobInfo(c, tx, sha)!;
        }, ct);
    }

    private static BlobInfo? SelectBlobInfo(SqliteConnection c, SqliteTransaction? tx, string sha)
    {
        using var cmd = Cmd(c, "SELECT sha256, size, name, media_type, created_at FROM blobs WHERE sha256=$sha", tx, ("$sha", sha));
        using var r = cmd.ExecuteReader();
        return r.Read() ? new BlobInfo(r.GetString(0), r.GetInt64(1), S(r, 2), S(r, 3), ArtifactJson.ParseTime(r.GetString(4))) : null;
    }

    public Task<BlobInfo?> GetBlobInfoAsync(string sha256, CancellationToken ct = default) => WithConnection(c => SelectBlobInfo(c, null, sha256.ToLowerInvariant()), ct);

    public Task<byte[]?> GetBlobAsync(string sha256, CancellationToken ct = default) => WithConnection(c =>
    {
        using var cmd = Cmd(c, "SELECT content FROM blobs WHERE sha256=$sha", null, ("$sha", sha256.ToLowerInvariant()));
        if (cmd.ExecuteScalar() is not byte[] bytes) return null;
        var actual = ArtifactJson.Sha256Hex(bytes);
        if (actual != sha256.ToLowerInvariant())
            throw new StoreIntegrityException($"blob {sha256} in {Location} is corrupt: its bytes hash to {actual}");
        return bytes;
    }, ct);

    // ---- journal ----------------------------------------------------------------------------------

    public Task<WriteOutcome> AppendJournalAsync(JournalEntry e, CancellationToken ct = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(e.Id);
        return InWriteTransaction((c, tx) =>
        {
            using var ins = Cmd(c, """
                INSERT INTO journal(id, message_id, conversation_id, correlation_id, message_type, direction, endpoint, headers_json, body_json, time, host, run_id, iteration)
                VALUES($id, $mid, $conv, $corr, $type, $dir, $ep, $hdr, $body, $time, $host, $run, $t) ON CONFLICT(id) DO NOTHING
                """, tx, ("$id", e.Id), ("$mid", e.MessageId), ("$conv", e.ConversationId), ("$corr", e.CorrelationId), ("$type", e.MessageType),
                ("$dir", e.Direction.ToString()), ("$ep", e.Endpoint), ("$hdr", ArtifactJson.Serialize(e.Headers)), ("$body", e.BodyJson),
                ("$time", ArtifactJson.Time(e.Time)), ("$host", e.Host), ("$run", e.RunId), ("$t", e.Iteration));
            return ins.ExecuteNonQuery() == 1 ? WriteOutcome.Inserted : WriteOutcome.Unchanged;
        }, ct);
    }

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

    // ---- errors -----------------------------------------------------------------------------------

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
