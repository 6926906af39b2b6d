namespace Srlm.Tests.Model;

public class GenerationTests(ITestOutputHelper output)
{
    private static readonly string[] Prompts =
    [
        "hello there", "a", "the quick brown fox", "Why?", "one, two, three, four, five", "zz", "Good day to you, sir!", "abc def",
    ];

    private static IReadOnlyList<int> Ids(LanguageModel lm, string p) => lm.Tokenizer.Encode(p, addBos: true);

    [Fact]
    public void Generate_with_cache_equals_full_recompute()
    {
        using var lm = TestModels.CharModel(seed: 2);
        var gen = new TextGenerator(lm.Model, lm.Tokenizer);
        var options = SamplingOptions.Greedy(48) with { StopAtEos = false };
        foreach (var prompt in Prompts.Take(3))
        {
            var cached = gen.Generate([new GenerationRequest(Ids(lm, prompt), 0UL)], options)[0].TokenIds;

            var ids = Ids(lm, prompt).Select(x => (long)x).ToList();
            var recomputed = new List<int>();
            using (no_grad())
                for (int i = 0; i < 48; i++)
                {
                    using var scope = NewDisposeScope();
                    var logits = lm.Model.forward(tensor(ids.ToArray()).unsqueeze(0)); // (1, T, V)
                    int next = (int)logits[0, -1].argmax().item<long>();
                    recomputed.Add(next);
                    ids.Add(next);
                }
            Assert.Equal(recomputed, cached);
            Assert.True(cached.Distinct().Count() > 3, "degenerate output: the test would not notice a wrong cache");
        }
    }

    [Fact]
    public void Greedy_tokens_and_logits_are_the_same_alone_and_inside_a_padded_batch()
    {
        using var lm = TestModels.CharModel(seed: 3);
        var gen = new TextGenerator(lm.Model, lm.Tokenizer);
        var options = SamplingOptions.Greedy(32) with { StopAtEos = false };
        var batch = gen.Generate(Prompts.Select(p => new GenerationRequest(Ids(lm, p), 0UL)).ToList(), options);
        for (int i = 0; i < Prompts.Length; i++)
        {
            var alone = gen.Generate([new GenerationRequest(Ids(lm, Prompts[i]), 0UL)], options)[0];
            Assert.Equal(alone.TokenIds, batch[i].TokenIds);
        }

        // Logits of each prompt's last position: alone vs left padded in the batch.
        using var _ = no_grad();
        int len = Prompts.Max(p => Ids(lm, p).Count);
        var ids = new long[Prompts.Length * len];
        var mask = new long[Prompts.Length * len];
        for (int i = 0; i < Prompts.Length; i++)
        {
            var p = Ids(lm, Prompts[i]);
            for (int j = 0; j < p.Count; j++) { ids[i * len + len - p.Count + j] = p[j]; mask[i * len + len - p.Count + j] = 1; }
        }
        using var batched = lm.Model.Forward(tensor(ids, [Prompts.Length, len]), tensor(mask, [Prompts.Length, len]), lastOnly: true);
        double worst = 0;
        for (int i = 0; i < Prompts.Length; i++)
        {
            using var alone = lm.Model.Forward(tensor(Ids(lm, Prompts[i]).Select(x => (long)x).ToArray()).unsqueeze(0), lastOnly: true);
            using var diff = (alone[0] - batched[i]).abs().max();
            worst = Math.Max(worst, diff.item<float>());
        }
        output.WriteLine($"max |logit alone - logit in padded batch| = {worst:E2}");
        Assert.True(worst < 1e-5, $"logits differ by {worst}");
    }

