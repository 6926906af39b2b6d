using Srlm.Model;
using Srlm.Storage.Checkpoints;
using ModelRequest = Srlm.Model.GenerationRequest;

namespace Srlm.ServiceKit;

/// <summary>The model provider of every service host: checkpoints are materialised from the checkpoint
/// store and loaded once per process into Srlm.Model's cache (LRU, bounded by weight bytes; SRLM_MODEL_CACHE_MB,
/// default 4096), each on its own executor thread, with the prompt prefixes it keeps between batches
/// (SRLM_PREFIX_CACHE_MB, default 256; 0 switches prefix sharing off). Every call takes a lease, so a model in use is never evicted.</summary>
public sealed class CheckpointModelProvider : IModelProvider, IDisposable
{
    private readonly ModelCache _cache;

    public CheckpointModelProvider(ICheckpointStore checkpoints)
    {
        long mb = long.TryParse(Environment.GetEnvironmentVariable("SRLM_MODEL_CACHE_MB"), out var v) && v > 0 ? v : 4096;
        // Prompt prefixes (the judge's rubric) each loaded model keeps between batches; 0 = no prefix sharing at all.
        long prefixMb = long.TryParse(Environment.GetEnvironmentVariable("SRLM_PREFIX_CACHE_MB"), out var p) && p >= 0 ? p : ServedModel.DefaultPrefixCacheBytes / (1024 * 1024);
        _cache = new ModelCache(mb * 1024 * 1024, (id, ct) => checkpoints.MaterializeAsync(id, null, ct)) { PrefixCacheBytes = prefixMb * 1024 * 1024 };
    }

    public Task<ITextModel> GetAsync(string checkpointId, CancellationToken ct) => GetAsync(checkpointId, null, ct);

    public async Task<ITextModel> GetAsync(string checkpointId, string? dtype, CancellationToken ct)
    {
        var type = dtype is null ? TorchSharp.torch.ScalarType.Float32
            : ModelDtype.TryParse(dtype) ?? throw new ArgumentException($"spec.models.dtype: must be one of {string.Join(", ", ModelDtype.Names)}, got '{dtype}'");
        using var lease = await _cache.AcquireAsync(checkpointId, ct, type);
        return new CachedTextModel(_cache, lease.Model);
    }

    public void Dispose() => _cache.Dispose();

    /// <summary>The name records store (Srlm.Storage.FinishReasons).</summary>
    public static string FinishReasonName(FinishReason reason) => reason switch
    {
        FinishReason.Eos => Srlm.Storage.FinishReasons.Eos,
        FinishReason.StopString => Srlm.Storage.FinishReasons.Stop,
        _ => Srlm.Storage.FinishReasons.Length,
    };

    private sealed class CachedTextModel(ModelCache cache, ServedModel served) : ITextModel
    {
        // Managed objects, valid after the weights are evicted (a new lease reloads the weights).
        private readonly Srlm.Model.Tokenization.ITokenizer _tokenizer = served.Tokenizer;
        private readonly Srlm.Model.Tokenization.PromptTemplate _template = served.Template;

        public string CheckpointId => served.CheckpointId;

        public int ContextLength => served.Config.MaxPositionEmbeddings;

        public int CountPromptTokens(string prompt) => Encode(prompt, raw: false).Count;

        public int CountCompletionTokens(string completion) => _tokenizer.Encode(completion).Count;

        /// <summary>A checkpoint with a chat template gets every prompt as a chat message, the raw few-shot
        /// self-instruct text included (an instruct model is prompted in the format it was tuned on); Raw skips the
        /// prompt layout only for checkpoints with one of our srlm.json layouts.</summary>
        private bool Templated(bool raw) => !raw || _template.Chat is not null;

        private IReadOnlyList<int> Encode(string text, bool raw) =>
            Templated(raw) ? _tokenizer.Encode(_template.Format(text), addBos: _template.AddBos(_tokenizer)) : _tokenizer.Encode(text, addBos: _tokenizer.AddBos);

        public async Task<IReadOnlyList<GenerationResult>> GenerateAsync(IReadOnlyList<GenerationRequest> requests, CancellationToken ct)
        {
            var results = new GenerationResult[requests.Count];
            using var lease = await cache.AcquireAsync(CheckpointId, ct, served.Dtype);
            // One model call per sampling setting; requests with the same prompt share one prefill.
            foreach (var group in requests.Select((r, i) => (r, i)).GroupBy(x => (x.r.Temperature, x.r.TopP, x.r.MaxNewTokens, x.r.Raw, Stop: string.Join('\u0001', x.r.Stop))))
            {
                var (temperature, topP, maxNew, raw, _) = group.Key;
                var stops = group.First().r.Stop.Concat(Templated(raw) ? _template.StopStrings : []).Distinct().ToList();
                var byPrompt = group.GroupBy(x => x.r.Prompt, StringComparer.Ordinal).ToList();
                var modelRequests = new List<ModelRequest>();
                var slots = new List<int[]>();
                var promptTokens = new List<int>();
                foreach (var p in byPrompt)
                {
                    var ids = Encode(p.Key, raw);
                    // Keep room for the answer: a prompt longer than the context is cut from the left.
                    int room = Math.Max(1, ContextLength - maxNew);
                    if (ids.Count > room) ids = ids.Skip(ids.Count - room).ToList();
                    modelRequests.Add(new ModelRequest(ids, p.Select(x => unchecked((ulong)x.r.Seed)).ToList()));
                    slots.Add(p.Select(x => x.i).ToArray());
                    promptTokens.Add(ids.Count);
                }
                var options = new SamplingOptions
                {
                    Temperature = temperature, TopP = topP, MaxNewTokens = maxNew, StopStrings = stops,
                    StopTokenIds = Templated(raw) ? _template.StopTokenIds(_tokenizer) : [],
                };
                var generated = await lease.Model.GenerateAsync(modelRequests, options, ct);
                foreach (var g in generated)
                    results[slots[g.RequestIndex][g.SampleIndex]] = new GenerationResult(g.Text, promptTokens[g.RequestIndex], g.TokenIds.Length, FinishReasonName(g.FinishReason));
            }
            return results;
        }
    }
}
