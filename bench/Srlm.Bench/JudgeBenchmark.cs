namespace Srlm.Bench;

/// <summary>Issue 17: judging with shared prompt prefixes computed once. A fixed judge workload (a rubric every
/// judgement starts with, instructions shared by the N answers of one prompt, K samples per judgement) runs through
/// the judge's own path, a <see cref="ServedModel"/> taking calls of judge.max_batch judgements, twice on models of the
/// same weights: the baseline with prefix sharing off (the K samples of one judgement share one prefill, nothing
/// else), and the default with it on (shared prefixes in a batch run once, the rubric's keys and values kept between
/// calls). Sides alternate and each keeps its best time; the texts of every (judgement, sample) are compared.</summary>
public sealed class JudgeBenchmark : IBenchmark
{
    public string Name => "judge";
    public string Summary => "judge prefix reuse: judgements/s and prefill tokens with shared rubric/instruction prefixes vs without, texts compared";
    public IReadOnlyList<string> Options => ["--quick", "--rounds"];

    /// <summary>For each text of <paramref name="a"/> that differs from the same text of <paramref name="b"/>, the
    /// index of its first differing token.</summary>
    private static List<int> Differences(List<int[]> a, List<int[]> b)
    {
        var at = new List<int>();
        for (int i = 0; i < Math.Min(a.Count, b.Count); i++)
        {
            int n = Math.Min(a[i].Length, b[i].Length), j = 0;
            while (j < n && a[i][j] == b[i][j]) j++;
            if (j < n || a[i].Length != b[i].Length) at.Add(j);
        }
        return at;
    }

    private static JsonNode? Positions(List<int> at)
    {
        if (at.Count == 0) return null;
        var sorted = at.Order().ToList();
        return new JsonObject { ["min"] = sorted[0], ["median"] = sorted[sorted.Count / 2], ["max"] = sorted[^1] };
    }

    private sealed record Workload(int RubricTokens, int InstructionTokens, int ResponseTokens, int TailTokens, int JudgeTokens, int N, int K, int Prompts, int MaxBatch);