    [Fact]
    public void The_same_seed_gives_the_same_sample_alone_and_inside_a_batch()
    {
        using var lm = TestModels.CharModel(seed: 4, initStd: 0.15);
        var gen = new TextGenerator(lm.Model, lm.Tokenizer);
        var options = new SamplingOptions { MaxNewTokens = 12, Temperature = 0.9, TopP = 0.95, TopK = 40 };
        const int count = 320;
        var requests = Enumerable.Range(0, count)
            .Select(i => new GenerationRequest(Ids(lm, Prompts[i % Prompts.Length]), SequenceRandom.Derive(77, (ulong)i))).ToList();
        // Batches of 16 mixing prompt lengths (so rows are padded differently than alone).
        var inBatch = new List<GeneratedSequence>();
        for (int start = 0; start < count; start += 16) inBatch.AddRange(gen.Generate(requests.Skip(start).Take(16).ToList(), options));
        int same = 0;
        for (int i = 0; i < count; i++)
        {
            var alone = gen.Generate([requests[i]], options)[0];
            if (alone.TokenIds.SequenceEqual(inBatch[i].TokenIds)) same++;
        }
        double rate = (double)same / count;
        output.WriteLine($"identical samples alone vs in a batch of 16: {same}/{count} = {rate:P1}");
        Assert.True(rate >= 0.99, $"only {rate:P1} identical");
        // The samples really are random: different seeds for the same prompt give different texts.
        var texts = inBatch.Where((_, i) => i % Prompts.Length == 0).Select(s => s.Text).Distinct().Count();
        Assert.True(texts > count / Prompts.Length / 2, $"only {texts} distinct samples of one prompt");
    }

    [Fact]
    public void N_samples_sharing_one_prefill_equal_separate_generations_with_their_seeds()
    {
        using var lm = TestModels.CharModel(seed: 5, initStd: 0.15);
        var gen = new TextGenerator(lm.Model, lm.Tokenizer);
        var options = new SamplingOptions { MaxNewTokens = 16, Temperature = 1.0 };
        ulong[] seeds = [11, 12, 13, 14];
        var shared = gen.Generate([new GenerationRequest(Ids(lm, "hello there"), seeds), new GenerationRequest(Ids(lm, "a"), [99UL])], options);
        Assert.Equal(5, shared.Count);
        Assert.Equal(new[] { 0, 0, 0, 0, 1 }, shared.Select(s => s.RequestIndex));
        for (int i = 0; i < 4; i++)
        {
            var alone = gen.Generate([new GenerationRequest(Ids(lm, "hello there"), seeds[i])], options)[0];
            Assert.Equal(alone.TokenIds, shared[i].TokenIds);
            Assert.Equal(seeds[i], shared[i].Seed);
        }
        Assert.True(shared.Take(4).Select(s => s.Text).Distinct().Count() > 1, "four seeds gave one text");
    }

    [Fact]
    public void Generation_stops_at_eos_and_cuts_at_stop_strings()
    {
        using var lm = TestModels.CharModel(seed: 2);
        var gen = new TextGenerator(lm.Model, lm.Tokenizer);
        var prompt = Ids(lm, "hello there");
        var free = gen.Generate([new GenerationRequest(prompt, 0UL)], SamplingOptions.Greedy(40) with { StopAtEos = false })[0];
        Assert.Equal(FinishReason.Length, free.FinishReason);
        Assert.Equal(40, free.TokenIds.Length);

        // Make the 6th generated token the EOS of a copy of the same model: generation must stop before it.
        int eosToken = free.TokenIds[5];
        int firstAt = Array.IndexOf(free.TokenIds, eosToken);
        using var copy = LlamaForCausalLM.Create(lm.Config with { EosTokenIds = [eosToken], EosTokenId = eosToken }, 2, 0.25);
        copy.eval();
        var stopped = new TextGenerator(copy, lm.Tokenizer).Generate([new GenerationRequest(prompt, 0UL)], SamplingOptions.Greedy(40))[0];
        Assert.Equal(FinishReason.Eos, stopped.FinishReason);
        Assert.Equal(free.TokenIds.Take(firstAt), stopped.TokenIds);
        // An EOS that is the last token allowed still ends by EOS, not by the limit (issue 20).
        var lastAllowed = new TextGenerator(copy, lm.Tokenizer).Generate([new GenerationRequest(prompt, 0UL)], SamplingOptions.Greedy(firstAt + 1))[0];
        Assert.Equal((FinishReason.Eos, firstAt), (lastAllowed.FinishReason, lastAllowed.TokenIds.Length));
        // One token fewer allowed: cut by the limit.
        var cutShort = new TextGenerator(copy, lm.Tokenizer).Generate([new GenerationRequest(prompt, 0UL)], SamplingOptions.Greedy(firstAt))[0];
        Assert.Equal((FinishReason.Length, firstAt), (cutShort.FinishReason, cutShort.TokenIds.Length));

        // A stop string taken from the middle of the free text.
        var stop = free.Text.Substring(10, 3);
        int cut = free.Text.IndexOf(stop, StringComparison.Ordinal);
        var withStop = gen.Generate([new GenerationRequest(prompt, 0UL)], SamplingOptions.Greedy(40) with { StopAtEos = false, StopStrings = [stop] })[0];
        Assert.Equal(FinishReason.StopString, withStop.FinishReason);
        Assert.Equal(free.Text[..cut], withStop.Text);
    }

