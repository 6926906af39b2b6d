namespace Srlm.Storage.Sqlite;

// SqliteArtifactStore: blobs.
public sealed partial class SqliteArtifactStore
{
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
}
