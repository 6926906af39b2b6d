using System.Diagnostics;
using System.Text.Json.Nodes;
using Srlm.Model;
using Srlm.Model.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

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

    public Task<JsonObject> RunAsync(BenchmarkContext context, CancellationToken cancel)
    {
        var executor = new ModelExecutor("bench-generate");
        return executor.RunAsync(() => Run(context, cancel), cancel).ContinueWith(t => { executor.Dispose(); return t.Result; }, TaskScheduler.Default);
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
        result["matmul_peak_gflops"] = Round(gflops);
        result["memory_bandwidth_gb_s"] = Round(bandwidth);

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
            log.WriteLine($"KV-cache decode of {newTokens} tokens...");
            var sw = Stopwatch.StartNew();
            var kv = gen.Generate([new GenerationRequest(prompt, 0UL)], greedy, cancel)[0];
            double kvSeconds = sw.Elapsed.TotalSeconds;

            log.WriteLine($"full-recompute decode of {newTokens} tokens...");
            sw.Restart();
            var recomputed = Recompute(model, prompt, newTokens, cancel);
            double recomputeSeconds = sw.Elapsed.TotalSeconds;
            result["new_tokens"] = newTokens;
            result["kv_decode_seconds"] = Round(kvSeconds);
            result["recompute_decode_seconds"] = Round(recomputeSeconds);
            result["decode_speedup_kv_vs_recompute"] = Round(recomputeSeconds / kvSeconds);
            result["kv_equals_recompute"] = kv.TokenIds.SequenceEqual(recomputed);

            // Batch 16 vs batch 1, sampled (the pipeline's mode), same number of new tokens per sequence.
            int batchTokens = quick ? 32 : 128;
            var sample = new SamplingOptions { MaxNewTokens = batchTokens, Temperature = 0.7, TopP = 0.9, StopAtEos = false };
            log.WriteLine($"batch 1 vs batch 16 decode of {batchTokens} tokens...");
            gen.Generate([new GenerationRequest(prompt, 1UL)], sample with { MaxNewTokens = 4 }, cancel);
            sw.Restart();
            gen.Generate([new GenerationRequest(prompt, 1UL)], sample, cancel);
            double b1 = batchTokens / sw.Elapsed.TotalSeconds;
            var batch = Enumerable.Range(0, 16).Select(i => new GenerationRequest(prompt.Skip(i % 4).ToArray(), (ulong)i)).ToList();
            gen.Generate(batch, sample with { MaxNewTokens = 4 }, cancel);
            sw.Restart();
            gen.Generate(batch, sample, cancel);
            double b16 = 16.0 * batchTokens / sw.Elapsed.TotalSeconds;
            result["batch1_tokens_per_s"] = Round(b1);
            result["batch16_tokens_per_s"] = Round(b16);
            result["batch16_vs_batch1_throughput"] = Round(b16 / b1);
            result["decode_tokens_per_s"] = Round(newTokens / kvSeconds);

            // Prefill: 8 prompts of 256 tokens, one forward.
            log.WriteLine("prefill...");
            using (var ids = randint(0, cfg.VocabSize, [8, 256], dtype: ScalarType.Int64))
            {
                using (var w = model.Forward(ids, lastOnly: true)) { }
                sw.Restart();
                int reps = quick ? 1 : 3;
                for (int i = 0; i < reps; i++) using (var l = model.Forward(ids, lastOnly: true)) { }
                result["prefill_tokens_per_s"] = Round(reps * 8 * 256 / sw.Elapsed.TotalSeconds);
            }
        }

        // ---- ~130M model, batch-1 decode against the memory-bandwidth bound
        var big = Config130M;
        log.WriteLine("130M-parameter model, batch-1 decode...");
        using (var model = LlamaForCausalLM.Create(big, 99))
        {
            model.eval();
            var gen = new TextGenerator(model, new FixedVocabTokenizer(big.VocabSize));
            int tokens = quick ? 16 : 64;
            var prompt = Enumerable.Range(0, 16).Select(i => 100 + i).ToArray();
            var greedy = SamplingOptions.Greedy(tokens) with { StopAtEos = false };
            gen.Generate([new GenerationRequest(prompt, 0UL)], greedy with { MaxNewTokens = 4 }, cancel);
            var sw = Stopwatch.StartNew();
            gen.Generate([new GenerationRequest(prompt, 0UL)], greedy, cancel);
            // The prefill is part of that time; subtract it, measured alone.
            double total = sw.Elapsed.TotalSeconds;
            sw.Restart();
            gen.Generate([new GenerationRequest(prompt, 0UL)], greedy with { MaxNewTokens = 1 }, cancel);
            double prefill = sw.Elapsed.TotalSeconds;
            double perToken = (total - prefill) / (tokens - 1);
            long parameters = model.ParameterCount();
            // Bytes a decode step must read: every weight except the embedding table, of which one row is gathered.
            long streamed = (parameters - (long)big.VocabSize * big.HiddenSize) * 4;
            double tokensPerS = 1.0 / perToken;
            double achieved = tokensPerS * streamed / 1e9;
            result["model_130m"] = new JsonObject
            {
                ["parameters"] = parameters,
                ["config"] = "hidden 768, 12 layers, 12 heads, intermediate 2048, vocab 32000, untied, fp32",
                ["batch1_decode_tokens_per_s"] = Round(tokensPerS),
                ["weight_bytes_per_token"] = streamed,
                ["achieved_gb_s"] = Round(achieved),
                ["fraction_of_memory_bandwidth"] = Round(achieved / bandwidth),
            };
        }
        return result;
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
        var a = randn(n, n); var b = randn(n, n); var c = empty(n, n);
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

    private static double Round(double x) => Math.Round(x, 3);

    /// <summary>A stand-in tokenizer over ids only (the benchmark never needs text).</summary>
    private sealed class FixedVocabTokenizer(int vocab) : ITokenizer
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
