using Srlm.Model.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace Srlm.Model;

/// <summary>How to sample. Temperature 0 is greedy. TopK 0 and TopP 1 switch those filters off.</summary>
public sealed record SamplingOptions
{
    public int MaxNewTokens { get; init; } = 256;
    public double Temperature { get; init; } = 0.7;
    public double TopP { get; init; } = 1.0;
    public int TopK { get; init; }
    /// <summary>Generation of a sequence stops when its text contains one of these; the text is cut before it.</summary>
    public IReadOnlyList<string> StopStrings { get; init; } = [];
    public bool StopAtEos { get; init; } = true;

    public static SamplingOptions Greedy(int maxNewTokens) => new() { MaxNewTokens = maxNewTokens, Temperature = 0 };

    public void Validate()
    {
        if (MaxNewTokens < 0) throw new ArgumentException($"max new tokens must be >= 0, got {MaxNewTokens}");
        if (Temperature < 0 || double.IsNaN(Temperature)) throw new ArgumentException($"temperature must be >= 0, got {Temperature}");
        if (TopP <= 0 || TopP > 1) throw new ArgumentException($"top-p must be in (0, 1], got {TopP}");
        if (TopK < 0) throw new ArgumentException($"top-k must be >= 0, got {TopK}");
    }
}

/// <summary>One prompt and the seed of each sample to draw from it; all samples share one prefill.
/// Each sample has its own random stream, so its tokens do not depend on what else is in the batch.</summary>
public sealed record GenerationRequest(IReadOnlyList<int> PromptIds, IReadOnlyList<ulong> Seeds)
{
    public GenerationRequest(IReadOnlyList<int> promptIds, ulong seed) : this(promptIds, [seed]) { }
}

public enum FinishReason { Eos, StopString, Length }

/// <summary>A generated continuation. TokenIds exclude the EOS that ended it; Text has special tokens skipped
/// and is cut before a stop string.</summary>
public sealed record GeneratedSequence(int RequestIndex, int SampleIndex, ulong Seed, int[] TokenIds, string Text, FinishReason FinishReason);

/// <summary>SplitMix64: a tiny, fast, well-mixed generator; one per sequence.</summary>
public sealed class SequenceRandom(ulong seed)
{
    private ulong _state = seed;

    public ulong NextUInt64()
    {
        ulong z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Uniform in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>Derives independent seeds from ids (run, prompt, sample index...) deterministically.</summary>
    public static ulong Derive(params ulong[] parts)
    {
        ulong h = 0x243F6A8885A308D3UL;
        foreach (var p in parts) h = new SequenceRandom(h ^ p).NextUInt64();
        return h;
    }
}

/// <summary>Batched generation with left padding, a KV cache, and one random stream per sequence.
/// Runs on the calling thread, under no_grad, with one dispose scope per decode step.</summary>
public sealed class TextGenerator(LlamaForCausalLM model, ITokenizer tokenizer)
{
    /// <summary>Encodes prompts (with BOS when the tokenizer expects it) and generates one sample per seed.</summary>
    public IReadOnlyList<GeneratedSequence> Generate(IReadOnlyList<string> prompts, IReadOnlyList<ulong> seeds, SamplingOptions options, CancellationToken cancel = default)
    {
        if (prompts.Count != seeds.Count) throw new ArgumentException("one seed per prompt");
        var requests = prompts.Select((p, i) => new GenerationRequest(tokenizer.Encode(p, addBos: tokenizer.AddBos), seeds[i])).ToList();
        return Generate(requests, options, cancel);
    }

    public IReadOnlyList<GeneratedSequence> Generate(IReadOnlyList<GenerationRequest> requests, SamplingOptions options, CancellationToken cancel = default)
    {
        options.Validate();
        if (requests.Count == 0) return [];
        foreach (var r in requests)
        {
            if (r.PromptIds.Count == 0) throw new ArgumentException("a prompt must have at least one token (add BOS)");
            if (r.Seeds.Count == 0) throw new ArgumentException("a request needs at least one seed");
        }
        var config = model.Config;
        using var noGrad = no_grad();
        bool wasTraining = model.training;
        if (wasTraining) model.eval();
        try
        {
            return Run(requests, options, config, cancel);
        }
        finally
        {
            if (wasTraining) model.train();
        }
    }

