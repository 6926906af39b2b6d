namespace Srlm.Tests.Model;

/// <summary>A token's keys, values and logits are the same bits however its prompt is laid out in the KV cache (whole,
/// prefix then rest, left padded beside a longer row, padding between blocks): what lets a shared prefix computed once
/// give the texts a whole-prompt prefill gives (<see cref="PrefixSharingTests"/>, <c>srlm bench judge</c>).</summary>
public class CacheAttentionTests(ITestOutputHelper output)
{
    private const int Prefix = 150, Rest = 90;

    private static LlamaForCausalLM Model(string name, long seed)
    {
        var config = name switch
        {
            "llama-gqa" => LlamaConfig.Tiny(500, hidden: 128, layers: 3, heads: 4, kvHeads: 2, intermediate: 256),
            "qwen2-bias-tied" => LlamaConfig.Tiny(500, hidden: 128, layers: 3, heads: 4, kvHeads: 2, intermediate: 256)
                with { ModelType = "qwen2", AttentionBias = true, TieWordEmbeddings = true, RopeTheta = 1_000_000 },
            _ => throw new ArgumentException(name),
        };
        var model = LlamaForCausalLM.Create(config with { MaxPositionEmbeddings = 1024 }, seed, initStd: 0.05);
        model.eval();
        return model;
    }

