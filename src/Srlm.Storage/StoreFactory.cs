using System.Collections;
using Srlm.Storage.Checkpoints;
using Srlm.Storage.Mongo;
using Srlm.Storage.Sqlite;

namespace Srlm.Storage;

/// <summary>The artifact store and checkpoint store of one process. Dispose it at shutdown.</summary>
public sealed record StoreSet(IArtifactStore Artifacts, ICheckpointStore Checkpoints) : IAsyncDisposable
{
    public ValueTask DisposeAsync() => Artifacts.DisposeAsync();

    /// <summary>
    /// Store a checkpoint folder and its metadata: files into the checkpoint store (sha256 per file),
    /// then the <see cref="CheckpointRecord"/> (Location and Files filled from the manifest).
    /// Idempotent; Conflict when other files or other metadata are stored under the id.
    /// </summary>
    public async Task<(CheckpointRecord Record, WriteOutcome Outcome)> PutCheckpointAsync(CheckpointRecord record, string sourceDir, CancellationToken ct = default)
    {
        var put = await Checkpoints.PutAsync(record.Id, sourceDir, ct);
        if (put.Outcome == WriteOutcome.Conflict) return (record with { Location = put.Manifest.Location, Files = put.Manifest.Files }, WriteOutcome.Conflict);
        var full = record with { Location = put.Manifest.Location, Files = put.Manifest.Files };
        var outcome = await Artifacts.PutAsync(full, ct);
        return (full, outcome == WriteOutcome.Unchanged && put.Outcome == WriteOutcome.Inserted ? WriteOutcome.Inserted : outcome);
    }

    /// <summary>
    /// A verified local folder for a stored checkpoint: every file checked against the sha256 recorded in
    /// the artifact store (not only the checkpoint store's own manifest). KeyNotFoundException when unknown.
    /// </summary>
    public async Task<string> MaterializeCheckpointAsync(string checkpointId, CancellationToken ct = default)
    {
        var record = await Artifacts.GetAsync<CheckpointRecord>(checkpointId, ct)
                     ?? throw new KeyNotFoundException($"checkpoint {checkpointId} has no record in store {Artifacts.Location}");
        return await Checkpoints.MaterializeAsync(checkpointId, record.Files, ct);
    }
}

/// <summary>
/// Opens stores from configuration strings:
///   SRLM_STORE       = sqlite://PATH | mongodb://... (mongodb+srv:// too; database from the URI path, default "srlm")
///   SRLM_CHECKPOINTS = a directory | gridfs (default: PATH.checkpoints beside a SQLite file, gridfs for MongoDB)
///   SRLM_CHECKPOINT_CACHE = where GridFS checkpoints are materialised (default: TEMP/srlm-checkpoint-cache)
/// Bad values throw <see cref="StoreConfigurationException"/> with a one-line message.
/// </summary>
public static class StoreFactory
{
    public const string StoreVariable = "SRLM_STORE";
    public const string CheckpointsVariable = "SRLM_CHECKPOINTS";
    public const string CheckpointCacheVariable = "SRLM_CHECKPOINT_CACHE";

    /// <summary>Open both stores from the environment (or the given variables, for tests).</summary>
    /// <param name="defaultStore">Used when SRLM_STORE is unset (e.g. "sqlite://srlm.db" for `srlm run`); null makes it required.</param>
    public static async Task<StoreSet> FromEnvironmentAsync(IDictionary? environment = null, string? defaultStore = null,
        ResiliencePipeline? retry = null, CancellationToken ct = default)
    {
        environment ??= Environment.GetEnvironmentVariables();
        string? Get(string name) => environment[name] is string s && !string.IsNullOrWhiteSpace(s) ? s.Trim() : null;
        var storeUri = Get(StoreVariable) ?? defaultStore
                       ?? throw new StoreConfigurationException($"{StoreVariable} is not set: expected sqlite://PATH or mongodb://HOST/DB");
        var artifacts = await OpenArtifactStoreAsync(storeUri, retry, ct);
        try
        {
            var checkpoints = OpenCheckpointStore(Get(CheckpointsVariable), artifacts, Get(CheckpointCacheVariable), retry);
            return new StoreSet(artifacts, checkpoints);
        }
        catch
        {
            await artifacts.DisposeAsync();
            throw;
        }
    }