    private IReadOnlyList<GeneratedSequence> Run(IReadOnlyList<GenerationRequest> requests, SamplingOptions options, LlamaConfig config, CancellationToken cancel)
    {
        int b0 = requests.Count;
        int promptLen = requests.Max(r => r.PromptIds.Count);
        bool padded = requests.Any(r => r.PromptIds.Count != promptLen);
        long capacity = promptLen + Math.Max(options.MaxNewTokens, 1);
        var eos = new HashSet<int>(config.EosTokenIds);
        if (tokenizer.EosId is { } te) eos.Add(te);

        // Rows after expansion: request r's samples are consecutive.
        var rowRequest = new List<int>();
        var rowSample = new List<int>();
        for (int r = 0; r < b0; r++)
            for (int s = 0; s < requests[r].Seeds.Count; s++) { rowRequest.Add(r); rowSample.Add(s); }
        int rows = rowRequest.Count;
        var random = Enumerable.Range(0, rows).Select(i => new SequenceRandom(requests[rowRequest[i]].Seeds[rowSample[i]])).ToArray();
        var generated = Enumerable.Range(0, rows).Select(_ => new List<int>(options.MaxNewTokens)).ToArray();
        var finished = new FinishReason?[rows];
        var texts = new string?[rows];

        // Prefill once per prompt: (B0, L) ids, left padded.
        var ids = new long[b0 * promptLen];
        var mask = new long[b0 * promptLen];
        for (int r = 0; r < b0; r++)
        {
            var p = requests[r].PromptIds;
            int pad = promptLen - p.Count;
            for (int j = 0; j < promptLen; j++)
            {
                ids[r * promptLen + j] = j < pad ? tokenizer.PadId : p[j - pad];
                mask[r * promptLen + j] = j < pad ? 0 : 1;
            }
        }

        Tensor logits;       // (rows, V) float32, the distribution of the next token
        KvCache cache;
        Tensor? fullMask = null; // (rows, L + max new) int64, ones after the prompt; null when nothing is padded
        Tensor nextPos;      // (rows, 1) int64 position of the next token
        using (var scope = NewDisposeScope())
        {
            var idsT = tensor(ids, [b0, promptLen]);
            var maskT = tensor(mask, [b0, promptLen]);
            var prefillCache = new KvCache(config, b0, capacity, DtypeOf(model));
            var last = model.Forward(idsT, padded ? maskT : null, cache: prefillCache, lastOnly: true).squeeze(1); // (B0, V)
            var rowIndex = tensor(rowRequest.Select(x => (long)x).ToArray());
            bool expand = rows != b0;
            if (expand)
            {
                cache = prefillCache.Select(rowIndex);
                prefillCache.Dispose();
            }
            else cache = prefillCache;
            logits = (expand ? last.index_select(0, rowIndex) : last).to(ScalarType.Float32).MoveToOuterDisposeScope();
            var lengths = tensor(requests.Select(r => (long)r.PromptIds.Count).ToArray()).index_select(0, rowIndex);
            nextPos = lengths.unsqueeze(1).MoveToOuterDisposeScope();
            if (padded)
            {
                var m = ones([rows, capacity], ScalarType.Int64);
                m.narrow(1, 0, promptLen).copy_(maskT.index_select(0, rowIndex));
                fullMask = m.MoveToOuterDisposeScope();
            }
        }

        try
        {
            for (int step = 0; step < options.MaxNewTokens; step++)
            {
                cancel.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                var next = Sample(logits, options, random, finished); // (rows) int64
                var host = next.data<long>().ToArray();
                for (int i = 0; i < rows; i++)
                {
                    if (finished[i] is not null) continue;
                    int tok = (int)host[i];
                    if (options.StopAtEos && eos.Contains(tok)) { finished[i] = FinishReason.Eos; continue; }
                    generated[i].Add(tok);
                    if (options.StopStrings.Count > 0)
                    {
                        var text = tokenizer.Decode(generated[i], skipSpecial: true);
                        int cut = FirstStop(text, options.StopStrings);
                        if (cut >= 0) { finished[i] = FinishReason.StopString; texts[i] = text[..cut]; }
                    }
                }
                if (finished.All(f => f is not null) || step == options.MaxNewTokens - 1) break;

                var input = next.unsqueeze(1);                                        // (rows, 1)
                var m = fullMask?.narrow(1, 0, cache.Length + 1);
                var newLogits = model.Forward(input, m, nextPos, cache, lastOnly: true).squeeze(1).to(ScalarType.Float32);
                nextPos.add_(1);
                logits.Dispose();
                logits = newLogits.MoveToOuterDisposeScope();
            }
        }
        finally
        {
            logits.Dispose();
            cache.Dispose();
            fullMask?.Dispose();
            nextPos.Dispose();
        }

        var result = new List<GeneratedSequence>(rows);
        for (int i = 0; i < rows; i++)
        {
            var reason = finished[i] ?? FinishReason.Length;
            var text = texts[i] ?? tokenizer.Decode(generated[i], skipSpecial: true);
            if (reason != FinishReason.StopString && options.StopStrings.Count > 0 && FirstStop(text, options.StopStrings) is var c and >= 0)
            { text = text[..c]; reason = FinishReason.StopString; }
            result.Add(new GeneratedSequence(rowRequest[i], rowSample[i], requests[rowRequest[i]].Seeds[rowSample[i]], generated[i].ToArray(), text, reason));
        }
        return result;
    }

