namespace Srlm.Storage;

/// <summary>Content-addressed bytes (seed files, spec references).</summary>
public interface IBlobStore
{
    /// <summary>Store bytes under their sha256 (returned, lower-case hex). Idempotent.</summary>
    Task<BlobInfo> PutBlobAsync(ReadOnlyMemory<byte> content, string? name = null, string? mediaType = null, CancellationToken ct = default);
    /// <summary>The bytes, verified against the sha256, or null when absent. Throws <see cref="StoreIntegrityException"/> on mismatch.</summary>
    Task<byte[]?> GetBlobAsync(string sha256, CancellationToken ct = default);
    Task<BlobInfo?> GetBlobInfoAsync(string sha256, CancellationToken ct = default);
}