    /// <summary>Open an artifact store from sqlite://PATH or mongodb://...</summary>
    public static async Task<IArtifactStore> OpenArtifactStoreAsync(string uri, ResiliencePipeline? retry = null, CancellationToken ct = default)
    {
        if (uri.StartsWith("sqlite://", StringComparison.OrdinalIgnoreCase))
        {
            var path = uri["sqlite://".Length..];
            if (path.Length == 0) throw new StoreConfigurationException($"{StoreVariable}='{uri}' has no file path: expected sqlite://PATH, e.g. sqlite:///data/srlm.db");
            return await SqliteArtifactStore.OpenAsync(path, retry, ct: ct);
        }
        if (uri.StartsWith("mongodb://", StringComparison.OrdinalIgnoreCase) || uri.StartsWith("mongodb+srv://", StringComparison.OrdinalIgnoreCase))
            return await MongoArtifactStore.OpenAsync(uri, retry, ct: ct);
        throw new StoreConfigurationException($"{StoreVariable}='{uri}' is not valid: expected sqlite://PATH or mongodb://HOST/DB");
    }

    /// <summary>Open the checkpoint store for SRLM_CHECKPOINTS (null = the default for this artifact store).</summary>
    public static ICheckpointStore OpenCheckpointStore(string? value, IArtifactStore artifacts, string? cacheDir = null, ResiliencePipeline? retry = null)
    {
        if (value is null)
            return artifacts switch
            {
                SqliteArtifactStore s => OpenDirectory(DefaultCheckpointFolder(s.Path), retry),
                MongoArtifactStore m => new GridFsCheckpointStore(m.Database, CacheDir(cacheDir), retry),
                _ => throw new StoreConfigurationException($"{CheckpointsVariable} is not set and {artifacts.Location} has no default checkpoint store"),
            };
        if (value.Equals("gridfs", StringComparison.OrdinalIgnoreCase))
            return artifacts is MongoArtifactStore mongo
                ? new GridFsCheckpointStore(mongo.Database, CacheDir(cacheDir), retry)
                : throw new StoreConfigurationException($"{CheckpointsVariable}=gridfs needs {StoreVariable}=mongodb://...; the store is {artifacts.Location}");
        if (value.Contains("://", StringComparison.Ordinal))
            throw new StoreConfigurationException($"{CheckpointsVariable}='{value}' is not valid: expected a directory path or gridfs");
        return OpenDirectory(value, retry);
    }

    /// <summary>PATH.checkpoints beside a SQLite store; in a `srlm run` folder (run.id and checkpoints/ beside srlm.db)
    /// its checkpoints/ folder, where `srlm run` keeps them.</summary>
    private static string DefaultCheckpointFolder(string storePath)
    {
        var own = storePath + ".checkpoints";
        var dir = Path.GetDirectoryName(Path.GetFullPath(storePath))!;
        var runFolder = Path.Combine(dir, "checkpoints");
        return !Directory.Exists(own) && File.Exists(Path.Combine(dir, "run.id")) && Directory.Exists(runFolder) ? runFolder : own;
    }

    private static DirectoryCheckpointStore OpenDirectory(string path, ResiliencePipeline? retry)
    {
        try { return new DirectoryCheckpointStore(path, retry); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new StoreConfigurationException($"{CheckpointsVariable}='{path}' cannot be used as the checkpoint folder: {e.Message}");
        }
    }

    private static string CacheDir(string? configured) =>
        configured ?? Path.Combine(Path.GetTempPath(), "srlm-checkpoint-cache");
}