    [Theory]
    [InlineData(0.7, 0.9, 0)]
    [InlineData(1.0, 0.5, 0)]
    [InlineData(0.9, 0.95, 40)]
    [InlineData(0.8, 1.0, 5)]
    [InlineData(1.0, 1.0, 0)]
    public void Sample_draws_what_a_sorted_top_k_then_top_p_reference_draws(double temperature, double topP, int topK)
    {
        // Flat to peaked rows, some with many tied values; a vocabulary that is not a multiple of the vector width.
        const int v = 3001;
        double[] spreads = [0.3, 0.65, 1, 3, 10];
        using var g = new torch.Generator(42);
        using var _ = no_grad();
        var options = new SamplingOptions { Temperature = temperature, TopP = topP, TopK = topK };
        int rows = 0, distinct = 0;
        foreach (var spread in spreads)
        {
            using var scope = NewDisposeScope();
            using var scale = spread.ToScalar();
            var logits = randn([32, v], generator: g).mul_(scale);
            logits.narrow(0, 0, 8).narrow(1, 0, v / 3).fill_(0.5); // ties, at the top for flat rows
            var seeds = Enumerable.Range(0, 32).Select(i => SequenceRandom.Derive((ulong)rows, (ulong)i)).ToArray();
            var drawn = TextGenerator.Sample(logits, options, seeds.Select(s => new SequenceRandom(s)).ToArray(), new FinishReason?[32]).data<long>().ToArray();
            using var temp = temperature.ToScalar();
            var probs = logits.div(temp).softmax(-1, ScalarType.Float32).data<float>().ToArray();
            for (int i = 0; i < 32; i++)
            {
                int expected = ReferenceDraw(probs.AsSpan(i * v, v), topK, topP, new SequenceRandom(seeds[i]).NextDouble());
                Assert.Equal(expected, (int)drawn[i]);
                rows++;
            }
            distinct += drawn.Distinct().Count();
        }
        Assert.True(distinct > spreads.Length * 4, $"only {distinct} distinct tokens: the draws are not random");
    }

    /// <summary>Top-k (ties kept), then the smallest set of the most likely remaining tokens whose mass reaches
    /// top-p of theirs (ties kept), then the token where the running kept mass in vocabulary order passes u.</summary>
    private static int ReferenceDraw(ReadOnlySpan<float> p, int topK, double topP, double u)
    {
        var sorted = p.ToArray().OrderByDescending(x => x).ToArray();
        float floor = topK > 0 && topK < p.Length ? sorted[topK - 1] : 0f;
        if (topP < 1.0)
        {
            var kept = sorted.Where(x => x >= floor).ToArray();
            double need = topP * kept.Sum(x => (double)x), mass = 0;
            foreach (var x in kept)
            {
                mass += x;
                if (mass >= need) { floor = x; break; }
            }
        }
        double total = 0;
        foreach (var x in p) if (x >= floor) total += x;
        double target = u * total, acc = 0;
        int last = -1;
        for (int j = 0; j < p.Length; j++)
        {
            if (p[j] < floor) continue;
            acc += p[j];
            last = j;
            if (acc > target) return j;
        }
        return last;
    }

