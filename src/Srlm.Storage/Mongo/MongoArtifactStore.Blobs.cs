namespace Srlm.Storage.Mongo;

// MongoArtifactStore: blobs.
public sealed partial class MongoArtifactStore
{
    /// <summary>Blobs live in documents; MongoDB caps a document at 16 MB.</summary>
    public const int MaxBlobBytes = 15 * 1024 * 1024;

    public Task<BlobInfo> PutBlobAsync(ReadOnlyMemory<byte> content, string? name = null, string? mediaType = null, CancellationToken ct = default)
    {
        if (content.Length > MaxBlobBytes)
            throw new InvalidDataException($"blob {name ?? "(unnamed)"} is {content.Length} bytes; the MongoDB store keeps blobs up to {MaxBlobBytes} bytes");
        var sha = ArtifactJson.Sha256Hex(content.Span);
        var bytes = content.ToArray();
        return R(async token =>
        {
            try
            {
                await _blobs.InsertOneAsync(new BsonDocument
                {
                    { "_id", sha }, { "size", (long)bytes.Length }, { "name", Nullable(name) }, { "media_type", Nullable(mediaType) },
                    { "content", new BsonBinaryData(bytes) }, { "created_at", NowUtc() },
                }, cancellationToken: token);
            }
            catch (MongoWriteException e) when (IsDuplicateKey(e)) { }
            return (await GetBlobInfoAsync(sha, token))!;
        }, ct);
    }

    public Task<BlobInfo?> GetBlobInfoAsync(string sha256, CancellationToken ct = default) => R(async token =>
    {
        var d = await _blobs.Find(new BsonDocument("_id", sha256.ToLowerInvariant())).Project(new BsonDocument("content", 0)).FirstOrDefaultAsync(token);
        return d is null ? null : new BlobInfo(d["_id"].AsString, d["size"].ToInt64(), Str(d, "name"), Str(d, "media_type"), Time(d["created_at"]));
    }, ct);

    public Task<byte[]?> GetBlobAsync(string sha256, CancellationToken ct = default) => R(async token =>
    {
        var d = await _blobs.Find(new BsonDocument("_id", sha256.ToLowerInvariant())).FirstOrDefaultAsync(token);
        if (d is null) return null;
        var bytes = d["content"].AsBsonBinaryData.Bytes;
        var actual = ArtifactJson.Sha256Hex(bytes);
        return actual == sha256.ToLowerInvariant() ? bytes
            : throw new StoreIntegrityException($"blob {sha256} in {Location} is corrupt: its bytes hash to {actual}");
    }, ct);
}
