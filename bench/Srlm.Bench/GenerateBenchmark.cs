// Over 300 lines on purpose: one benchmark: its models, the machine's peak measurements, each mode and the JSON.
namespace Srlm.Bench;

/// <summary>Generation speed on fixed random-weight models, with the machine's matmul peak and memory bandwidth
/// measured in the same run so the ratios mean something.</summary>
public sealed class GenerateBenchmark : IBenchmark
{
    public string Name => "generate";
    public string Summary => "KV-cache decode vs recompute, batch 16 vs 1, prefill/decode tokens/s, 130M-model decode vs memory bandwidth";
    public IReadOnlyList<string> Options => ["--quick", "--new-tokens"];

    /// <summary>The fixed small config: hidden 512, 8 layers, 8 heads, vocab 8192.</summary>
    public static LlamaConfig SmallConfig => LlamaConfig.Tiny(8192, hidden: 512, layers: 8, heads: 8, kvHeads: 8, intermediate: 1376) with { MaxPositionEmbeddings = 4096 };

    /// <summary>~134M parameters: hidden 768, 12 layers, 12 heads, intermediate 2048, vocab 32000, untied.</summary>
    public static LlamaConfig Config130M => LlamaConfig.Tiny(32000, hidden: 768, layers: 12, heads: 12, kvHeads: 12, intermediate: 2048) with { MaxPositionEmbeddings = 4096 };

    public async Task<JsonObject> RunAsync(BenchmarkContext context, CancellationToken cancel)
    {
        using var executor = new ModelExecutor("bench-generate"); // scopes and no_grad belong to one thread
        return await executor.RunAsync(() => Run(context, cancel), cancel);
    }

