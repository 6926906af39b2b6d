using System.Collections.Concurrent;
using Srlm.Contracts.Spec;
using Srlm.Messaging.Bus;
using Srlm.Storage;

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

    /// <summary>The non-blank lines of a JSONL blob, each with its 1-based line number.</summary>
    public async Task<IReadOnlyList<(int Line, string Text)>> JsonlAsync(string? reference, string field, CancellationToken ct)
    {
        var text = System.Text.Encoding.UTF8.GetString(await BlobAsync(reference, field, ct));
        return text.Split('\n').Select((l, i) => (i + 1, l.Trim())).Where(x => x.Item2.Length > 0).ToList();
    }
}
