namespace Srlm.Storage.Sqlite;

/// <summary>
/// The embedded artifact store: one SQLite file in WAL mode that several local processes may share
/// (busy timeout + IMMEDIATE write transactions + Polly retry on SQLITE_BUSY/LOCKED).
/// </summary>
public sealed partial class SqliteArtifactStore : IArtifactStore
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
}
