namespace Srlm.Model;

/// <summary>A LanguageModel living on its own executor thread. Every method is safe to call from any thread.</summary>
public sealed class ServedModel : IDisposable
{
    private readonly LanguageModel _model;

    public string CheckpointId { get; }
    /// <summary>The dtype the weights are held and multiplied in (see <see cref="ModelDtype"/>).</summary>
    public ScalarType Dtype { get; }
    public ModelExecutor Executor { get; }
    public long WeightBytes { get; }
    public LlamaConfig Config => _model.Config;
    public Tokenization.ITokenizer Tokenizer => _model.Tokenizer;
    public Tokenization.PromptTemplate Template => _model.Template;
    public GenerationSettings Generation => _model.Generation;

    /// <summary>Default bound of the prompt prefixes a served model keeps between calls (<see cref="PrefixCache"/>).</summary>
    public const long DefaultPrefixCacheBytes = 256L * 1024 * 1024;

    /// <summary>Token prefixes kept between generation calls (every judge prompt starts with the rubric); null when
    /// prefix sharing is off. Touched on the executor thread only.</summary>
    private readonly PrefixCache? _prefixes;

    private ServedModel(string id, LanguageModel model, ModelExecutor executor, long prefixCacheBytes)
    {
        CheckpointId = id; _model = model; Executor = executor; WeightBytes = model.WeightBytes; Dtype = model.Model.HeadWeight.dtype;
        _prefixes = prefixCacheBytes > 0 ? new PrefixCache(prefixCacheBytes) : null;
    }

    /// <summary>Whether prompts that share a token prefix run it through the model once (in a batch and, while kept,
    /// across batches).</summary>
    public bool SharesPrefixes => _prefixes is not null;

    /// <summary>Prompt tokens run through the model by generation prefills, padding left out (since loading).</summary>
    public long PrefillTokens => Interlocked.Read(ref _prefillTokens);
    private long _prefillTokens;

    /// <summary>Loads the checkpoint folder on a new executor thread, its weights in <paramref name="dtype"/> (float32 by default,
    /// whatever the checkpoint stores). <paramref name="prefixCacheBytes"/> bounds the prompt prefixes kept between calls;
    /// 0 switches prefix sharing off (every prompt is prefilled whole).</summary>
    public static async Task<ServedModel> LoadAsync(string checkpointId, string dir, CancellationToken cancel = default, ScalarType dtype = ScalarType.Float32,
        long prefixCacheBytes = DefaultPrefixCacheBytes)
    {
        var executor = new ModelExecutor(checkpointId);
        try
        {
            var model = await executor.RunAsync(() => LanguageModel.Load(dir, dtype), cancel).ConfigureAwait(false);
            return new ServedModel(checkpointId, model, executor, prefixCacheBytes);
        }
        catch
        {
            executor.Dispose();
            throw;
        }
    }

    /// <summary>Wraps a model already built (e.g. by tests or the trainer); the executor takes ownership.</summary>
    public static ServedModel Wrap(string checkpointId, LanguageModel model, long prefixCacheBytes = DefaultPrefixCacheBytes) =>
        new(checkpointId, model, new ModelExecutor(checkpointId), prefixCacheBytes);

    /// <summary>Most sequences (rows) one merged generation call takes; a single larger call still runs, alone.</summary>
    public int MaxBatchRows { get; init; } = 96;

    private sealed record PendingGeneration(IReadOnlyList<GenerationRequest> Requests, SamplingOptions Options, string Key,
        TaskCompletionSource<IReadOnlyList<GeneratedSequence>> Done, CancellationToken Cancel, Action<int, int, int>? OnToken)
    {
        public int Rows => Requests.Sum(r => r.Seeds.Count);
    }

    private readonly object _pendingGate = new();
    private readonly List<PendingGeneration> _pending = [];
    private long _batches;

    /// <summary>Batched generation calls the model has run (merged calls count once).</summary>
    public long GenerationBatches => Interlocked.Read(ref _batches);

    /// <summary>Generates on the model's thread. Calls that arrive from several threads while the model is busy
    /// (e.g. a judge replica working on several messages at once) are merged into one batched call when their
    /// sampling settings agree: every sequence has its own seeded stream, so its text does not depend on the
    /// batch it runs in, and the model runs one batch instead of many small ones. <paramref name="onToken"/>, when
    /// given, sees each of this call's tokens as it is drawn: (request index, sample index, token id) in this call's
    /// numbering, on the model's thread, so it must only hand the token on (e.g. to a channel).</summary>
    public Task<IReadOnlyList<GeneratedSequence>> GenerateAsync(IReadOnlyList<GenerationRequest> requests, SamplingOptions options, CancellationToken cancel = default,
        Action<int, int, int>? onToken = null)
    {
        options.Validate();
        if (requests.Count == 0) return Task.FromResult<IReadOnlyList<GeneratedSequence>>([]);
        var pending = new PendingGeneration(requests, options, KeyOf(options), new TaskCompletionSource<IReadOnlyList<GeneratedSequence>>(TaskCreationOptions.RunContinuationsAsynchronously), cancel, onToken);
        lock (_pendingGate) _pending.Add(pending);
        // One drain per call: the first drain to run takes everything compatible that is waiting; later ones find less or nothing.
        Task drain;
        try { drain = Executor.RunAsync(DrainOnce, CancellationToken.None); }
        catch (ObjectDisposedException)
        {
            lock (_pendingGate) _pending.Remove(pending);
            throw;
        }
        drain.ContinueWith(t =>
        {
            if (t.Exception is { } e) pending.Done.TrySetException(e.InnerExceptions);
            else if (t.IsCanceled) pending.Done.TrySetCanceled();
        }, TaskScheduler.Default);
        return pending.Done.Task;
    }

