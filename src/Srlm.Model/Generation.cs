using System.Numerics;

// Over 300 lines on purpose: sampling options, the generator's prefill, decode loop and sampling: the one decode path, read top to bottom.
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
    /// <summary>Token ids that end a sequence like EOS does (a chat template's end-of-turn token,
    /// generation_config.json's eos_token_id); counted as <see cref="FinishReason.Eos"/>.</summary>
    public IReadOnlyList<int> StopTokenIds { get; init; } = [];

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

/// <summary>One sequence's random stream: the project's one SplitMix64 (src/Srlm.Tasks/SplitMix64.cs, compiled in
/// here as a linked file), so a seed gives the same text on every runtime.</summary>
public sealed class SequenceRandom(ulong seed)
{
    private SplitMix64 _generator = new(seed);

    public ulong NextUInt64() => _generator.Next();

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
    /// <summary>When set, token prefixes shared by the prompts of a call are run through the model once, and the
    /// longest shared prefix is kept here for later calls (<see cref="SharedPrefill"/>); the same texts as without,
    /// up to the order of floating-point sums. Null: every prompt is prefilled whole.</summary>
    public PrefixCache? Prefixes { get; init; }

    /// <summary>Called on the generating thread with (request index, sample index, token id) for every token a sequence
    /// gains, as it is drawn (never for the EOS or stop token that ends one), so a caller can stream text while the
    /// batch goes on. It must be quick and must not throw: it runs between decode steps.</summary>
    public Action<int, int, int>? OnToken { get; init; }

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
        var eos = new HashSet<int>(config.EosTokenIds);
        if (tokenizer.EosId is { } te) eos.Add(te);
        eos.UnionWith(options.StopTokenIds);

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

        Tensor logits;       // (rows, V) float32, the distribution of the next token
        KvCache cache;
        Tensor? fullMask = null; // (rows, slots + max new) int64, ones after the prompt; null when nothing is padded
        Tensor nextPos;      // (rows, 1) int64 position of the next token
        var device = model.Device; // every tensor of the generation lives beside the weights
        using (var scope = NewDisposeScope())
        {
            // Prefill once per prompt, or once per shared prefix (Prefixes): (B0, slots) keys and values.
            var (prefillCache, last, slotMask, slots) = Prefixes is null ? PrefillWhole(requests, promptLen, padded, config, device, Math.Max(options.MaxNewTokens, 1))
                : Prefill(requests, config, Math.Max(options.MaxNewTokens, 1));
            var rowIndex = tensor(rowRequest.Select(x => (long)x).ToArray(), device: device);
            bool expand = rows != b0;
            if (expand)
            {
                cache = prefillCache.Select(rowIndex);
                prefillCache.Dispose();
            }
            else cache = prefillCache;
            logits = (expand ? last.index_select(0, rowIndex) : last).to(ScalarType.Float32).MoveToOuterDisposeScope();
            var lengths = tensor(requests.Select(r => (long)r.PromptIds.Count).ToArray(), device: device).index_select(0, rowIndex);
            nextPos = lengths.unsqueeze(1).MoveToOuterDisposeScope();
            if (slotMask is not null)
            {
                var m = ones([rows, cache.Capacity], ScalarType.Int64, device: device);
                m.narrow(1, 0, slots).copy_(tensor(slotMask, [b0, slots], device: device).index_select(0, rowIndex));
                fullMask = m.MoveToOuterDisposeScope();
            }
        }

