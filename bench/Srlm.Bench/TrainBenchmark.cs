using System.Reflection;

namespace Srlm.Bench;

/// <summary>
/// DPO training speed and memory on a fixed random-weight model (hidden 512, 8 layers, 8 heads, vocab 8192,
/// sequences of 256 tokens, 8 pairs per step = 16 sequences in one policy forward):
/// train_mfu = model FLOPs per second of a DPO step / the fp32 matmul peak measured in the same run;
/// dpo_memory_saved_vs_reference_weights = (peak RSS with a live reference - peak RSS with precomputed
/// reference log-probs) / reference weight bytes, each mode in its own child process (VmHWM).
/// </summary>
public sealed class TrainBenchmark : IBenchmark
{
    public string Name => "train";
    public string Summary => "DPO step MFU vs measured matmul peak, tokens/s, memory saved by precomputed reference log-probs";
    public IReadOnlyList<string> Options => ["--quick", "--steps", "--child"];

    public const int Hidden = 512, Layers = 8, Heads = 8, Vocab = 8192, Intermediate = 1376, Seq = 256, Pairs = 8;

    public static LlamaConfig Config => LlamaConfig.Tiny(Vocab, hidden: Hidden, layers: Layers, heads: Heads, kvHeads: Heads, intermediate: Intermediate)
        with { MaxPositionEmbeddings = 1024 };

    public async Task<JsonObject> RunAsync(BenchmarkContext context, CancellationToken cancel)
    {
        TorchRuntime.Initialise();
        if (context.Get("--child") is { } mode) return RunChild(mode, context.Int("--steps", 2));
        bool quick = context.Get("--quick") is not null;
        int steps = context.Int("--steps", quick ? 2 : 4);
        var log = context.Log;

        var result = new JsonObject
        {
            ["config"] = new JsonObject
            {
                ["hidden"] = Hidden, ["layers"] = Layers, ["heads"] = Heads, ["vocab"] = Vocab, ["intermediate"] = Intermediate,
                ["seq"] = Seq, ["pairs_per_step"] = Pairs, ["sequences_per_forward"] = 2 * Pairs, ["dtype"] = "float32",
                ["threads"] = torch.get_num_threads(), ["timed_steps"] = steps,
            },
        };

        log.WriteLine("measuring the fp32 matmul peak...");
        double peakBefore = GenerateBenchmark.MatmulPeakGflops(quick ? 1024 : 2048);

        using var policy = LlamaForCausalLM.Create(Config, seed: 1);
        long matmulParams = policy.named_parameters().Where(p => p.parameter.dim() == 2 && p.name != "model.embed_tokens.weight").Sum(p => p.parameter.numel());
        long allParams = policy.parameters().Sum(p => p.numel());
        long tokens = 2L * Pairs * Seq;
        // 6 N D for the weight matmuls (forward 2ND, backward 4ND) plus causal attention: QK^T and AV are
        // 2 * 2 * T^2 * d per layer and sequence without the mask, half of it with the causal mask, times 3 for fwd + bwd.
        double attention = 3.0 * 2 * 2 * Seq * (double)Seq * Hidden * Layers / 2 * (2 * Pairs);
        double flopsPerStep = 6.0 * matmulParams * tokens + attention;

        var pairs = SyntheticPairs(Pairs * (steps + 1), seed: 3);
        var options = new DpoOptions { BatchSize = Pairs, MicroBatchSize = Pairs, MaxSteps = steps + 1, WarmupSteps = 0, SaveStateEverySteps = 0, LogEverySteps = 1 };
        var stepSeconds = new List<double>();
        var state = Directory.CreateTempSubdirectory("srlm-bench-train-");
        try
        {
            log.WriteLine($"DPO: {steps + 1} steps (the first is warm-up) of {Pairs} pairs x {Seq} tokens...");
            var progress = new StepTimes(stepSeconds, log);
            DpoTrainer.Train(policy, pairs, options, new TrainingStateStore(state.FullName), "bench", "bench", progress: progress, cancel: cancel);
        }
        finally { state.Delete(recursive: true); }
        double peakAfter = GenerateBenchmark.MatmulPeakGflops(quick ? 1024 : 2048);
        double peak = Math.Max(peakBefore, peakAfter) * 1e9;

        var timed = stepSeconds.Skip(1).ToList();
        double best = timed.Min(), median = timed.Order().ElementAt(timed.Count / 2);
        result["params"] = allParams;
        result["params_in_matmuls"] = matmulParams;
        result["tokens_per_step"] = tokens;
        result["model_flops_per_step"] = flopsPerStep;
        result["matmul_peak_gflops"] = Round(peak / 1e9);
        result["matmul_peak_gflops_before_after"] = new JsonArray(Round(peakBefore), Round(peakAfter));
        result["step_seconds"] = new JsonArray(timed.Select(s => (JsonNode)Round(s)).ToArray());
        result["train_mfu"] = Round(flopsPerStep / best / peak);
        result["train_mfu_median_step"] = Round(flopsPerStep / median / peak);
        result["train_tokens_per_s"] = Round(tokens / best);
        result["train_tokens_per_s_median_step"] = Round(tokens / median);
        result["mfu_definition"] = "(6 x params_in_matmuls x tokens + causal attention 6 x layers x seq^2 x hidden per sequence) per policy step (fwd+bwd+AdamW, precomputed reference) / best step time / best fp32 matmul GFLOPS of the same run (max of before and after)";

        log.WriteLine("memory: precomputed vs live reference, each in its own process...");
        var pre = await Child("precomputed", cancel);
        var live = await Child("live", cancel);
        long referenceBytes = allParams * 4;
        result["reference_weight_bytes"] = referenceBytes;
        result["peak_rss_precomputed_bytes"] = pre;
        result["peak_rss_live_reference_bytes"] = live;
        result["dpo_memory_saved_vs_reference_weights"] = Round((live - pre) / (double)referenceBytes);
        result["memory_children_env"] = "MALLOC_MMAP_THRESHOLD_=65536";
        return result;
    }