    private static JsonObject Run(BenchmarkContext ctx, CancellationToken cancel)
    {
        bool quick = ctx.Get("--quick") is not null;
        int newTokens = ctx.Int("--new-tokens", quick ? 64 : 256);
        var log = ctx.Log;
        using var noGrad = no_grad();
        var result = new JsonObject
        {
            ["benchmark"] = "generate",
            ["threads"] = torch.get_num_threads(),
            ["processors"] = Environment.ProcessorCount,
            ["quick"] = quick,
        };

        log.WriteLine("measuring matmul peak and memory bandwidth...");
        double gflops = MatmulPeakGflops(quick ? 1024 : 2048);
        double bandwidth = CopyBandwidthGBs(quick ? 64 : 256);
        double readBandwidth = ReadBandwidthGBs(quick ? 64 : 256);
        result["matmul_peak_gflops"] = Round(gflops);
        result["memory_bandwidth_gb_s"] = Round(bandwidth);
        result["memory_read_bandwidth_gb_s"] = Round(readBandwidth);
        result["bandwidth_note"] = "memory_bandwidth_gb_s: best of 5 copies of a float32 tensor, bytes read + written / s; memory_read_bandwidth_gb_s: best of 5 sums of one (bytes read / s); both on every libtorch thread";

        // ---- small fixed model
        var cfg = SmallConfig;
        using (var model = LlamaForCausalLM.Create(cfg, 1234))
        {
            model.eval();
            var tok = new FixedVocabTokenizer(cfg.VocabSize);
            var gen = new TextGenerator(model, tok);
            result["config"] = new JsonObject
            {
                ["hidden_size"] = cfg.HiddenSize, ["num_hidden_layers"] = cfg.NumHiddenLayers, ["num_attention_heads"] = cfg.NumAttentionHeads,
                ["num_key_value_heads"] = cfg.NumKeyValueHeads, ["intermediate_size"] = cfg.IntermediateSize, ["vocab_size"] = cfg.VocabSize,
                ["parameters"] = model.ParameterCount(), ["dtype"] = "float32", ["weights"] = "random (seed 1234)",
            };
            var prompt = Enumerable.Range(0, 16).Select(i => 10 + i * 7).ToArray();
            var greedy = SamplingOptions.Greedy(newTokens) with { StopAtEos = false };

            gen.Generate([new GenerationRequest(prompt, 0UL)], greedy with { MaxNewTokens = 8 }, cancel); // warm-up
            // This machine may be shared: compared runs are interleaved and each side keeps its best time.
            log.WriteLine($"KV-cache decode of {newTokens} tokens, then full recompute, then KV again...");
            GeneratedSequence? kv = null;
            double kvSeconds = BestOf(1, () => kv = gen.Generate([new GenerationRequest(prompt, 0UL)], greedy, cancel)[0]);
            List<int>? recomputed = null;
            double recomputeSeconds = BestOf(1, () => recomputed = Recompute(model, prompt, newTokens, cancel));
            kvSeconds = Math.Min(kvSeconds, BestOf(2, () => gen.Generate([new GenerationRequest(prompt, 0UL)], greedy, cancel)));
            result["new_tokens"] = newTokens;
            result["kv_decode_seconds"] = Round(kvSeconds);
            result["recompute_decode_seconds"] = Round(recomputeSeconds);
            result["decode_speedup_kv_vs_recompute"] = Round(recomputeSeconds / kvSeconds);
            result["kv_equals_recompute"] = kv!.TokenIds.SequenceEqual(recomputed!);

            // Batch 16 vs batch 1, sampled (the pipeline's mode), same number of new tokens per sequence.
            int batchTokens = quick ? 32 : 128;
            var sample = new SamplingOptions { MaxNewTokens = batchTokens, Temperature = 0.7, TopP = 0.9, StopAtEos = false };
            log.WriteLine($"batch 1 vs batch 16 decode of {batchTokens} tokens...");
            var batch = Enumerable.Range(0, 16).Select(i => new GenerationRequest(prompt.Skip(i % 4).ToArray(), (ulong)i)).ToList();
            gen.Generate([new GenerationRequest(prompt, 1UL)], sample with { MaxNewTokens = 4 }, cancel);
            gen.Generate(batch, sample with { MaxNewTokens = 4 }, cancel);
            double t1 = double.MaxValue, t16 = double.MaxValue;
            for (int round = 0; round < (quick ? 2 : 3); round++)
            {
                t1 = Math.Min(t1, BestOf(1, () => gen.Generate([new GenerationRequest(prompt, 1UL)], sample, cancel)));
                t16 = Math.Min(t16, BestOf(1, () => gen.Generate(batch, sample, cancel)));
            }
            double b1 = batchTokens / t1;
            double b16 = 16.0 * batchTokens / t16;
            result["batch1_tokens_per_s"] = Round(b1);
            result["batch16_tokens_per_s"] = Round(b16);
            result["batch16_vs_batch1_throughput"] = Round(b16 / b1);
            result["decode_tokens_per_s"] = Round(newTokens / kvSeconds);
            result["note"] = "compared runs are interleaved and each keeps its best time; on a shared machine absolute numbers vary with load";

            // The decode kernel against libtorch's matrix products at the batch sizes the kernel takes (up to 32 rows):
            // the same sampled decode with the kernel on and off, interleaved, best of the rounds.
            log.WriteLine("decode kernel vs libtorch by rows...");
            var byRows = new JsonObject();
            foreach (int rows in quick ? new[] { 4, 16, 32 } : new[] { 4, 8, 16, 32 })
            {
                var reqs = Enumerable.Range(0, rows).Select(i => new GenerationRequest(prompt.Skip(i % 4).ToArray(), (ulong)i)).ToList();
                double on = double.MaxValue, off = double.MaxValue;
                try
                {
                    for (int round = 0; round < 2; round++)
                    {
                        model.UseDecodeKernel = true;
                        on = Math.Min(on, BestOf(1, () => gen.Generate(reqs, sample, cancel)));
                        model.UseDecodeKernel = false;
                        off = Math.Min(off, BestOf(1, () => gen.Generate(reqs, sample, cancel)));
                    }
                }
                finally { model.UseDecodeKernel = true; }
                byRows[rows.ToString(System.Globalization.CultureInfo.InvariantCulture)] = new JsonObject
                {
                    ["kernel_tokens_per_s"] = Round(rows * batchTokens / on),
                    ["libtorch_tokens_per_s"] = Round(rows * batchTokens / off),
                    ["kernel_vs_libtorch"] = Round(off / on),
                };
            }
            result["decode_kernel_vs_libtorch_by_rows"] = byRows;

            // Prefill: 8 prompts of 256 tokens, one forward.
            log.WriteLine("prefill...");
            using (var ids = randint(0, cfg.VocabSize, [8, 256], dtype: ScalarType.Int64))
            {
                using (var w = model.Forward(ids, lastOnly: true)) { }
                double best = BestOf(quick ? 1 : 3, () => { using var l = model.Forward(ids, lastOnly: true); });
                result["prefill_tokens_per_s"] = Round(8 * 256 / best);
            }
        }

        // ---- ~130M model, batch-1 decode against the memory-bandwidth bound, in float32 and in bfloat16
        var big = Config130M;
        log.WriteLine("130M-parameter model, batch-1 decode (float32, bfloat16, float32 through libtorch alone)...");
        using (var model = LlamaForCausalLM.Create(big, 99))
        using (var bf16 = LlamaForCausalLM.Create(big, 99))
        {
            model.eval();
            bf16.to(ScalarType.BFloat16);
            bf16.eval();
            int tokens = quick ? 16 : 64;
            var prompt = Enumerable.Range(0, 16).Select(i => 100 + i).ToArray();
            var greedy = SamplingOptions.Greedy(tokens) with { StopAtEos = false };
            // Decode time = (prompt + N tokens) - (prompt + 1 token): the prefill cancels out. The three variants are
            // interleaved round by round and each keeps its median.
            double PerToken(LlamaForCausalLM m)
            {
                var gen = new TextGenerator(m, new FixedVocabTokenizer(big.VocabSize));
                double total = BestOf(1, () => gen.Generate([new GenerationRequest(prompt, 0UL)], greedy, cancel));
                double prefill = BestOf(2, () => gen.Generate([new GenerationRequest(prompt, 0UL)], greedy with { MaxNewTokens = 1 }, cancel));
                return (total - prefill) / (tokens - 1);
            }
            var fp32Times = new List<double>();
            var bf16Times = new List<double>();
            var libtorchTimes = new List<double>();
            foreach (var m in new[] { model, bf16 })
                new TextGenerator(m, new FixedVocabTokenizer(big.VocabSize)).Generate([new GenerationRequest(prompt, 0UL)], greedy with { MaxNewTokens = 4 }, cancel);
            for (int round = 0; round < (quick ? 1 : 3); round++)
            {
                fp32Times.Add(PerToken(model));
                bf16Times.Add(PerToken(bf16));
                model.UseDecodeKernel = false;
                try { libtorchTimes.Add(PerToken(model)); }
                finally { model.UseDecodeKernel = true; }
            }
            double fp32PerToken = Median(fp32Times), bf16PerToken = Median(bf16Times), libtorchPerToken = Median(libtorchTimes);
            long parameters = model.ParameterCount();
            // Bytes a decode step must read: every weight except the embedding table, of which one row is gathered.
            long streamed = (parameters - (long)big.VocabSize * big.HiddenSize) * 4;
            double tokensPerS = 1.0 / fp32PerToken;
            double achieved = tokensPerS * streamed / 1e9;
            result["model_130m"] = new JsonObject
            {
                ["parameters"] = parameters,
                ["config"] = "hidden 768, 12 layers, 12 heads, intermediate 2048, vocab 32000, untied, fp32",
                ["batch1_decode_tokens_per_s"] = Round(tokensPerS),
                ["weight_bytes_per_token"] = streamed,
                ["achieved_gb_s"] = Round(achieved),
                ["fraction_of_memory_bandwidth"] = Round(achieved / bandwidth),
                ["fraction_of_read_bandwidth"] = Round(achieved / readBandwidth),
                ["bf16_batch1_decode_tokens_per_s"] = Round(1.0 / bf16PerToken),
                ["bf16_weight_bytes_per_token"] = streamed / 2,
                ["bf16_achieved_gb_s"] = Round(streamed / 2 / bf16PerToken / 1e9),
                ["bf16_vs_fp32_batch1"] = Round(fp32PerToken / bf16PerToken),
                ["libtorch_only_batch1_decode_tokens_per_s"] = Round(1.0 / libtorchPerToken),
                ["decode_kernel_vs_libtorch_batch1"] = Round(libtorchPerToken / fp32PerToken),
                ["rounds"] = fp32Times.Count,
                ["note"] = "batch-1 greedy decode per token, (prompt + N) - (prompt + 1) tokens; float32, bfloat16 and float32 with the decode kernel off (libtorch alone) interleaved, median of the rounds",
            };
        }
        return result;
    }

