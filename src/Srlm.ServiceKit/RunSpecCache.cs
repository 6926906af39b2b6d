using Srlm.Contracts.Seeds;

namespace Srlm.ServiceKit;

/// <summary>The stored spec of a run, read from the store (never from a local file), parsed once per process.
/// A spec is immutable once stored, so caching it is safe. Also reads the files the spec references
/// (`blob:` references written by `srlm start`). Shared by every service library.</summary>
public sealed class RunSpecCache(IArtifactStore store)
{
    private readonly ConcurrentDictionary<string, RunSpec> _specs = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, byte[]> _blobs = new(StringComparer.Ordinal);

    public IArtifactStore Store => store;

    public async Task<RunSpec> GetAsync(string runId, CancellationToken ct)
    {
        if (_specs.TryGetValue(runId, out var cached)) return cached;
        var run = await store.GetRunAsync(runId, ct) ?? throw new UnknownRunException(runId);
        RunSpec spec;
        try { spec = RunSpecJson.Parse(run.SpecJson); }
        catch (RunSpecException e) { throw new PermanentMessageException($"run {runId}: stored spec is invalid: {e.Message}"); }
        return _specs.GetOrAdd(runId, spec);
    }

    /// <summary>The bytes of a `blob:SHA256` field of the spec.</summary>
    public async Task<byte[]> BlobAsync(string? reference, string field, CancellationToken ct)
    {
        string sha;
        try { sha = SpecRefs.BlobSha(reference, field); }
        catch (RunSpecException e) { throw new PermanentMessageException(e.Message); }
        if (_blobs.TryGetValue(sha, out var cached)) return cached;
        var bytes = await store.GetBlobAsync(sha, ct) ?? throw new PermanentMessageException($"spec.{field}: blob {sha} is not in the store");
        return _blobs.GetOrAdd(sha, bytes);
    }

    /// <summary>A seed file the spec references (a `blob:` field), read by the one seed reader (Srlm.Contracts.Seeds)
    /// and named "spec.FIELD" in its problems; a file with any problem is a <see cref="PermanentMessageException"/>
    /// carrying them (`srlm start` refuses such files before a run exists, so this is a store written by another tool).</summary>
    public async Task<IReadOnlyList<T>> SeedFileAsync<T>(string? reference, string field, Func<byte[], string, SeedFile<T>> read, CancellationToken ct)
    {
        var bytes = await BlobAsync(reference, field, ct);
        try { return read(bytes, $"spec.{field}").OrThrow(); }
        catch (SeedDataException e) { throw new PermanentMessageException(e.Message); }
    }
}