    public async Task<JsonObject> RunAsync(BenchmarkContext ctx, CancellationToken cancel)
    {
        bool quick = ctx.Get("--quick") is not null;
        int rounds = ctx.Int("--rounds", quick ? 1 : 2);
        var w = quick
            ? new Workload(RubricTokens: 250, InstructionTokens: 60, ResponseTokens: 100, TailTokens: 8, JudgeTokens: 16, N: 4, K: 3, Prompts: 4, MaxBatch: 8)
            : new Workload(RubricTokens: 250, InstructionTokens: 60, ResponseTokens: 100, TailTokens: 8, JudgeTokens: 128, N: 4, K: 3, Prompts: 16, MaxBatch: 8);
        var cfg = quick ? GenerateBenchmark.SmallConfig : GenerateBenchmark.Config130M;
        var log = ctx.Log;

        // Token ids of a fixed random workload (ids 3.. are ordinary tokens of the stand-in tokenizer).
        var rng = new Random(17);
        int[] Tokens(int n) => Enumerable.Range(0, n).Select(_ => rng.Next(3, cfg.VocabSize)).ToArray();
        var rubric = Tokens(w.RubricTokens);
        var tail = Tokens(w.TailTokens); // the rubric's closing lines after the answer ("Score:" ...)
        var prompts = new List<int[]>();
        for (int p = 0; p < w.Prompts; p++)
        {
            var instruction = Tokens(w.InstructionTokens);
            for (int n = 0; n < w.N; n++)
                prompts.Add([1, .. rubric, .. instruction, .. Tokens(w.ResponseTokens), .. tail]);
        }
        var requests = prompts.Select((ids, j) => new GenerationRequest(ids, Enumerable.Range(0, w.K).Select(k => (ulong)(1000 * j + k)).ToList())).ToList();
        var options = new SamplingOptions { Temperature = 0.7, TopP = 0.9, MaxNewTokens = w.JudgeTokens, StopAtEos = false };

        ServedModel Load(long prefixBytes)
        {
            var model = LlamaForCausalLM.Create(cfg, 1234);
            model.eval();
            return ServedModel.Wrap("bench-judge", new LanguageModel(model, new GenerateBenchmark.FixedVocabTokenizer(cfg.VocabSize), PromptTemplate.Plain, new GenerationSettings()), prefixBytes);
        }
        using var baseline = Load(0);
        using var reuse = Load(ServedModel.DefaultPrefixCacheBytes);

        // One side: the judgements in calls of MaxBatch, as a judge replica batches its messages. A fresh side each
        // round would forget the rubric; the judge service keeps its model loaded, so the kept prefixes stay (the
        // first call of the first round computes the rubric, later ones reuse it).
        async Task<(double Seconds, long Prefill, List<int[]> Texts)> Side(ServedModel m, int calls = int.MaxValue, int? maxBatch = null)
        {
            int size = maxBatch ?? w.MaxBatch;
            long before = m.PrefillTokens;
            var texts = new List<int[]>();
            var clock = Stopwatch.StartNew();
            for (int i = 0; i < requests.Count && i / size < calls; i += size)
            {
                var batch = requests.Skip(i).Take(size).ToList();
                var got = await m.GenerateAsync(batch, options, cancel);
                texts.AddRange(got.OrderBy(g => g.RequestIndex).ThenBy(g => g.SampleIndex).Select(g => g.TokenIds));
            }
            return (clock.Elapsed.TotalSeconds, m.PrefillTokens - before, texts);
        }

        log.WriteLine($"judge workload: {requests.Count} judgements x {w.K} samples of {w.JudgeTokens} tokens, prompts of {prompts[0].Length} tokens, model {cfg.HiddenSize}x{cfg.NumHiddenLayers} (vocab {cfg.VocabSize}), {torch.get_num_threads()} threads");
        await Side(baseline, calls: 1); // warm-up of both (first-call allocations; the rubric kept), not timed
        await Side(reuse, calls: 1);
        var baseRuns = new List<(double Seconds, long Prefill, List<int[]> Texts)>();
        var reuseRuns = new List<(double Seconds, long Prefill, List<int[]> Texts)>();
        for (int r = 0; r < rounds; r++)
        {
            log.WriteLine($"round {r + 1}/{rounds}: baseline...");
            baseRuns.Add(await Side(baseline));
            log.WriteLine($"round {r + 1}/{rounds}: prefix reuse...");
            reuseRuns.Add(await Side(reuse));
            log.WriteLine($"  baseline {baseRuns[^1].Seconds:F2} s, reuse {reuseRuns[^1].Seconds:F2} s");
        }
        // Whether a text depends on what it is batched with at all: the baseline again, one judgement per call.
        log.WriteLine("baseline, one judgement per call (does batching alone change a text?)...");
        var alone = await Side(baseline, maxBatch: 1);
        var reuseParts = Differences(reuseRuns[0].Texts, baseRuns[0].Texts);
        var aloneParts = Differences(alone.Texts, baseRuns[0].Texts);
        log.WriteLine($"  texts differing from the baseline: with reuse {reuseParts.Count} of {baseRuns[0].Texts.Count}; one judgement per call {aloneParts.Count}");
        double baseSeconds = baseRuns.Min(x => x.Seconds), reuseSeconds = reuseRuns.Min(x => x.Seconds);
        long basePrefill = baseRuns[0].Prefill, reusePrefill = reuseRuns[0].Prefill;
        bool identical = baseRuns.Concat(reuseRuns).All(run => run.Texts.Count == baseRuns[0].Texts.Count
            && run.Texts.Zip(baseRuns[0].Texts).All(p => p.First.AsSpan().SequenceEqual(p.Second)));
        int judgements = requests.Count;
        return new JsonObject
        {
            ["benchmark"] = "judge",
            ["threads"] = torch.get_num_threads(),
            ["processors"] = Environment.ProcessorCount,
            ["quick"] = quick,
            ["workload"] = new JsonObject
            {
                ["model"] = new JsonObject
                {
                    ["hidden_size"] = cfg.HiddenSize, ["num_hidden_layers"] = cfg.NumHiddenLayers, ["vocab_size"] = cfg.VocabSize,
                    ["parameters"] = (long)cfg.VocabSize * cfg.HiddenSize * 2 + (long)cfg.NumHiddenLayers * (4L * cfg.HiddenSize * cfg.HiddenSize + 3L * cfg.HiddenSize * cfg.IntermediateSize),
                    ["dtype"] = "float32", ["weights"] = "random (seed 1234)",
                },
                ["rubric_tokens"] = w.RubricTokens, ["instruction_tokens"] = w.InstructionTokens, ["response_tokens"] = w.ResponseTokens,
                ["tail_tokens"] = w.TailTokens, ["judge_tokens"] = w.JudgeTokens, ["n"] = w.N, ["k"] = w.K, ["prompts"] = w.Prompts,
                ["judgements"] = judgements, ["max_batch"] = w.MaxBatch, ["rounds"] = rounds,
                ["sampling"] = "T 0.7, top-p 0.9, every sample runs judge_tokens (EOS ignored)",
            },
            ["baseline_judgements_per_s"] = Math.Round(judgements / baseSeconds, 3),
            ["reuse_judgements_per_s"] = Math.Round(judgements / reuseSeconds, 3),
            ["baseline_seconds"] = Math.Round(baseSeconds, 3),
            ["reuse_seconds"] = Math.Round(reuseSeconds, 3),
            ["baseline_prefill_tokens"] = basePrefill,
            ["reuse_prefill_tokens"] = reusePrefill,
            ["judge_prefix_reuse_speedup"] = Math.Round(baseSeconds / reuseSeconds, 3),
            ["prefill_tokens_computed_fraction"] = Math.Round((double)reusePrefill / basePrefill, 4),
            ["texts_identical"] = identical,
            ["texts_compared"] = baseRuns[0].Texts.Count,
            ["texts_differing_with_reuse"] = reuseParts.Count,
            ["first_differing_token_with_reuse"] = Positions(reuseParts),
            ["texts_differing_one_judgement_per_call"] = aloneParts.Count,
            ["first_differing_token_one_judgement_per_call"] = Positions(aloneParts),
            ["note_differences"] = "a text is one (judgement, sample) token sequence; a differing one is counted against the first baseline round, with the index of its first differing token (min, median, max). one_judgement_per_call: the baseline itself with calls of one judgement instead of max_batch, so what batching alone changes, without any prefix reuse.",
            ["note"] = "baseline: ServedModel with prefix sharing off (K samples of a judgement share one prefill); reuse: the judge's default ServedModel (shared prefixes run once per batch, kept between calls). Prefill tokens of the first timed round (the rubric is already kept from the warm-up, as in a judge replica that has judged before). Sides alternate; best time of each.",
        };
    }
}
