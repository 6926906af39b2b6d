using static TorchSharp.torch;

namespace Srlm.Model;

/// <summary>A LanguageModel living on its own executor thread. Every method is safe to call from any thread.</summary>
public sealed class ServedModel : IDisposable
{
    private readonly LanguageModel _model;

    public string CheckpointId { get; }
    public ModelExecutor Executor { get; }
    public long WeightBytes { get; }
    public LlamaConfig Config => _model.Config;
    public Tokenization.ITokenizer Tokenizer => _model.Tokenizer;
    public Tokenization.PromptTemplate Template => _model.Template;
    public GenerationSettings Generation => _model.Generation;

    private ServedModel(string id, LanguageModel model, ModelExecutor executor)
    {
        CheckpointId = id; _model = model; Executor = executor; WeightBytes = model.WeightBytes;
    }

    /// <summary>Loads the checkpoint folder on a new executor thread.</summary>
    public static async Task<ServedModel> LoadAsync(string checkpointId, string dir, CancellationToken cancel = default)
    {
        var executor = new ModelExecutor(checkpointId);
        try
        {
            var model = await executor.RunAsync(() => LanguageModel.Load(dir), cancel).ConfigureAwait(false);
            return new ServedModel(checkpointId, model, executor);
        }
        catch
        {
            executor.Dispose();
            throw;
        }
    }

    /// <summary>Wraps a model already built (e.g. by tests or the trainer); the executor takes ownership.</summary>
    public static ServedModel Wrap(string checkpointId, LanguageModel model) => new(checkpointId, model, new ModelExecutor(checkpointId));

    public Task<IReadOnlyList<GeneratedSequence>> GenerateAsync(IReadOnlyList<GenerationRequest> requests, SamplingOptions options, CancellationToken cancel = default) =>
        Executor.RunAsync(() => new TextGenerator(_model.Model, _model.Tokenizer).Generate(requests, options, cancel), cancel);

    public Task<IReadOnlyList<SequenceLogProb>> LogProbsAsync(IReadOnlyList<(IReadOnlyList<int> Prompt, IReadOnlyList<int> Completion)> pairs, int batchSize = 8, CancellationToken cancel = default) =>
        Executor.RunAsync(() => LogProbs.Score(_model.Model, pairs, _model.Tokenizer.PadId, batchSize), cancel);

    /// <summary>Any other work on the model, run on its thread.</summary>
    public Task<T> RunAsync<T>(Func<LanguageModel, T> work, CancellationToken cancel = default) => Executor.RunAsync(() => work(_model), cancel);

    public void Dispose()
    {
        try { Executor.RunAsync(() => _model.Dispose()).Wait(); }
        catch (ObjectDisposedException) { }
        Executor.Dispose();
    }
}

/// <summary>Loaded models keyed by checkpoint id, bounded by the bytes of their weights: the least recently used
/// model nobody holds a lease on is evicted when a new one would exceed the bound. Concurrent requests for one
/// id share a single load.</summary>
public sealed class ModelCache(long maxBytes, Func<string, CancellationToken, Task<string>> resolveDirectory) : IDisposable
{
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

    /// <summary>Gets (loading when needed) the model; dispose the lease when done so it may be evicted.</summary>
    public async Task<ModelLease> AcquireAsync(string checkpointId, CancellationToken cancel = default)
    {
        Entry entry;
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (!_entries.TryGetValue(checkpointId, out entry!))
            {
                entry = new Entry { Loading = LoadAsync(checkpointId) };
                _entries[checkpointId] = entry;
            }
            entry.Leases++;
            entry.LastUsed = ++_clock;
        }
        try
        {
            var model = await entry.Loading.WaitAsync(cancel).ConfigureAwait(false);
            Evict();
            return new ModelLease(model, () => Release(checkpointId, entry));
        }
        catch
        {
            lock (_gate)
            {
                entry.Leases--;
                if (entry.Loading.IsFaulted && _entries.TryGetValue(checkpointId, out var e) && e == entry) _entries.Remove(checkpointId);
            }
            throw;
        }
    }

    private async Task<ServedModel> LoadAsync(string id)
    {
        var dir = await resolveDirectory(id, CancellationToken.None).ConfigureAwait(false);
        return await ServedModel.LoadAsync(id, dir).ConfigureAwait(false);
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