        try
        {
            for (int step = 0; step < options.MaxNewTokens; step++)
            {
                cancel.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                var next = Sample(logits, options, random, finished); // (rows) int64 on the model's device
                var host = HostLongs(next);                           // the tokens leave the engine here
                for (int i = 0; i < rows; i++)
                {
                    if (finished[i] is not null) continue;
                    int tok = (int)host[i];
                    if (options.StopAtEos && eos.Contains(tok)) { finished[i] = FinishReason.Eos; continue; }
                    generated[i].Add(tok);
                    OnToken?.Invoke(rowRequest[i], rowSample[i], tok);
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
                using (var one = 1.ToScalar()) nextPos.add_(one);
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

    private static long[] HostLongs(Tensor t)
    {
        if (t.device_type == DeviceType.CPU) return t.data<long>().ToArray();
        using var host = t.cpu();
        return host.data<long>().ToArray();
    }

    /// <summary>Prompt tokens run through the model by prefills of this generator (padding left out), and the
    /// positions its prefill forwards covered (rows x columns, padding included); since creation.</summary>
    public long PrefillTokens { get; private set; }
    public long PrefillPositions { get; private set; }

    /// <summary>Whole-prompt prefill: (B0, L) ids left padded in one forward; the cache (B0, L + room), the last
    /// logits (B0, V), the mask of the L slots (null when no prompt is padded).</summary>
    private (KvCache Cache, Tensor Last, long[]? Mask, int Slots) PrefillWhole(IReadOnlyList<GenerationRequest> requests, int promptLen, bool padded,
        LlamaConfig config, Device device, int room)
    {
        int b0 = requests.Count;
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
        PrefillTokens += requests.Sum(r => (long)r.PromptIds.Count);
        PrefillPositions += (long)b0 * promptLen;
        var cache = new KvCache(config, b0, promptLen + room, DtypeOf(model), device);
        try
        {
            using var scope = NewDisposeScope();
            var idsT = tensor(ids, [b0, promptLen], device: device);
            var maskT = padded ? tensor(mask, [b0, promptLen], device: device) : null;
            var last = model.Forward(idsT, maskT, cache: cache, lastOnly: true).squeeze(1); // (B0, V)
            return (cache, last.MoveToOuterDisposeScope(), padded ? mask : null, promptLen);
        }
        catch
        {
            cache.Dispose();
            throw;
        }
    }

    /// <summary>Prefill that runs every shared token prefix once (<see cref="SharedPrefill"/>), its root kept in
    /// <see cref="Prefixes"/> for later calls.</summary>
    private (KvCache Cache, Tensor Last, long[]? Mask, int Slots) Prefill(IReadOnlyList<GenerationRequest> requests, LlamaConfig config, int room)
    {
        var plan = SharedPrefill.Plan(requests, Prefixes!.MinSharedTokens);
        try { return plan.Run(model, tokenizer.PadId, DtypeOf(model), room, Prefixes); }
        finally
        {
            PrefillTokens += plan.TokensComputed;
            PrefillPositions += plan.PositionsComputed;
        }
    }

    /// <summary>Where the first of the stop strings starts in the text, or -1.</summary>
    public static int FirstStop(string text, IReadOnlyList<string> stops)
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
    /// uniform from its own stream and its own row of probabilities, so its token does not depend on its neighbours.</summary>
    /// <remarks>Top-k keeps every token at least as likely as the k-th (ties kept, as HF's warper); top-p then keeps
    /// the smallest set of the most likely remaining tokens whose mass reaches p (found through a histogram of the
    /// mass and a selection inside one bucket, not by sorting the vocabulary: a full sort of 16 x 8192 logits was a
    /// quarter of a batched decode step), and the token is drawn from that set renormalised, walking it in
    /// vocabulary order.</remarks>
    public static Tensor Sample(Tensor logits, SamplingOptions o, SequenceRandom[] random, FinishReason?[] finished)
    {
        if (o.Temperature == 0) return logits.argmax(-1);
        int rows = (int)logits.shape[0], v = (int)logits.shape[1];
        using var scope = NewDisposeScope();
        using var temperature = o.Temperature.ToScalar();
        var p = logits.div(temperature).softmax(-1, ScalarType.Float32).cpu().contiguous();
        // (rows * V), each row normalised on its own; read in place: data<float>().ToArray() copied element by
        // element and took 3 ms of a 35 ms batch-16 decode step.
        var probs = MemoryMarshal.Cast<byte, float>(p.bytes);
        var next = new long[rows];
        var scratch = new Nucleus.Scratch(v);
        for (int i = 0; i < rows; i++)
        {
            // A finished row draws nothing, so its stream stays aligned with its tokens; its input is ignored.
            if (finished[i] is not null) continue;
            var row = probs.Slice(i * v, v);
            double u = random[i].NextDouble();
            next[i] = Nucleus.Draw(row, o.TopK, o.TopP, u, scratch);
        }
        return tensor(next, device: logits.device).MoveToOuterDisposeScope();
    }
}

/// <summary>Top-k / top-p thresholds over one row of probabilities in linear time: a histogram over buckets ordered like
/// the values finds the bucket holding the threshold, and a selection inside that bucket finds it exactly.</summary>
internal static class Nucleus
{
    // Top-p buckets: a positive float's bits increase with its value, so bits >> 19 (exponent and the top 4
    // mantissa bits: 16 buckets per octave) orders the values by bucket; probabilities <= 1 stay below 2032.
    private const int BucketShift = 19, Buckets = 2048;

    /// <summary>Work arrays for <see cref="Draw"/>, reused across the rows of a step.</summary>
    public sealed class Scratch(int vocab)
    {
        public readonly float[] Values = new float[vocab];
        public readonly double[] BucketMass = new double[Buckets];
        public readonly int[] BucketCount = new int[Buckets];
    }

    private static int Bucket(float x) => Math.Min((int)(BitConverter.SingleToUInt32Bits(x) >> BucketShift), Buckets - 1);

    /// <summary>Copies the values of <paramref name="p"/> that fall in <paramref name="bucket"/> into <paramref name="values"/>; returns their count.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int InBucket(ReadOnlySpan<float> p, int bucket, float[] values)
    {
        int n = 0;
        foreach (float x in p)
            if (Bucket(x) == bucket) values[n++] = x;
        return n;
    }

    /// <summary>The token drawn with uniform <paramref name="u"/> from the top-k, then top-p, set of <paramref name="p"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static int Draw(ReadOnlySpan<float> p, int topK, double topP, double u, Scratch scratch)
    {
        int v = p.Length;
        float floor = 0f;     // tokens with p < floor are out; 0 keeps every token
        double? kept = null;  // the mass of the kept tokens when a path below has it
        if (topK > 0 && topK < v)
        {
            // Count the values per bucket; the k-th largest lies in the bucket where the count from the top
            // reaches k, and only that bucket's values go through the selection.
            var counts = scratch.BucketCount;
            Array.Clear(counts);
            for (int j = 0; j < v; j++) counts[Bucket(p[j])]++;
            int b = Buckets - 1, above = 0;
            while (b > 0 && above + counts[b] < topK) above += counts[b--];
            var values = scratch.Values;
            int n = InBucket(p, b, values);
            floor = KthLargest(values.AsSpan(0, n), topK - above);
        }
        if (topP < 1.0 && floor > 0f)
        {
            // After top-k few tokens are left: select among them.
            int n = 0;
            double mass = 0;
            var values = scratch.Values;
            for (int j = 0; j < v; j++)
                if (p[j] >= floor) { values[n++] = p[j]; mass += p[j]; }
            floor = Math.Max(floor, MassThreshold(values.AsSpan(0, n), topP * mass));
        }
        else if (topP < 1.0)
        {
            // The mass of each bucket in one pass; walking the buckets from the top finds the one where the kept
            // mass reaches p, and only that bucket's values go through the exact selection (a selection over the
            // whole vocabulary was most of the sampling time of a batch-16 step).
            var bucketMass = scratch.BucketMass;
            Array.Clear(bucketMass);
            double mass = 0;
            for (int j = 0; j < v; j++)
            {
                float x = p[j];
                bucketMass[Bucket(x)] += x;
                mass += x;
            }
            double need = topP * mass, above = 0;
            int b = Buckets - 1;
            while (b > 0 && above + bucketMass[b] < need) above += bucketMass[b--];
            var values = scratch.Values;
            int n = InBucket(p, b, values);
            floor = MassThreshold(values.AsSpan(0, n), need - above);
            for (int k = 0; k < n; k++) if (values[k] >= floor) above += values[k];
            if (n > 0) kept = above; // the kept mass: the buckets above, and the kept part of this one
        }
        double total = kept ?? KeptSum(p, floor);
        return Walk(p, floor, u * total);
    }

    /// <summary>The sum of the values >= <paramref name="floor"/>, eight lanes at a time in double.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static double KeptSum(ReadOnlySpan<float> p, float floor)
    {
        var lanes = MemoryMarshal.Cast<float, Vector<float>>(p);
        var f = new Vector<float>(floor);
        Vector<double> lo = Vector<double>.Zero, hi = Vector<double>.Zero;
        foreach (var x in lanes)
        {
            Vector.Widen(Vector.ConditionalSelect(Vector.GreaterThanOrEqual(x, f), x, Vector<float>.Zero), out var l, out var h);
            lo += l; hi += h;
        }
        double total = Vector.Sum(lo + hi);
        for (int j = lanes.Length * Vector<float>.Count; j < p.Length; j++) if (p[j] >= floor) total += p[j];
        return total;
    }

    /// <summary>The first kept token (value >= <paramref name="floor"/>) at which the running mass of the kept tokens,
    /// in vocabulary order, exceeds <paramref name="target"/>: blocks whose kept mass stays below it are skipped
    /// whole, the block that crosses it is walked token by token.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int Walk(ReadOnlySpan<float> p, float floor, double target)
    {
        var lanes = MemoryMarshal.Cast<float, Vector<float>>(p);
        var f = new Vector<float>(floor);
        double acc = 0;
        int i = 0;
        for (; i < lanes.Length; i++)
        {
            Vector.Widen(Vector.ConditionalSelect(Vector.GreaterThanOrEqual(lanes[i], f), lanes[i], Vector<float>.Zero), out var l, out var h);
            double block = Vector.Sum(l + h);
            if (acc + block > target) break;
            acc += block;
        }
        int j = i * Vector<float>.Count; // the block that crosses the target, or the tail after the last whole block
        for (; j < p.Length; j++)
        {
            float x = p[j];
            if (x < floor) continue;
            acc += x;
            if (acc > target) return j;
        }
        for (j = p.Length - 1; j >= 0; j--) if (p[j] >= floor) return j; // rounding: target at the very top of the mass
        return -1;
    }

    /// <summary>The k-th largest value (1-based) of <paramref name="a"/>, which is reordered.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float KthLargest(Span<float> a, int k)
    {
        int lo = 0, hi = a.Length - 1, want = k - 1; // index of the answer when sorted descending
        while (true)
        {
            if (lo == hi) return a[lo];
            float pivot = MedianOf3(a[lo], a[(lo + hi) >>> 1], a[hi]);
            // Three-way partition of [lo, hi]: > pivot, == pivot, < pivot.
            int lt = lo, i = lo, gt = hi;
            while (i <= gt)
            {
                float x = a[i];
                if (x > pivot) { a[i++] = a[lt]; a[lt++] = x; }
                else if (x < pivot) { a[i] = a[gt]; a[gt--] = x; }
                else i++;
            }
            if (want < lt) hi = lt - 1;
            else if (want <= gt) return pivot;
            else lo = gt + 1;
        }
    }

    /// <summary>The largest t such that the values >= t sum to at least <paramref name="need"/> (the smallest set of
    /// the largest values reaching that mass keeps everything >= t). <paramref name="a"/> is reordered.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float MassThreshold(Span<float> a, double need)
    {
        int lo = 0, hi = a.Length - 1;
        if (hi < 0) return 0f;
        double above = 0; // mass of values already known to be above [lo, hi]
        while (true)
        {
            if (lo >= hi) return a[Math.Min(lo, a.Length - 1)];
            float pivot = MedianOf3(a[lo], a[(lo + hi) >>> 1], a[hi]);
            int lt = lo, i = lo, gt = hi;
            double upper = 0, equal = 0;
            while (i <= gt)
            {
                float x = a[i];
                if (x > pivot) { upper += x; a[i++] = a[lt]; a[lt++] = x; }
                else if (x < pivot) { a[i] = a[gt]; a[gt--] = x; }
                else { equal += x; i++; }
            }
            if (above + upper >= need && lt > lo) hi = lt - 1;              // the set ends among the larger values
            else if (above + upper + equal >= need || gt >= hi) return pivot; // it ends at the pivot (ties kept)
            else { above += upper + equal; lo = gt + 1; }                     // it needs smaller values too
        }
    }

    private static float MedianOf3(float a, float b, float c) => a < b ? (b < c ? b : Math.Max(a, c)) : (a < c ? a : Math.Max(b, c));
}
