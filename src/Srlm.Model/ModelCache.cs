namespace Srlm.Model;

/// <summary>Loaded models keyed by checkpoint id, bounded by the bytes of their weights: the least recently used
/// model nobody holds a lease on is evicted when a new one would exceed the bound. Concurrent requests for one
/// id share a single load.</summary>
public sealed class ModelCache(long maxBytes, Func<string, CancellationToken, Task<string>> resolveDirectory) : IDisposable
{
    /// <summary>Bytes of prompt prefixes each loaded model keeps between calls; 0 switches prefix sharing off.</summary>
    public long PrefixCacheBytes { get; init; } = ServedModel.DefaultPrefixCacheBytes;

    private sealed class Entry
    {
        public required Task<ServedModel> Loading;
        public int Leases;
        public long LastUsed;
    }

    private readonly object _gate = new();
    private readonly Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private long _clock;
    private bool _disposed;

    public long MaxBytes { get; } = maxBytes;

    /// <summary>Ids currently loaded or loading.</summary>
    public IReadOnlyList<string> Loaded { get { lock (_gate) return _entries.Keys.ToList(); } }

    /// <summary>Gets (loading when needed) the model with its weights in <paramref name="dtype"/>; dispose the lease when
    /// done so it may be evicted. One checkpoint in two dtypes is two entries.</summary>
    public async Task<ModelLease> AcquireAsync(string checkpointId, CancellationToken cancel = default, ScalarType dtype = ScalarType.Float32)
    {
        Entry entry;
        var key = dtype == ScalarType.Float32 ? checkpointId : $"{checkpointId}\u0001{ModelDtype.Name(dtype)}";
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (!_entries.TryGetValue(key, out entry!))
            {
                entry = new Entry { Loading = LoadAsync(checkpointId, dtype) };
                _entries[key] = entry;
            }
            entry.Leases++;
            entry.LastUsed = ++_clock;
        }
        try
        {
            var model = await entry.Loading.WaitAsync(cancel).ConfigureAwait(false);
            Evict();
            return new ModelLease(model, () => Release(key, entry));
        }
        catch
        {
            lock (_gate)
            {
                entry.Leases--;
                if (entry.Loading.IsFaulted && _entries.TryGetValue(key, out var e) && e == entry) _entries.Remove(key);
            }
            throw;
        }
    }

    private async Task<ServedModel> LoadAsync(string id, ScalarType dtype)
    {
        var dir = await resolveDirectory(id, CancellationToken.None).ConfigureAwait(false);
        return await ServedModel.LoadAsync(id, dir, CancellationToken.None, dtype, PrefixCacheBytes).ConfigureAwait(false);
    }

    private void Release(string id, Entry entry)
    {
        lock (_gate) { entry.Leases--; entry.LastUsed = ++_clock; }
        Evict();
    }

    private void Evict()
    {
        var victims = new List<ServedModel>();
        lock (_gate)
        {
            long Total() => _entries.Values.Where(e => e.Loading.IsCompletedSuccessfully).Sum(e => e.Loading.Result.WeightBytes);
            while (Total() > MaxBytes)
            {
                var victim = _entries.Where(kv => kv.Value.Leases == 0 && kv.Value.Loading.IsCompletedSuccessfully)
                    .OrderBy(kv => kv.Value.LastUsed).FirstOrDefault();
                if (victim.Value is null) break; // everything is in use: stay over the bound rather than pull weights from a caller
                _entries.Remove(victim.Key);
                victims.Add(victim.Value.Loading.Result);
            }
        }
        foreach (var v in victims) v.Dispose();
    }

    public void Dispose()
    {
        List<Entry> all;
        lock (_gate) { _disposed = true; all = _entries.Values.ToList(); _entries.Clear(); }
        foreach (var e in all)
            if (e.Loading.IsCompletedSuccessfully) e.Loading.Result.Dispose();
    }
}

/// <summary>A hold on a cached model; while any lease is open the model is not evicted.</summary>
public sealed class ModelLease(ServedModel model, Action release) : IDisposable
{
    private int _released;
    public ServedModel Model { get; } = model;

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _released, 1) == 0) release();
    }
}