    private static long[] Tokens(int n, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (long)random.Next(3, 500)).ToArray();
    }

    private static long Differing(Tensor a, Tensor b) => a.ne(b).sum().item<long>();

    /// <summary>Keys and values of row <paramref name="row"/> at the given slots, every layer, as one tensor.</summary>
    private static Tensor Kv(KvCache cache, long row, IReadOnlyList<long> slots)
    {
        using var index = tensor(slots.ToArray(), device: CPU);
        var parts = new List<Tensor>();
        for (int l = 0; l < cache.Layers; l++)
        {
            var (k, v) = cache.Layer(l);
            parts.Add(k[row].index_select(1, index));
            parts.Add(v[row].index_select(1, index));
        }
        return stack(parts);
    }

    private static List<long> Range(long from, long count) => Enumerable.Range(0, (int)count).Select(i => from + i).ToList();

    [Theory]
    [InlineData("llama-gqa", ScalarType.Float32)]
    [InlineData("qwen2-bias-tied", ScalarType.Float32)]
    [InlineData("llama-gqa", ScalarType.BFloat16)]
    public void A_tokens_keys_values_and_logits_are_the_same_bits_however_its_prompt_is_laid_out(string name, ScalarType cacheType)
    {
        using var model = Model(name, seed: 11);
        using var _ = no_grad();
        var ids = Tokens(Prefix + Rest, seed: 3);
        int n = ids.Length;

        // Whole: one row, no padding, plain causal attention.
        using var whole = new KvCache(model.Config, 1, n, cacheType, CPU);
        using var wholeLast = model.Forward(tensor(ids, [1, n]), cache: whole, lastOnly: true);
        var wholeKv = Kv(whole, 0, Range(0, n));

        // Prefix, then the rest (and, separately, all but the last 5 tokens, then 5: a product of few rows).
        foreach (int split in new[] { Prefix, n - 5 })
        {
            using var parts = new KvCache(model.Config, 1, n, cacheType, CPU);
            model.Forward(tensor(ids[..split], [1, split]), cache: parts, lastOnly: true).Dispose();
            using var last = model.Forward(tensor(ids[split..], [1, n - split]), cache: parts, lastOnly: true);
            Assert.Equal(0, Differing(wholeKv, Kv(parts, 0, Range(0, n))));
            Assert.Equal(0, Differing(wholeLast, last));
        }

        // Left padded: row 1 is 37 tokens longer, so row 0 gets 37 slots of padding before its prompt.
        const int pad = 37;
        var longer = Tokens(n + pad, seed: 4);
        var batchIds = new long[2 * (n + pad)];
        var batchMask = new long[2 * (n + pad)];
        for (int j = 0; j < n + pad; j++)
        {
            batchIds[j] = j < pad ? 0 : ids[j - pad];
            batchMask[j] = j < pad ? 0 : 1;
            batchIds[n + pad + j] = longer[j];
            batchMask[n + pad + j] = 1;
        }
        using var padded = new KvCache(model.Config, 2, n + pad, cacheType, CPU);
        using var paddedLast = model.Forward(tensor(batchIds, [2, n + pad]), tensor(batchMask, [2, n + pad]), cache: padded, lastOnly: true);
        Assert.Equal(0, Differing(wholeKv, Kv(padded, 0, Range(pad, n))));
        Assert.Equal(0, Differing(wholeLast[0], paddedLast[0]));

        // Blocks with padding between them, as the shared prefill lays a row out: [prefix | 5 masked slots | rest].
        const int gap = 5;
        using var blocks = new KvCache(model.Config, 1, n + gap, cacheType, CPU);
        model.Forward(tensor(ids[..Prefix], [1, Prefix]), cache: blocks, lastOnly: true).Dispose();
        var restIds = Enumerable.Repeat(0L, gap).Concat(ids[Prefix..]).ToArray();
        var mask = Enumerable.Repeat(1L, Prefix).Concat(Enumerable.Repeat(0L, gap)).Concat(Enumerable.Repeat(1L, Rest)).ToArray();
        using var blocksLast = model.Forward(tensor(restIds, [1, gap + Rest]), tensor(mask, [1, n + gap]), cache: blocks, lastOnly: true);
        Assert.Equal(0, Differing(wholeKv, Kv(blocks, 0, Range(0, Prefix).Concat(Range(Prefix + gap, Rest)).ToList())));
        Assert.Equal(0, Differing(wholeLast, blocksLast));

        // The next decode step (the C# decode kernel, then libtorch's path) sees the same logits over every layout.
        foreach (bool kernel in new[] { true, false })
        {
            model.UseDecodeKernel = kernel;
            try
            {
                using var a = whole.Select(tensor(new long[] { 0 }, device: CPU), capacity: n + 1);
                using var b = blocks.Select(tensor(new long[] { 0 }, device: CPU), capacity: n + gap + 1);
                using var next = tensor(new long[] { 7 }, [1, 1]);
                using var stepWhole = model.Forward(next, cache: a, lastOnly: true);
                using var stepBlocks = model.Forward(next, tensor(mask.Append(1L).ToArray(), [1, n + gap + 1]), cache: b, lastOnly: true);
                Assert.Equal(0, Differing(stepWhole, stepBlocks));
            }
            finally { model.UseDecodeKernel = true; }
        }
    }

    [Theory]
    [InlineData("llama-gqa")]
    [InlineData("qwen2-bias-tied")]
    public void The_kernel_attends_as_libtorch_does(string name)
    {
        using var model = Model(name, seed: 12);
        using var _ = no_grad();
        var ids = Tokens(Prefix + Rest, seed: 5);
        int n = ids.Length;
        Tensor Run(bool kernel)
        {
            model.UseAttentionKernel = kernel;
            try
            {
                using var cache = new KvCache(model.Config, 1, n, ScalarType.Float32, CPU);
                model.Forward(tensor(ids[..Prefix], [1, Prefix]), cache: cache).Dispose();
                return model.Forward(tensor(ids[Prefix..], [1, Rest]), cache: cache); // (1, Rest, V)
            }
            finally { model.UseAttentionKernel = true; }
        }
        using var ours = Run(kernel: true);
        using var libtorch = Run(kernel: false);
        double worst = (ours - libtorch).abs().max().item<float>();
        double scale = libtorch.abs().max().item<float>();
        output.WriteLine($"{name}: largest logit difference {worst:E2} (largest logit {scale:F3}); differing values {Differing(ours, libtorch)} of {ours.numel()}");
        Assert.True(worst <= 1e-5 * Math.Max(1, scale), $"the kernel's logits differ from libtorch's by {worst:E2}");
    }

    [Fact]
    public void A_small_product_gives_the_bits_of_the_same_rows_in_a_large_one()
    {
        using var _ = no_grad();
        using var layer = TorchSharp.torch.nn.Linear(192, 320, hasBias: true, device: CPU);
        using var x = randn(64, 192, generator: new TorchSharp.torch.Generator(3));
        using var all = layer.forward(x);
        for (int rows = 1; rows <= 40; rows++)
        {
            using var some = TensorMath.Linear(layer, x.narrow(0, 0, rows).view(1, rows, 192));
            Assert.Equal(new long[] { 1, rows, 320 }, some.shape);
            Assert.True(Differing(all.narrow(0, 0, rows), some.view(rows, 320)) == 0, $"{rows} rows: other bits than in a 64-row product");
        }
    }
}
