namespace Srlm.Tests.Model;

public class ServingTests
{
    [Fact]
    public async Task Model_work_runs_on_the_executor_thread_and_results_match_direct_generation()
    {
        var dir = TestModels.SavedCharModel("served", 21);
        using var served = await ServedModel.LoadAsync("m21", dir);
        var ids = served.Tokenizer.Encode("hello", addBos: true);
        var options = new SamplingOptions { MaxNewTokens = 10, Temperature = 0.8 };
        var threads = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => served.RunAsync(_ => Environment.CurrentManagedThreadId)));
        Assert.Single(threads.Distinct());
        Assert.NotEqual(Environment.CurrentManagedThreadId, threads[0]);

        var viaExecutor = await served.GenerateAsync([new GenerationRequest(ids, 5UL)], options);
        using var direct = LanguageModel.Load(dir);
        var expected = new TextGenerator(direct.Model, direct.Tokenizer).Generate([new GenerationRequest(ids, 5UL)], options);
        Assert.Equal(expected[0].TokenIds, viaExecutor[0].TokenIds);
        var lp = await served.LogProbsAsync([(ids, viaExecutor[0].TokenIds.Length > 0 ? viaExecutor[0].TokenIds : [5])]);
        Assert.True(lp[0].Sum < 0);
    }

    [Fact]
    public async Task Concurrent_generation_calls_with_the_same_settings_run_as_one_batch_with_unchanged_texts()
    {
        var dir = TestModels.SavedCharModel("served", 22);
        using var served = await ServedModel.LoadAsync("m22", dir);
        var sampled = new SamplingOptions { MaxNewTokens = 8, Temperature = 0.9, TopP = 0.95 };
        var greedy = SamplingOptions.Greedy(6);
        var prompts = new[] { "hello", "hi there", "a", "bye bye bye" };
        // Each call alone first: the reference texts.
        var alone = new List<int[]>();
        for (int i = 0; i < prompts.Length; i++)
            alone.Add((await served.GenerateAsync([new GenerationRequest(served.Tokenizer.Encode(prompts[i], addBos: true), [(ulong)i, (ulong)i + 100])], sampled))
                .SelectMany(g => g.TokenIds.Append(-1)).ToArray());
        long before = served.GenerationBatches;

        // Hold the model thread so that every call below is waiting when it is released.
        var gate = new ManualResetEventSlim();
        var blocker = served.RunAsync(_ => gate.Wait(TimeSpan.FromSeconds(30)));
        // Each call watches its own tokens as they are drawn (calls 0 and 2), in its own numbering; the others do not.
        var seen = prompts.Select(_ => new List<(int Request, int Sample, int Token)>()).ToArray();
        var calls = prompts.Select((p, i) => served.GenerateAsync([new GenerationRequest(served.Tokenizer.Encode(p, addBos: true), [(ulong)i, (ulong)i + 100])], sampled,
            onToken: i % 2 == 0 ? (r, s, t) => seen[i].Add((r, s, t)) : null)).ToList();
        var other = served.GenerateAsync([new GenerationRequest(served.Tokenizer.Encode("hello", addBos: true), 7UL)], greedy);
        gate.Set();
        await blocker;
        var merged = await Task.WhenAll(calls);
        await other;

        Assert.Equal(2, served.GenerationBatches - before); // four sampled calls merged into one batch, the greedy call apart
        for (int i = 0; i < prompts.Length; i++)
        {
            Assert.Equal([0, 1], merged[i].Select(g => g.SampleIndex));
            Assert.All(merged[i], g => Assert.Equal(0, g.RequestIndex));
            Assert.Equal(alone[i], merged[i].SelectMany(g => g.TokenIds.Append(-1)).ToArray());
            if (i % 2 == 1) { Assert.Empty(seen[i]); continue; }
            Assert.All(seen[i], x => Assert.Equal(0, x.Request));
            foreach (var g in merged[i])
                Assert.Equal(g.TokenIds, seen[i].Where(x => x.Sample == g.SampleIndex).Select(x => x.Token).ToArray());
        }
    }

    [Fact]
    public async Task Executor_propagates_exceptions_to_the_awaiting_caller()
    {
        using var ex = new ModelExecutor("t");
        await Assert.ThrowsAsync<InvalidOperationException>(() => ex.RunAsync<int>(() => throw new InvalidOperationException("boom")));
        Assert.Equal(3, await ex.RunAsync(() => 3));
    }

    [Fact]
    public async Task Cache_loads_once_evicts_the_least_recently_used_and_keeps_leased_models()
    {
        var dirs = new Dictionary<string, string> { ["a"] = TestModels.SavedCharModel("served", 1), ["b"] = TestModels.SavedCharModel("served", 2), ["c"] = TestModels.SavedCharModel("served", 3) };
        int loads = 0;
        long oneModel;
        using (var probe = LanguageModel.Load(dirs["a"])) oneModel = probe.WeightBytes;
        using var cache = new ModelCache(oneModel * 2, (id, _) => { Interlocked.Increment(ref loads); return Task.FromResult(dirs[id]); });

        var leases = await Task.WhenAll(cache.AcquireAsync("a"), cache.AcquireAsync("a"));
        Assert.Same(leases[0].Model, leases[1].Model);
        Assert.Equal(1, loads);
        foreach (var l in leases) l.Dispose();

        using (await cache.AcquireAsync("b")) { }
        using (await cache.AcquireAsync("a")) { } // a is now more recent than b
        using (await cache.AcquireAsync("c")) { } // over the bound: b goes
        Assert.Equal(new[] { "a", "c" }, cache.Loaded.OrderBy(x => x));

        // A leased model is never evicted, even over the bound.
        using var held = await cache.AcquireAsync("a");
        using (await cache.AcquireAsync("b")) { }
        Assert.Contains("a", cache.Loaded);
        var r = await held.Model.GenerateAsync([new GenerationRequest(held.Model.Tokenizer.Encode("x", addBos: true), 1UL)], SamplingOptions.Greedy(3));
        Assert.Single(r);
        Assert.Equal(4, loads);
    }
}
