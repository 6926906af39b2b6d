namespace Srlm.Storage.Checkpoints;

/// <summary>The files of a stored checkpoint and where the store keeps them.</summary>
public sealed record CheckpointManifest(string CheckpointId, string Location, IReadOnlyList<CheckpointFile> Files);

/// <summary>Outcome of <see cref="ICheckpointStore.PutAsync"/>: Inserted, Unchanged, or Conflict (other files stored under the id; kept).</summary>
public sealed record CheckpointPutResult(CheckpointManifest Manifest, WriteOutcome Outcome);

/// <summary>
/// Checkpoint folders (Hugging Face layout) stored under a checkpoint id: a directory tree
/// (SRLM_CHECKPOINTS=/path) or MongoDB GridFS (SRLM_CHECKPOINTS=gridfs). Every file's sha256 is recorded
/// on put and verified on materialise. Put is idempotent and atomic (temp + rename / manifest last).
/// </summary>
public interface ICheckpointStore
{
    string Location { get; }

    /// <summary>Store the files under <paramref name="sourceDir"/> (recursively) as checkpoint <paramref name="checkpointId"/>.</summary>
    Task<CheckpointPutResult> PutAsync(string checkpointId, string sourceDir, CancellationToken ct = default);

    /// <summary>The manifest of a complete stored checkpoint, or null.</summary>
    Task<CheckpointManifest?> GetManifestAsync(string checkpointId, CancellationToken ct = default);

    /// <summary>
    /// A local folder holding the checkpoint, every file verified against the stored sha256 (and against
    /// <paramref name="expected"/>, e.g. <see cref="CheckpointRecord.Files"/>, when given). Throws
    /// <see cref="StoreIntegrityException"/> naming the file on a mismatch, KeyNotFoundException when absent.
    /// </summary>
    Task<string> MaterializeAsync(string checkpointId, IReadOnlyList<CheckpointFile>? expected = null, CancellationToken ct = default);
}

/// <summary>Helpers shared by the checkpoint backends.</summary>
public static class CheckpointFiles
{
    public const string ManifestName = ".srlm-manifest.json";

    /// <summary>A file-system-safe folder name for a checkpoint id (reversible; '/' and odd characters escaped).</summary>
    public static string FolderName(string checkpointId)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(checkpointId);
        var sb = new StringBuilder();
        foreach (var ch in checkpointId)
        {
            if (char.IsAsciiLetterOrDigit(ch) || ch is '-' or '_' or '.') sb.Append(ch);
            else foreach (var b in Encoding.UTF8.GetBytes(ch.ToString())) sb.Append('%').Append(b.ToString("X2", System.Globalization.CultureInfo.InvariantCulture));
        }
        var name = sb.ToString();
        return name is "." or ".." ? name.Replace(".", "%2E", StringComparison.Ordinal) : name;
    }

    /// <summary>Relative paths ('/'-separated, ordinal order) of the files under a folder, the manifest excluded.</summary>
    public static IReadOnlyList<string> ListFiles(string dir)
    {
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"checkpoint folder {dir} does not exist");
        var files = Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories)
            .Select(f => Path.GetRelativePath(dir, f).Replace('\\', '/'))
            .Where(f => f != ManifestName)
            .OrderBy(f => f, StringComparer.Ordinal)
            .ToList();
        if (files.Count == 0) throw new InvalidDataException($"checkpoint folder {dir} has no files");
        return files;
    }

    /// <summary>root/relativePath, refusing a manifest path that would leave the root ("../", absolute paths).</summary>
    public static string SafeCombine(string root, string relativePath)
    {
        var full = Path.GetFullPath(Path.Combine(root, relativePath));
        var rootFull = Path.GetFullPath(root).TrimEnd(Path.DirectorySeparatorChar) + Path.DirectorySeparatorChar;
        return full.StartsWith(rootFull, StringComparison.Ordinal)
            ? full
            : throw new InvalidDataException($"checkpoint file path '{relativePath}' leaves the checkpoint folder {root}");
    }

    public static async Task<CheckpointFile> HashAsync(string root, string relativePath, CancellationToken ct)
    {
        await using var s = new FileStream(SafeCombine(root, relativePath), FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, useAsync: true);
        var hash = await SHA256.HashDataAsync(s, ct);
        return new CheckpointFile(relativePath, s.Length, Convert.ToHexStringLower(hash));
    }

    /// <summary>Copy a file while hashing it; returns the digest of the bytes written.</summary>
    public static async Task<CheckpointFile> CopyAsync(string sourceRoot, string targetRoot, string relativePath, CancellationToken ct)
    {
        var target = SafeCombine(targetRoot, relativePath);
        Directory.CreateDirectory(Path.GetDirectoryName(target)!);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        await using var src = new FileStream(Path.Combine(sourceRoot, relativePath), FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, useAsync: true);
        await using var dst = new FileStream(target, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20, useAsync: true);
        var buffer = new byte[1 << 20];
        long size = 0;
        int n;
        while ((n = await src.ReadAsync(buffer, ct)) > 0)
        {
            hash.AppendData(buffer, 0, n);
            await dst.WriteAsync(buffer.AsMemory(0, n), ct);
            size += n;
        }
        await dst.FlushAsync(ct);
        return new CheckpointFile(relativePath, size, Convert.ToHexStringLower(hash.GetHashAndReset()));
    }

    /// <summary>Checks every file of <paramref name="dir"/> against the manifest (and the expected list when given).</summary>
    public static async Task VerifyAsync(string checkpointId, string dir, IReadOnlyList<CheckpointFile> manifest, IReadOnlyList<CheckpointFile>? expected, CancellationToken ct)
    {
        if (expected is not null && !SameFiles(manifest, expected))
            throw new StoreIntegrityException($"checkpoint {checkpointId}: stored manifest differs from the expected file list (" +
                                              Describe(manifest, expected) + ")");
        foreach (var f in manifest)
        {
            var path = SafeCombine(dir, f.Path);
            if (!File.Exists(path)) throw new StoreIntegrityException($"checkpoint {checkpointId}: file {path} is missing");
            var actual = await HashAsync(dir, f.Path, ct);
            if (actual.Sha256 != f.Sha256 || actual.Size != f.Size)
                throw new StoreIntegrityException($"checkpoint {checkpointId}: file {path} is corrupt (sha256 {actual.Sha256}, size {actual.Size}; expected sha256 {f.Sha256}, size {f.Size})");
        }
    }

    public static bool SameFiles(IReadOnlyList<CheckpointFile> a, IReadOnlyList<CheckpointFile> b) =>
        a.OrderBy(f => f.Path, StringComparer.Ordinal).SequenceEqual(b.OrderBy(f => f.Path, StringComparer.Ordinal));

    private static string Describe(IReadOnlyList<CheckpointFile> stored, IReadOnlyList<CheckpointFile> expected)
    {
        var diff = expected.Except(stored).Select(f => f.Path).Concat(stored.Except(expected).Select(f => f.Path)).Distinct().Take(3);
        return "differs at " + string.Join(", ", diff);
    }
}
