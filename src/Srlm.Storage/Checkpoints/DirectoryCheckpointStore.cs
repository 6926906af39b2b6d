namespace Srlm.Storage.Checkpoints;

/// <summary>
/// Checkpoints as folders under a root: ROOT/&lt;escaped id&gt;/ with the files and a manifest
/// (.srlm-manifest.json). A put copies into ROOT/.tmp-*/, writes the manifest, then renames the folder
/// into place (atomic on one file system), so a reader never sees half a checkpoint.
/// Materialise verifies sha256 in place and returns the stored folder (no copy).
/// </summary>
public sealed class DirectoryCheckpointStore : ICheckpointStore
{
    private readonly ResiliencePipeline _retry;

    public string Root { get; }
    public string Location => Root;

    public DirectoryCheckpointStore(string root, ResiliencePipeline? retry = null)
    {
        if (string.IsNullOrWhiteSpace(root)) throw new StoreConfigurationException("checkpoint directory is empty");
        Root = Path.GetFullPath(root);
        var parent = Path.GetDirectoryName(Root.TrimEnd(Path.DirectorySeparatorChar));
        if (parent is not null && !Directory.Exists(parent))
            throw new StoreConfigurationException($"checkpoint directory {Root}: parent directory {parent} does not exist");
        Directory.CreateDirectory(Root);
        _retry = retry ?? StoreResilience.Default;
        RemoveAbandonedTemporaries(TimeSpan.FromHours(24));
    }

    /// <summary>Temp folders of puts killed mid-copy (older than <paramref name="age"/>) are removed.</summary>
    public void RemoveAbandonedTemporaries(TimeSpan age)
    {
        foreach (var dir in Directory.EnumerateDirectories(Root, ".tmp-*"))
        {
            try
            {
                if (DateTime.UtcNow - Directory.GetLastWriteTimeUtc(dir) > age) Directory.Delete(dir, recursive: true);
            }
            catch (IOException) { } // another process is removing or using it
            catch (UnauthorizedAccessException) { }
        }
    }

    public string FolderOf(string checkpointId) => Path.Combine(Root, CheckpointFiles.FolderName(checkpointId));

    public async Task<CheckpointPutResult> PutAsync(string checkpointId, string sourceDir, CancellationToken ct = default)
    {
        var final = FolderOf(checkpointId);
        var files = CheckpointFiles.ListFiles(sourceDir);
        if (await GetManifestAsync(checkpointId, ct) is { } existing)
            return await CompareAsync(existing, sourceDir, files, ct);

        var tmp = Path.Combine(Root, $".tmp-{CheckpointFiles.FolderName(checkpointId)}-{Guid.NewGuid():N}");
        try
        {
            var written = new List<CheckpointFile>();
            foreach (var f in files)
                written.Add(await _retry.ExecuteAsync(async token => await CheckpointFiles.CopyAsync(sourceDir, tmp, f, token), ct));
            var manifest = new CheckpointManifest(checkpointId, final, written);
            await File.WriteAllTextAsync(Path.Combine(tmp, CheckpointFiles.ManifestName), ArtifactJson.Serialize(manifest), ct);
            try
            {
                Directory.Move(tmp, final);
                return new CheckpointPutResult(manifest, WriteOutcome.Inserted);
            }
            catch (IOException) when (Directory.Exists(final))
            {
                // Another writer won the rename race: compare with what it stored.
                var other = await GetManifestAsync(checkpointId, ct)
                            ?? throw new InvalidDataException($"checkpoint folder {final} exists without a manifest");
                return new CheckpointPutResult(other, CheckpointFiles.SameFiles(other.Files, written) ? WriteOutcome.Unchanged : WriteOutcome.Conflict);
            }
        }
        finally
        {
            if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true);
        }
    }

    private static async Task<CheckpointPutResult> CompareAsync(CheckpointManifest existing, string sourceDir, IReadOnlyList<string> files, CancellationToken ct)
    {
        var source = new List<CheckpointFile>();
        foreach (var f in files) source.Add(await CheckpointFiles.HashAsync(sourceDir, f, ct));
        return new CheckpointPutResult(existing, CheckpointFiles.SameFiles(existing.Files, source) ? WriteOutcome.Unchanged : WriteOutcome.Conflict);
    }

    public async Task<CheckpointManifest?> GetManifestAsync(string checkpointId, CancellationToken ct = default)
    {
        var path = Path.Combine(FolderOf(checkpointId), CheckpointFiles.ManifestName);
        if (!File.Exists(path)) return null;
        var json = await _retry.ExecuteAsync(async token => await File.ReadAllTextAsync(path, token), ct);
        var m = ArtifactJson.Read<CheckpointManifest>(json);
        // The folder may have been moved with its root: report where it is now.
        return m with { Location = FolderOf(checkpointId) };
    }

    public async Task<string> MaterializeAsync(string checkpointId, IReadOnlyList<CheckpointFile>? expected = null, CancellationToken ct = default)
    {
        var manifest = await GetManifestAsync(checkpointId, ct)
                       ?? throw new KeyNotFoundException($"checkpoint {checkpointId} is not in checkpoint store {Root}");
        var dir = FolderOf(checkpointId);
        await CheckpointFiles.VerifyAsync(checkpointId, dir, manifest.Files, expected, ct);
        return dir;
    }
}