    /// <summary>Fastest of n runs, in seconds.</summary>
    private static double BestOf(int n, Action run)
    {
        double best = double.MaxValue;
        for (int i = 0; i < n; i++)
        {
            var sw = Stopwatch.StartNew();
            run();
            best = Math.Min(best, sw.Elapsed.TotalSeconds);
        }
        return best;
    }

    private static List<int> Recompute(LlamaForCausalLM model, int[] prompt, int newTokens, CancellationToken cancel)
    {
        var ids = prompt.Select(x => (long)x).ToList();
        var result = new List<int>();
        for (int i = 0; i < newTokens; i++)
        {
            cancel.ThrowIfCancellationRequested();
            using var scope = NewDisposeScope();
            var logits = model.Forward(tensor(ids.ToArray()).unsqueeze(0), lastOnly: true); // (1, 1, V)
            int next = (int)logits.argmax().item<long>();
            result.Add(next);
            ids.Add(next);
        }
        return result;
    }

    /// <summary>Best of a few n x n float32 matmuls: 2 n^3 flops each.</summary>
    public static double MatmulPeakGflops(int n)
    {
        using var scope = NewDisposeScope();
        var a = randn(n, n); var b = randn(n, n);
        torch.mm(a, b).Dispose();
        double best = double.MaxValue;
        for (int i = 0; i < 5; i++)
        {
            var sw = Stopwatch.StartNew();
            using var r = torch.mm(a, b);
            best = Math.Min(best, sw.Elapsed.TotalSeconds);
        }
        return 2.0 * n * n * n / best / 1e9;
    }

