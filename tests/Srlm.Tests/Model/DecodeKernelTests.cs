namespace Srlm.Tests.Model;

/// <summary>The C# decode kernel (one token per row, up to <c>DecodeStep.MaxRows</c> rows) against libtorch's forward
/// pass, and bfloat16/float16 inference against float32.</summary>
public class DecodeKernelTests(ITestOutputHelper output)
{
    public static TheoryData<string> Configs() => new() { "llama-gqa", "qwen2-bias-tied", "llama3-rope-scaling", "yarn" };

    private static LanguageModel Model(string name, long seed = 7, double initStd = 0.25)
    {
        var lm = TestModels.CharModel(seed: seed, initStd: initStd, config: TestModels.Named(name));
        if (name.StartsWith("qwen2", StringComparison.Ordinal))
        {
            // The biases come from the model's seed, not the global generator: drawn from whatever state other tests
            // left, they made the bf16 tolerance check pass or fail from run to run.
            using var g = new TorchSharp.torch.Generator((ulong)seed);
            using (no_grad()) foreach (var (n, p) in lm.Model.named_parameters()) if (n.EndsWith(".bias", StringComparison.Ordinal)) p.normal_(0, 0.1, g);
        }
        return lm;
    }

    /// <summary>Runs the same decode steps twice from copies of one prefilled cache: kernel on, kernel off.</summary>
    [Theory]
    [MemberData(nameof(Configs))]
    public void Kernel_decode_steps_give_libtorch_logits_and_cache_for_single_and_padded_rows(string name)
    {
        using var lm = Model(name);
        var m = lm.Model;
        using var _ = no_grad();
        foreach (int rows in new[] { 1, 3, 16 })
        {
            // Row r is left padded by r positions (rows > 1), so masks and positions differ per row.
            const int len = 9, steps = 6;
            var ids = new long[rows * len];
            var mask = new long[rows * len];
            for (int r = 0; r < rows; r++)
                for (int j = 0; j < len; j++) { bool pad = j < r; ids[r * len + j] = pad ? 0 : 4 + (r * 7 + j * 13) % 300; mask[r * len + j] = pad ? 0 : 1; }
            using var idsT = tensor(ids, [rows, len]);
            using var maskT = tensor(mask, [rows, len]);
            using var cacheA = new KvCache(m.Config, rows, len + steps, ScalarType.Float32, m.Device);
            m.UseDecodeKernel = false;
            using (m.Forward(idsT, rows > 1 ? maskT : null, cache: cacheA, lastOnly: true)) { }
            using var all = tensor(Enumerable.Range(0, rows).Select(i => (long)i).ToArray());
            using var cacheB = cacheA.Select(all);
            var full = ones([rows, len + steps], ScalarType.Int64);
            full.narrow(1, 0, len).copy_(maskT);
            double worst = 0, scale = 0;
            for (int s = 0; s < steps; s++)
            {
                using var scope = NewDisposeScope();
                var next = tensor(Enumerable.Range(0, rows).Select(r => (long)(10 + 31 * s + r)).ToArray()).unsqueeze(1);
                var stepMask = rows > 1 ? full.narrow(1, 0, len + s + 1) : null;
                m.UseDecodeKernel = true;
                var kernel = m.Forward(next, stepMask, cache: cacheA, lastOnly: true);
                m.UseDecodeKernel = false;
                var libtorch = m.Forward(next, stepMask, cache: cacheB, lastOnly: true);
                worst = Math.Max(worst, (kernel - libtorch).abs().max().item<float>());
                scale = Math.Max(scale, libtorch.abs().max().item<float>());
            }
            m.UseDecodeKernel = true;
            output.WriteLine($"{name}, {rows} row(s): max |kernel - libtorch| = {worst:E2} (logit scale {scale:G3})");
            Assert.True(worst < 1e-4 * Math.Max(1, scale), $"{name}, {rows} rows: logits differ by {worst:G3}");
            Assert.Equal(cacheB.Length, cacheA.Length);
            for (int l = 0; l < m.Config.NumHiddenLayers; l++)
            {
                var (ka, va) = cacheA.Layer(l);
                var (kb, vb) = cacheB.Layer(l);
                Assert.True((ka - kb).abs().max().item<float>() < 1e-4 && (va - vb).abs().max().item<float>() < 1e-4, $"layer {l}: caches differ");
            }
            full.Dispose();
        }
    }

