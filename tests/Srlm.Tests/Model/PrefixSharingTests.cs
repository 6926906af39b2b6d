namespace Srlm.Tests.Model;

/// <summary>Shared token prefixes run through the model once (in a batch and, kept, across calls) give the texts a
/// whole-prompt prefill gives, for the same seeds, in float32.</summary>
public class PrefixSharingTests(ITestOutputHelper output)
{
    // Judge-like prompts: a long rubric, then an instruction, then a response.
    private const string Rubric = "Review the request and the reply below with the additive scale. Award one point for each condition met: relevant, substantial, useful, clear, expert. ";
    private static readonly string[] Instructions = ["Request: add 23 and 58. ", "Request: name three colours of the sky at dusk. ", "Request: why? "];
    private static readonly string[] Responses = ["<response>81</response>", "<response>red, orange and a deep violet</response>", "<response>because</response>"];

    private static List<GenerationRequest> JudgeRequests(LanguageModel lm, string rubric, int samples, ulong seedBase)
    {
        var texts = new List<string>();
        foreach (var i in Instructions)
            foreach (var r in Responses) texts.Add(rubric + i + r);
        texts.Add(texts[4]);                           // the same prompt twice
        texts.Add(rubric + Instructions[1]);           // a prompt that is a prefix of others
        texts.Add("zz top");                           // nothing in common with the rest
        return texts.Select((t, n) => new GenerationRequest(lm.Tokenizer.Encode(t, addBos: true),
            Enumerable.Range(0, samples).Select(s => seedBase + (ulong)(n * 10 + s)).ToList())).ToList();
    }

    private static readonly SamplingOptions Sampled = new() { MaxNewTokens = 24, Temperature = 0.7, TopP = 0.9, StopAtEos = false };

    private static void AssertSameTokens(IReadOnlyList<GeneratedSequence> expected, IReadOnlyList<GeneratedSequence> actual)
    {
        Assert.Equal(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++)
        {
            Assert.Equal((expected[i].RequestIndex, expected[i].SampleIndex, expected[i].Seed), (actual[i].RequestIndex, actual[i].SampleIndex, actual[i].Seed));
            Assert.Equal(expected[i].TokenIds, actual[i].TokenIds);
            Assert.Equal(expected[i].Text, actual[i].Text);
        }
    }

    [Theory]
    [InlineData(2, true)]   // 24 rows: libtorch decode
    [InlineData(1, false)]  // batches of at most 4 rows: the decode kernel over middle-padded slots
    public void Shared_prefixes_give_the_same_samples_as_whole_prompts(int samples, bool oneBatch)
    {
        using var lm = TestModels.CharModel(seed: 5);
        var requests = JudgeRequests(lm, Rubric, samples, 100);
        var whole = new TextGenerator(lm.Model, lm.Tokenizer);
        using var kept = new PrefixCache(0); // shares inside a batch only
        var shared = new TextGenerator(lm.Model, lm.Tokenizer) { Prefixes = kept };
        List<IReadOnlyList<GenerationRequest>> batches = oneBatch ? [requests] : [.. requests.Chunk(4)];
        foreach (var batch in batches)
        {
            AssertSameTokens(whole.Generate(batch, Sampled), shared.Generate(batch, Sampled));
            AssertSameTokens(whole.Generate(batch, SamplingOptions.Greedy(16) with { StopAtEos = false }), shared.Generate(batch, SamplingOptions.Greedy(16) with { StopAtEos = false }));
        }
        double fraction = (double)shared.PrefillTokens / whole.PrefillTokens;
        output.WriteLine($"prefill tokens: whole {whole.PrefillTokens}, shared {shared.PrefillTokens} ({fraction:F3})");
        Assert.Equal(0, kept.Count);
        Assert.True(fraction < (oneBatch ? 0.35 : 0.75), $"sharing computed {fraction:P1} of the prompt tokens");
    }