    [Fact]
    public void Live_tensor_count_does_not_grow_over_thousands_of_decode_steps()
    {
        using var lm = TestModels.CharModel(seed: 6, initStd: 0.15);
        var gen = new TextGenerator(lm.Model, lm.Tokenizer);
        var options = new SamplingOptions { MaxNewTokens = 250, Temperature = 0.8, TopP = 0.9, StopAtEos = false, StopStrings = ["zzzz"] };
        var batch = Prompts.Take(2).Select((p, i) => new GenerationRequest(Ids(lm, p), [(ulong)i])).ToList();
        gen.Generate(batch, options); // warm-up: lazily created tensors (if any) exist from here on
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        int steps = 0;
        for (int round = 0; round < 10; round++)
        {
            var r = gen.Generate(batch, options);
            steps += r.Max(s => s.TokenIds.Length);
        }
        var scores = LogProbs.Score(lm.Model, batch.Select(b => (b.PromptIds, (IReadOnlyList<int>)b.PromptIds)).ToList(), lm.Tokenizer.PadId);
        long after = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        output.WriteLine($"{steps} decode steps; live tensors before {before}, after {after}");
        Assert.True(steps >= 2000, $"only {steps} steps");
        Assert.Equal(before, after);
        Assert.Equal(2, scores.Count);
    }

    [Fact]
    public void Batched_log_probs_equal_one_at_a_time_and_a_manual_log_softmax()
    {
        using var lm = TestModels.CharModel(seed: 7);
        var pairs = new List<(IReadOnlyList<int>, IReadOnlyList<int>)>
        {
            (Ids(lm, "hello"), lm.Tokenizer.Encode(" world")),
            (Ids(lm, "a much longer prompt here"), lm.Tokenizer.Encode("x")),
            (Ids(lm, "q"), lm.Tokenizer.Encode("an answer of some length")),
        };
        var batched = LogProbs.Score(lm.Model, pairs, lm.Tokenizer.PadId);
        for (int i = 0; i < pairs.Count; i++)
        {
            var alone = LogProbs.Score(lm.Model, [pairs[i]], lm.Tokenizer.PadId)[0];
            Assert.Equal(pairs[i].Item2.Count, batched[i].PerToken.Length);
            Assert.True(Math.Abs(alone.Sum - batched[i].Sum) < 1e-4, $"row {i}: {alone.Sum} vs {batched[i].Sum}");

            // Manual: log_softmax of an unpadded forward at each completion position.
            var (prompt, completion) = pairs[i];
            var all = prompt.Concat(completion).Select(x => (long)x).ToArray();
            using var _ = no_grad();
            using var scope = NewDisposeScope();
            var logp = lm.Model.forward(tensor(all).unsqueeze(0)).log_softmax(-1); // (1, T, V)
            double manual = 0;
            for (int j = 0; j < completion.Count; j++)
            {
                float v = logp[0, prompt.Count - 1 + j, completion[j]].item<float>();
                Assert.True(Math.Abs(v - batched[i].PerToken[j]) < 1e-4, $"row {i} token {j}: {v} vs {batched[i].PerToken[j]}");
                manual += v;
            }
            Assert.True(Math.Abs(manual - batched[i].Sum) < 1e-3);
            Assert.True(batched[i].Sum < 0);
        }
    }

    [Fact]
    public void Log_probs_carry_gradients_for_training()
    {
        using var lm = TestModels.CharModel(seed: 8);
        lm.Model.train();
        using var batch = LogProbBatch.Collate([(Ids(lm, "hi"), lm.Tokenizer.Encode("there"))], lm.Model.Device, lm.Tokenizer.PadId);
        var (sum, perToken) = LogProbs.Compute(lm.Model, batch);
        sum.sum().backward();
        var grad = lm.Model.named_parameters().First(p => p.name == "model.layers.0.self_attn.q_proj.weight").parameter.grad;
        Assert.NotNull(grad);
        Assert.True(grad!.abs().sum().item<float>() > 0);
        sum.Dispose(); perToken.Dispose();
    }
}
