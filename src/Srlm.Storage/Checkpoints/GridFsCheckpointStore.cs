using MongoDB.Driver.GridFS;

namespace Srlm.Storage.Checkpoints;

/// <summary>
/// Checkpoints in MongoDB GridFS (bucket "checkpoints"). A put uploads every file, then inserts the
/// manifest document (collection checkpoint_manifests, _id = checkpoint id) LAST: a checkpoint exists
/// only once its manifest does, so a crashed upload leaves orphan files but never half a checkpoint.
/// Materialise downloads into CACHE/&lt;id&gt;.tmp-*, verifies sha256, renames into CACHE/&lt;id&gt;.
/// </summary>
public sealed class GridFsCheckpointStore : ICheckpointStore
{
    private readonly GridFSBucket _bucket;
    private readonly IMongoCollection<BsonDocument> _manifests;
    private readonly ResiliencePipeline _retry;

    public string CacheDir { get; }
    public string Location { get; }

    public GridFsCheckpointStore(IMongoDatabase database, string cacheDir, ResiliencePipeline? retry = null)
    {
        _bucket = new GridFSBucket(database, new GridFSBucketOptions { BucketName = "checkpoints" });
        _manifests = database.GetCollection<BsonDocument>("checkpoint_manifests");
        _retry = retry ?? StoreResilience.Default;
        CacheDir = Path.GetFullPath(cacheDir);
        Directory.CreateDirectory(CacheDir);
        Location = $"gridfs:{database.DatabaseNamespace.DatabaseName}";
    }

    public async Task<CheckpointPutResult> PutAsync(string checkpointId, string sourceDir, CancellationToken ct = default)
    {
        var files = CheckpointFiles.ListFiles(sourceDir);
        var hashed = new List<CheckpointFile>();
        foreach (var f in files) hashed.Add(await CheckpointFiles.HashAsync(sourceDir, f, ct));
        if (await GetManifestAsync(checkpointId, ct) is { } existing)
            return new CheckpointPutResult(existing, CheckpointFiles.SameFiles(existing.Files, hashed) ? WriteOutcome.Unchanged : WriteOutcome.Conflict);

        var upload = Guid.NewGuid().ToString("N");
        var entries = new BsonArray();
        foreach (var f in hashed)
        {
            var fileId = await _retry.ExecuteAsync(async token =>
            {
                await using var s = new FileStream(Path.Combine(sourceDir, f.Path), FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, useAsync: true);
                return await _bucket.UploadFromStreamAsync($"{checkpointId}/{f.Path}", s, new GridFSUploadOptions
                {
                    Metadata = new BsonDocument { { "checkpoint_id", checkpointId }, { "path", f.Path }, { "sha256", f.Sha256 }, { "upload", upload } },
                }, token);
            }, ct);
            entries.Add(new BsonDocument { { "path", f.Path }, { "size", f.Size }, { "sha256", f.Sha256 }, { "file_id", fileId } });
        }
        var manifest = new CheckpointManifest(checkpointId, $"{Location}/{checkpointId}", hashed);
        try
        {
            await _retry.ExecuteAsync(async token => await _manifests.InsertOneAsync(
                new BsonDocument { { "_id", checkpointId }, { "files", entries }, { "upload", upload }, { "created_at", DateTime.UtcNow } },
                cancellationToken: token), ct);
            return new CheckpointPutResult(manifest, WriteOutcome.Inserted);
        }
        catch (MongoWriteException e) when (e.WriteError?.Category == ServerErrorCategory.DuplicateKey)
        {
            var other = (await GetManifestAsync(checkpointId, ct))!;
            return new CheckpointPutResult(other, CheckpointFiles.SameFiles(other.Files, hashed) ? WriteOutcome.Unchanged : WriteOutcome.Conflict);
        }
    }

    private async Task<BsonDocument?> ManifestDocAsync(string checkpointId, CancellationToken ct) =>
        await _retry.ExecuteAsync(async token => await _manifests.Find(new BsonDocument("_id", checkpointId)).FirstOrDefaultAsync(token), ct);

    private CheckpointManifest ToManifest(string checkpointId, BsonDocument d) =>
        new(checkpointId, $"{Location}/{checkpointId}",
            d["files"].AsBsonArray.Select(f => new CheckpointFile(f["path"].AsString, f["size"].ToInt64(), f["sha256"].AsString)).ToList());

    public async Task<CheckpointManifest?> GetManifestAsync(string checkpointId, CancellationToken ct = default) =>
        await ManifestDocAsync(checkpointId, ct) is { } d ? ToManifest(checkpointId, d) : null;

    public async Task<string> MaterializeAsync(string checkpointId, IReadOnlyList<CheckpointFile>? expected = null, CancellationToken ct = default)
    {
        var doc = await ManifestDocAsync(checkpointId, ct)
                  ?? throw new KeyNotFoundException($"checkpoint {checkpointId} is not in checkpoint store {Location}");
        var manifest = ToManifest(checkpointId, doc);
        var final = Path.Combine(CacheDir, CheckpointFiles.FolderName(checkpointId));
        if (Directory.Exists(final))
        {
            try
            {
                await CheckpointFiles.VerifyAsync(checkpointId, final, manifest.Files, expected, ct);
                return final;
            }
            catch (StoreIntegrityException)
            {
                // A damaged cache copy is replaced from the store below; the store copy is verified again.
                Directory.Delete(final, recursive: true);
            }
        }
        var tmp = final + ".tmp-" + Guid.NewGuid().ToString("N");
        try
        {
            foreach (var f in doc["files"].AsBsonArray.Select(x => x.AsBsonDocument))
            {
                var target = CheckpointFiles.SafeCombine(tmp, f["path"].AsString);
                Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                await _retry.ExecuteAsync(async token =>
                {
                    await using var s = new FileStream(target, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20, useAsync: true);
                    await _bucket.DownloadToStreamAsync(f["file_id"].AsObjectId, s, cancellationToken: token);
                }, ct);
            }
            await CheckpointFiles.VerifyAsync(checkpointId, tmp, manifest.Files, expected, ct);
            try
            {
                Directory.Move(tmp, final);
            }
            catch (IOException) when (Directory.Exists(final))
            {
                // Another process materialised it first; its copy is verified the same way.
                await CheckpointFiles.VerifyAsync(checkpointId, final, manifest.Files, expected, ct);
            }
            return final;
        }
        finally
        {
            if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true);
        }
    }
}