    [Fact]
    public void A_kept_prefix_serves_later_calls_with_the_same_samples()
    {
        using var lm = TestModels.CharModel(seed: 6);
        var requests = JudgeRequests(lm, Rubric, 2, 7);
        var whole = new TextGenerator(lm.Model, lm.Tokenizer);
        using var kept = new PrefixCache(64L << 20);
        var shared = new TextGenerator(lm.Model, lm.Tokenizer) { Prefixes = kept };

        // Three calls of the same iteration: the first keeps the rubric, the others start from it.
        var first = requests.Take(3).ToList();
        var second = requests.Skip(3).Take(6).ToList();
        var single = requests.Skip(9).Take(1).ToList();
        AssertSameTokens(whole.Generate(first, Sampled), shared.Generate(first, Sampled));
        Assert.Equal(1, kept.Count);
        Assert.Equal(0, kept.TokensReused);
        AssertSameTokens(whole.Generate(second, Sampled), shared.Generate(second, Sampled));
        long rubricTokens = lm.Tokenizer.Encode(Rubric, addBos: true).Count;
        Assert.True(kept.TokensReused >= rubricTokens, $"reused {kept.TokensReused} tokens, the rubric has {rubricTokens}");
        long before = kept.TokensReused;
        AssertSameTokens(whole.Generate(single, Sampled), shared.Generate(single, Sampled));
        Assert.True(kept.TokensReused - before >= rubricTokens, "a lone prompt starting with the rubric reuses it");
        output.WriteLine($"prefill tokens: whole {whole.PrefillTokens}, shared {shared.PrefillTokens}; reused {kept.TokensReused}; kept {kept.Count} ({kept.Bytes} bytes)");

        // A different rubric shares nothing with what is kept, and still gives the same samples.
        var other = JudgeRequests(lm, "Score it. " + Rubric, 1, 9).Take(4).ToList();
        AssertSameTokens(whole.Generate(other, Sampled), shared.Generate(other, Sampled));
    }

    [Fact]
    public void Kept_prefixes_stay_within_their_byte_bound()
    {
        using var lm = TestModels.CharModel(seed: 7);
        var probe = new PrefixCache(64L << 20);
        var gen = new TextGenerator(lm.Model, lm.Tokenizer) { Prefixes = probe };
        gen.Generate(JudgeRequests(lm, Rubric, 1, 1).Take(2).ToList(), Sampled with { MaxNewTokens = 2 });
        long one = probe.Bytes;
        probe.Dispose();
        Assert.True(one > 0);

        // Room for two rubrics of this length; four different rubrics go through it.
        using var kept = new PrefixCache(one * 2 + one / 2);
        var bounded = new TextGenerator(lm.Model, lm.Tokenizer) { Prefixes = kept };
        var whole = new TextGenerator(lm.Model, lm.Tokenizer);
        foreach (var tag in new[] { "A", "B", "C", "D" })
        {
            var batch = JudgeRequests(lm, tag + Rubric[1..], 1, 3).Take(2).ToList();
            AssertSameTokens(whole.Generate(batch, Sampled with { MaxNewTokens = 4 }), bounded.Generate(batch, Sampled with { MaxNewTokens = 4 }));
            Assert.True(kept.Bytes <= kept.MaxBytes, $"{kept.Bytes} bytes kept, bound {kept.MaxBytes}");
        }
        Assert.Equal(2, kept.Count);
        // The most recent rubric is kept: its next call reuses it.
        bounded.Generate(JudgeRequests(lm, "D" + Rubric[1..], 1, 4).Skip(3).Take(2).ToList(), Sampled with { MaxNewTokens = 2 });
        Assert.True(kept.TokensReused > 0);
    }

    [Fact]
    public async Task A_served_model_shares_prefixes_with_the_texts_of_one_that_does_not()
    {
        using var plain = ServedModel.Wrap("m", TestModels.CharModel(seed: 8), prefixCacheBytes: 0);
        using var sharing = ServedModel.Wrap("m", TestModels.CharModel(seed: 8));
        Assert.False(plain.SharesPrefixes);
        Assert.True(sharing.SharesPrefixes);
        using var lm = TestModels.CharModel(seed: 8);
        var requests = JudgeRequests(lm, Rubric, 3, 11);
        for (int round = 0; round < 2; round++)
        {
            var a = await plain.GenerateAsync(requests, Sampled);
            var b = await sharing.GenerateAsync(requests, Sampled);
            AssertSameTokens(a, b);
        }
        output.WriteLine($"prefill tokens: plain {plain.PrefillTokens}, sharing {sharing.PrefillTokens}");
        Assert.True(sharing.PrefillTokens * 3 < plain.PrefillTokens, $"sharing prefilled {sharing.PrefillTokens} tokens, plain {plain.PrefillTokens}");
    }
}