    /// <summary>Best of a few copies of a large float32 tensor; counts bytes read plus bytes written.</summary>
    public static double CopyBandwidthGBs(int megabytes)
    {
        using var scope = NewDisposeScope();
        long count = megabytes * 1024L * 1024 / 4;
        var src = randn(count); var dst = empty(count);
        dst.copy_(src);
        double best = double.MaxValue;
        for (int i = 0; i < 5; i++)
        {
            var sw = Stopwatch.StartNew();
            dst.copy_(src);
            best = Math.Min(best, sw.Elapsed.TotalSeconds);
        }
        return 2.0 * count * 4 / best / 1e9;
    }

    /// <summary>Best of a few sums of a large float32 tensor: bytes read per second (a decode step only reads weights).</summary>
    public static double ReadBandwidthGBs(int megabytes)
    {
        using var scope = NewDisposeScope();
        long count = megabytes * 1024L * 1024 / 4;
        var src = randn(count);
        src.sum().Dispose();
        double best = double.MaxValue;
        for (int i = 0; i < 5; i++)
        {
            var sw = Stopwatch.StartNew();
            using var r = src.sum();
            best = Math.Min(best, sw.Elapsed.TotalSeconds);
        }
        return count * 4 / best / 1e9;
    }

    private static double Median(List<double> xs)
    {
        var s = xs.OrderBy(x => x).ToList();
        return s.Count % 2 == 1 ? s[s.Count / 2] : (s[s.Count / 2 - 1] + s[s.Count / 2]) / 2;
    }

    private static double Round(double x) => Math.Round(x, 3);

    /// <summary>A stand-in tokenizer over ids only (the benchmark never needs text).</summary>
    internal sealed class FixedVocabTokenizer(int vocab) : ITokenizer
    {
        public int VocabSize => vocab;
        public int? BosId => 1;
        public int? EosId => 2;
        public int PadId => 0;
        public bool AddBos => true;
        public IReadOnlyList<int> Encode(string text, bool addBos = false, bool addEos = false) => throw new NotSupportedException();
        public string Decode(IEnumerable<int> ids, bool skipSpecial = true) => "";
        public bool IsSpecial(int id) => id < 3;
        public string? IdToToken(int id) => null;
        public int? TokenToId(string token) => null;
        public void Save(string dir) => throw new NotSupportedException();
    }
}