    /// <summary>A row's logits do not depend on the batch it is decoded in: the kernel's blocked products keep one
    /// summation order, and its rows attend on separate threads without sharing scratch. Every step here goes through
    /// the kernel (from an empty cache), so no libtorch prefill of a different shape enters the comparison.</summary>
    [Theory]
    [InlineData("llama-gqa", "float32")]
    [InlineData("qwen2-bias-tied", "float32")]
    [InlineData("llama-gqa", "bfloat16")]
    public void A_rows_kernel_logits_are_the_same_bits_alone_and_in_a_batch(string name, string dtypeName)
    {
        using var source = Model(name, seed: 5);
        var dir = TestModels.TempDir("rowsbits");
        source.Save(dir);
        using var lm = LanguageModel.Load(dir, ModelDtype.Parse(dtypeName));
        var m = lm.Model;
        using var _ = no_grad();
        // 31 rows: the most the kernel takes (DecodeStep.MaxRows, 32) less one, so the last row has no partner in the 2x2 blocks.
        const int rows = 31, steps = 5;
        long Token(int r, int s) => 4 + (r * 37 + s * 11) % 300;
        int before = get_num_threads();
        set_num_threads(2); // the threaded paths (row blocks, attention rows, SwiGLU) run
        try
        {
            m.UseDecodeKernel = true;
            var batch = new float[steps][];
            using (var cache = new KvCache(m.Config, rows, steps, ScalarType.Float32, m.Device))
                for (int s = 0; s < steps; s++)
                {
                    using var ids = tensor(Enumerable.Range(0, rows).Select(r => Token(r, s)).ToArray()).unsqueeze(1);
                    using var logits = m.Forward(ids, null, cache: cache, lastOnly: true);
                    batch[s] = logits.data<float>().ToArray();
                }
            int vocab = m.Config.VocabSize;
            foreach (int r in new[] { 0, 1, rows / 2, rows - 1 })
            {
                using var cache = new KvCache(m.Config, 1, steps, ScalarType.Float32, m.Device);
                for (int s = 0; s < steps; s++)
                {
                    using var ids = tensor(new[] { Token(r, s) }).unsqueeze(1);
                    using var logits = m.Forward(ids, null, cache: cache, lastOnly: true);
                    var alone = logits.data<float>().ToArray();
                    for (int v = 0; v < vocab; v++)
                        Assert.True(BitConverter.SingleToInt32Bits(alone[v]) == BitConverter.SingleToInt32Bits(batch[s][r * vocab + v]),
                            $"{name} {dtypeName}: row {r} step {s} logit {v}: {alone[v]:R} alone, {batch[s][r * vocab + v]:R} in a batch of {rows}");
                }
            }
        }
        finally { set_num_threads(before); }
    }

    [Fact]
    public void Kernel_and_libtorch_decode_give_the_same_greedy_text()
    {
        using var lm = Model("llama-gqa", seed: 2);
        var gen = new TextGenerator(lm.Model, lm.Tokenizer);
        var options = SamplingOptions.Greedy(64) with { StopAtEos = false };
        foreach (var prompt in new[] { "hello there", "the quick brown fox", "Why?" })
        {
            var ids = lm.Tokenizer.Encode(prompt, addBos: true);
            lm.Model.UseDecodeKernel = true;
            var kernel = gen.Generate([new GenerationRequest(ids, 0UL)], options)[0];
            lm.Model.UseDecodeKernel = false;
            var libtorch = gen.Generate([new GenerationRequest(ids, 0UL)], options)[0];
            lm.Model.UseDecodeKernel = true;
            Assert.Equal(libtorch.TokenIds, kernel.TokenIds);
            Assert.True(kernel.TokenIds.Distinct().Count() > 3, "degenerate output: the test would not notice a wrong step");
        }
    }

    /// <summary>
    /// Stated tolerance of reduced-precision inference, relative to the largest |logit| (at least 1): bfloat16 keeps 8
    /// bits of mantissa (relative rounding 2^-9 per weight), float16 11 bits (2^-12). Logits of bfloat16 are within
    /// 0.02 x scale of float32, float16 within 0.005 x scale (measured: 1.1-1.5 % and 0.17-0.26 %), for prefill
    /// (libtorch); greedy decoding (the kernel for bfloat16, libtorch for float16) picks float32's token wherever
    /// float32's top-2 margin exceeds twice that (each of the two logits may move by the tolerance).
    /// </summary>
    public static TheoryData<string, string> DtypeCases() => new()
    {
        { "bfloat16", "llama-gqa" }, { "bfloat16", "qwen2-bias-tied" }, { "bfloat16", "llama3-rope-scaling" },
        { "float16", "llama-gqa" }, { "float16", "qwen2-bias-tied" },
    };

    private static double Tolerance(ScalarType t) => t == ScalarType.BFloat16 ? 0.02 : 0.005;