    private static string KeyOf(SamplingOptions o) => string.Join('\u0001',
        [o.Temperature.ToString("R", System.Globalization.CultureInfo.InvariantCulture), o.TopP.ToString("R", System.Globalization.CultureInfo.InvariantCulture),
         o.TopK.ToString(System.Globalization.CultureInfo.InvariantCulture), o.MaxNewTokens.ToString(System.Globalization.CultureInfo.InvariantCulture), o.StopAtEos ? "1" : "0", string.Join(',', o.StopTokenIds), .. o.StopStrings]);

    /// <summary>Takes the oldest waiting call and every later one with the same sampling settings (up to
    /// <see cref="MaxBatchRows"/> rows), generates them as one batch and hands each caller its own results.</summary>
    private void DrainOnce()
    {
        var batch = new List<PendingGeneration>();
        lock (_pendingGate)
        {
            _pending.RemoveAll(p =>
            {
                if (!p.Cancel.IsCancellationRequested) return false;
                p.Done.TrySetCanceled(p.Cancel);
                return true;
            });
            if (_pending.Count == 0) return;
            var key = _pending[0].Key;
            int rows = 0;
            foreach (var p in _pending)
            {
                if (p.Key != key) continue;
                if (batch.Count > 0 && rows + p.Rows > MaxBatchRows) break;
                batch.Add(p);
                rows += p.Rows;
            }
            foreach (var p in batch) _pending.Remove(p);
        }
        try
        {
            var merged = batch.SelectMany(p => p.Requests).ToList();
            using var cancel = CancellationTokenSource.CreateLinkedTokenSource(batch.Count == 1 ? batch[0].Cancel : CancellationToken.None);
            Interlocked.Increment(ref _batches);
            var generator = new TextGenerator(_model.Model, _model.Tokenizer) { Prefixes = _prefixes, OnToken = TokenRouter(batch) };
            IReadOnlyList<GeneratedSequence> results;
            try { results = generator.Generate(merged, batch[0].Options, cancel.Token); }
            finally { Interlocked.Add(ref _prefillTokens, generator.PrefillTokens); }
            int offset = 0;
            foreach (var p in batch)
            {
                int from = offset, to = offset + p.Requests.Count;
                p.Done.TrySetResult(results.Where(r => r.RequestIndex >= from && r.RequestIndex < to).Select(r => r with { RequestIndex = r.RequestIndex - from }).ToList());
                offset = to;
            }
        }
        catch (OperationCanceledException) when (batch.Count == 1 && batch[0].Cancel.IsCancellationRequested)
        {
            batch[0].Done.TrySetCanceled(batch[0].Cancel);
        }
        catch (Exception e)
        {
            foreach (var p in batch) p.Done.TrySetException(e);
        }
    }

    /// <summary>Routes a merged batch's tokens to the calls that asked to see them, in each call's own request
    /// numbering; null when no call in the batch asked.</summary>
    private static Action<int, int, int>? TokenRouter(List<PendingGeneration> batch)
    {
        if (batch.All(p => p.OnToken is null)) return null;
        var owner = new List<(PendingGeneration Call, int Offset)>();
        int offset = 0;
        foreach (var p in batch)
        {
            for (int r = 0; r < p.Requests.Count; r++) owner.Add((p, offset));
            offset += p.Requests.Count;
        }
        return (request, sample, token) =>
        {
            var (call, from) = owner[request];
            call.OnToken?.Invoke(request - from, sample, token);
        };
    }

    public Task<IReadOnlyList<SequenceLogProb>> LogProbsAsync(IReadOnlyList<(IReadOnlyList<int> Prompt, IReadOnlyList<int> Completion)> pairs, int batchSize = 8, CancellationToken cancel = default) =>
        Executor.RunAsync(() => LogProbs.Score(_model.Model, pairs, _model.Tokenizer.PadId, batchSize), cancel);

    /// <summary>Any other work on the model, run on its thread.</summary>
    public Task<T> RunAsync<T>(Func<LanguageModel, T> work, CancellationToken cancel = default) => Executor.RunAsync(() => work(_model), cancel);

    public void Dispose()
    {
        try { Executor.RunAsync(() => { _prefixes?.Dispose(); _model.Dispose(); }).Wait(); }
        catch (ObjectDisposedException) { }
        Executor.Dispose();
    }
}