    /// <summary>One DPO mode in this process, reporting the peak resident set (VmHWM) after two steps.</summary>
    private static JsonObject RunChild(string mode, int steps)
    {
        var reference = mode switch { "precomputed" => ReferenceMode.Precomputed, "live" => ReferenceMode.Live, _ => throw new ArgumentException($"--child must be precomputed or live, got '{mode}'") };
        using var policy = LlamaForCausalLM.Create(Config, seed: 1);
        using var live = reference == ReferenceMode.Live ? LlamaForCausalLM.Create(Config, seed: 1) : null;
        var pairs = SyntheticPairs(Pairs * steps, seed: 3);
        var options = new DpoOptions { BatchSize = Pairs, MicroBatchSize = Pairs, MaxSteps = steps, WarmupSteps = 0, SaveStateEverySteps = 0, Reference = reference };
        var state = Directory.CreateTempSubdirectory("srlm-bench-train-child-");
        // Read the peak when the last step has finished and before the state is written: serialising the
        // optimizer moments makes managed copies whose collection time would add noise to the peak.
        long hwm = 0;
        var atLastStep = new Callback(p => { if (p.Kind == "train" && p.Step == p.TotalSteps) hwm = ReadStatusBytes("VmHWM"); });
        try { DpoTrainer.Train(policy, pairs, options, new TrainingStateStore(state.FullName), "bench", "bench", live, atLastStep); }
        finally { state.Delete(recursive: true); }
        return new JsonObject { ["mode"] = mode, ["vmhwm_bytes"] = hwm, ["vmhwm_after_state_save_bytes"] = ReadStatusBytes("VmHWM") };
    }

    private static async Task<long> Child(string mode, CancellationToken cancel)
    {
        var entry = Assembly.GetEntryAssembly()?.Location ?? throw new InvalidOperationException("no entry assembly to start a child from");
        var host = Environment.ProcessPath is { } p && Path.GetFileNameWithoutExtension(p) == "dotnet" ? p : "dotnet";
        var psi = new ProcessStartInfo(host) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { entry, "bench", "train", "--child", mode }) psi.ArgumentList.Add(a);
        // A fixed mmap threshold: every tensor buffer of 64 KiB or more is its own mapping, returned to the OS
        // when freed, so VmHWM is the peak of live memory rather than of glibc's heap slack (whose dynamic
        // threshold and arenas made the same child's peak vary by +-150 MB from run to run). Same for both modes.
        psi.Environment["MALLOC_MMAP_THRESHOLD_"] = "65536";
        using var proc = Process.Start(psi)!;
        var stdout = proc.StandardOutput.ReadToEndAsync(cancel);
        var stderr = proc.StandardError.ReadToEndAsync(cancel);
        await proc.WaitForExitAsync(cancel);
        var text = await stdout;
        if (proc.ExitCode != 0) throw new InvalidOperationException($"bench child '{mode}' exited {proc.ExitCode}: {(await stderr).Trim()}");
        var hwm = JsonNode.Parse(text)!["vmhwm_bytes"]!.GetValue<long>();
        return hwm > 0 ? hwm : throw new InvalidOperationException($"bench child '{mode}' reported no peak: {text}");
    }

    /// <summary>Fixed-length pairs: 128 prompt tokens, 128 tokens in each completion (the last is EOS).</summary>
    private static List<TokenizedPair> SyntheticPairs(int n, int seed)
    {
        var r = new Random(seed);
        int[] Tokens(int len) => Enumerable.Range(0, len).Select(_ => 3 + r.Next(Vocab - 3)).ToArray();
        return Enumerable.Range(0, n).Select(i => new TokenizedPair($"b{i}", Tokens(Seq / 2), [.. Tokens(Seq / 2 - 1), 2], [.. Tokens(Seq / 2 - 1), 2])).ToList();
    }

    private static long ReadStatusBytes(string field)
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith(field + ":", StringComparison.Ordinal))
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
        throw new InvalidOperationException($"/proc/self/status has no {field}");
    }

    private static double Round(double x) => Math.Round(x, 4);

    private sealed class Callback(Action<TrainingProgress> action) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => action(value);
    }

    private sealed class StepTimes(List<double> seconds, TextWriter log) : IProgress<TrainingProgress>
    {
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        public void Report(TrainingProgress p)
        {
            // tokens_per_s is measured by the loop over the optimizer step alone; convert it back to seconds.
            var s = (2.0 * Pairs * Seq) / p.Metrics["tokens_per_s"];
            seconds.Add(s);
            log.WriteLine($"  step {p.Step}/{p.TotalSteps}: {s:F2} s, loss {p.Metrics["loss"]:F4}");
        }
    }
}