    [Theory]
    [MemberData(nameof(DtypeCases))]
    public void Reduced_precision_logits_stay_within_tolerance_and_greedy_text_matches_while_the_float32_margin_exceeds_it(string dtypeName, string config)
    {
        var dtype = ModelDtype.Parse(dtypeName);
        // initStd 0.1: peaked enough for clear greedy margins; the tests' usual 0.25 makes a random network chaotic
        // enough that rounding any weight moves the logits by several percent.
        using var source = Model(config, seed: 9, initStd: 0.1);
        var dir = TestModels.TempDir("dtype-" + dtypeName);
        source.Save(dir);
        using var fp32 = LanguageModel.Load(dir);
        using var low = LanguageModel.Load(dir, dtype);
        Assert.All(low.Model.parameters(), p => Assert.Equal(dtype, p.dtype));
        Assert.Equal(fp32.WeightBytes / 2, low.WeightBytes);
        double tol = Tolerance(dtype);

        using (no_grad())
        {
            // Prefill: every position of two 24-token rows.
            var r = new Random(3);
            using var ids = tensor(Enumerable.Range(0, 48).Select(_ => (long)r.Next(4, 320)).ToArray(), [2, 24]);
            using var a = fp32.Model.Forward(ids);
            using var b = low.Model.Forward(ids).to(ScalarType.Float32);
            double scale = Math.Max(1, a.abs().max().item<float>());
            double diff = (a - b).abs().max().item<float>();
            output.WriteLine($"{dtypeName} {config}: prefill max |diff| = {diff:G3}, scale {scale:G3}");
            Assert.True(diff <= tol * scale, $"prefill logits differ by {diff:G3} > {tol} x {scale:G3}");
        }

        // Greedy decode: while the texts agree, a step whose float32 top-2 margin exceeds twice the tolerance must pick
        // float32's token; texts may part only at a near tie, after which the contexts differ and the walk stops.
        var options = SamplingOptions.Greedy(40) with { StopAtEos = false };
        int compared = 0;
        foreach (var prompt in new[] { "hello there", "the quick brown fox", "Good day to you, sir!" })
        {
            var promptIds = fp32.Tokenizer.Encode(prompt, addBos: true);
            var expected = new TextGenerator(fp32.Model, fp32.Tokenizer).Generate([new GenerationRequest(promptIds, 0UL)], options)[0].TokenIds;
            var got = new TextGenerator(low.Model, low.Tokenizer).Generate([new GenerationRequest(promptIds, 0UL)], options)[0].TokenIds;
            // float32's margins along its own greedy path, from one full forward over prompt + generated tokens.
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            var path = promptIds.Select(x => (long)x).Concat(expected.Select(x => (long)x)).ToArray();
            var logits = fp32.Model.Forward(tensor(path).unsqueeze(0))[0]; // (T, V)
            double scale = Math.Max(1, logits.abs().max().item<float>());
            for (int step = 0; step < expected.Length && step < got.Length; step++)
            {
                var top = logits[promptIds.Count - 1 + step].topk(2).values.data<float>().ToArray();
                bool clear = top[0] - top[1] > 2 * tol * scale;
                if (got[step] == expected[step]) { if (clear) compared++; continue; }
                Assert.False(clear, $"{dtypeName} {config} '{prompt}': token {step} differs although float32's margin {top[0] - top[1]:G3} exceeds {2 * tol * scale:G3}");
                break; // a near tie went the other way: the contexts differ from here on
            }
        }
        output.WriteLine($"{dtypeName} {config}: {compared} greedy tokens compared above the margin");
        Assert.True(compared >= 8, $"only {compared} tokens had a margin above the tolerance: the test would not notice a wrong model");
    }

    [Fact]
    public void A_checkpoint_trained_in_float32_is_saved_in_the_dtype_it_came_from()
    {
        using var source = Model("llama-gqa", seed: 4);
        var dir = TestModels.TempDir("keepdtype-src");
        source.Save(dir, ScalarType.BFloat16);
        // The trainer loads in float32 (master weights) ...
        using var loaded = LanguageModel.Load(dir);
        Assert.All(loaded.Model.parameters(), p => Assert.Equal(ScalarType.Float32, p.dtype));
        // ... and what it saves keeps the source checkpoint's torch_dtype.
        var saved = TestModels.TempDir("keepdtype-out");
        loaded.Save(saved);
        Assert.Equal("bfloat16", LlamaConfig.Load(Path.Combine(saved, Checkpoint.ConfigFile)).TorchDtype);
        Assert.All(SafeTensorsHeader.Open(Path.Combine(saved, Checkpoint.WeightsFile)).Entries.Values, e => Assert.Equal("BF16", e.Dtype));
        // A float32 source stays float32.
        var plain = TestModels.TempDir("keepdtype-fp32");
        source.Save(plain);
        using var again = LanguageModel.Load(plain);
        var out32 = TestModels.TempDir("keepdtype-fp32-out");
        again.Save(out32);
        Assert.All(SafeTensorsHeader.Open(Path.Combine(out32, Checkpoint.WeightsFile)).Entries.Values, e => Assert.Equal("F32", e.Dtype));
    }
}