    private static ScalarType DtypeOf(LlamaForCausalLM m) => m.parameters().First().dtype;

    private static int FirstStop(string text, IReadOnlyList<string> stops)
    {
        int best = -1;
        foreach (var s in stops)
        {
            if (s.Length == 0) continue;
            int i = text.IndexOf(s, StringComparison.Ordinal);
            if (i >= 0 && (best < 0 || i < best)) best = i;
        }
        return best;
    }

    /// <summary>Picks the next token of every row: (rows, V) logits -> (rows) ids. Row i's draw uses only its own
    /// uniform from its own stream, and all tensor ops are row-wise, so a row's token does not depend on its neighbours.</summary>
    public static Tensor Sample(Tensor logits, SamplingOptions o, SequenceRandom[] random, FinishReason?[] finished)
    {
        if (o.Temperature == 0) return logits.argmax(-1);
        long v = logits.shape[1];
        var scaled = logits / o.Temperature;
        Tensor probs, indices; // (rows, K): candidates in descending order and their probabilities under the full softmax
        var lse = scaled.logsumexp(-1, keepdim: true); // (rows, 1)
        long k = o.TopK > 0 && o.TopK < v ? o.TopK : v;
        if (k == v && o.TopP < 1.0 && v > 256)
        {
            // The nucleus usually lies in the top 256: check every row's top-256 mass covers top-p, else sort all.
            // Both paths compute the same leading probabilities and cumulative sums, so the draw is the same.
            var (topValues, topIndices) = scaled.topk(256, dim: -1, largest: true, sorted: true);
            var topProbs = TensorMath.Sub(topValues, lse).exp_();
            if (topProbs.sum(-1).ge(o.TopP).all().item<bool>()) k = 256;
            if (k == 256) { probs = topProbs; indices = topIndices; }
            else { var (values, idx) = scaled.sort(-1, descending: true); probs = TensorMath.Sub(values, lse).exp_(); indices = idx; }
        }
        else if (k < v)
        {
            var (values, idx) = scaled.topk((int)k, dim: -1, largest: true, sorted: true);
            probs = values.softmax(-1); indices = idx; // top-k first, then top-p on the renormalised rest (as HF's warpers)
        }
        else
        {
            var (values, idx) = scaled.sort(-1, descending: true);
            probs = TensorMath.Sub(values, lse).exp_(); indices = idx;
        }
        if (o.TopP < 1.0)
        {
            var before = probs.cumsum(-1) - probs; // probability mass ranked above each token
            probs = probs.masked_fill(before.gt(o.TopP), 0.0);
        }
        var cdf = probs.cumsum(-1);                                   // (rows, K)
        var u = new float[random.Length];
        for (int i = 0; i < random.Length; i++)
            u[i] = finished[i] is null ? (float)random[i].NextDouble() : 0f; // a finished row draws nothing, so streams stay aligned with tokens
        var target = tensor(u).unsqueeze(1) * cdf.narrow(1, cdf.shape[1] - 1, 1); // (rows, 1)
        var pick = cdf.le(target).sum(-1, keepdim: true).clamp_max(cdf.shape[1] - 1); // first index whose cdf exceeds the target
        return indices.gather(1, pick).squeeze(1);
    }
}
