using Srlm.Bench;

namespace Srlm.Tests.Model;

/// <summary>Issue 17: `srlm bench judge --quick` (a smaller model and 16 judgements) runs the judge workload through
/// ServedModel with prefix sharing off and on: the same texts for every (judgement, sample), and under a third of the
/// prompt tokens computed. Its speed is measured by the bench itself on a quiet machine (bench/README.md), not here.</summary>
public sealed class JudgeBenchTests
{
    [Fact]
    public async Task The_quick_judge_bench_gives_the_same_texts_with_a_third_of_the_prefill()
    {
        var bench = Benchmarks.Find("judge")!;
        var result = await bench.RunAsync(new BenchmarkContext(new Dictionary<string, string?> { ["--quick"] = "true" }, TextWriter.Null), default)
            .WaitAsync(TimeSpan.FromMinutes(10));
        Assert.True(result["texts_identical"]!.GetValue<bool>(), "texts differ with prefix reuse");
        long baseline = result["baseline_prefill_tokens"]!.GetValue<long>(), reuse = result["reuse_prefill_tokens"]!.GetValue<long>();
        // 16 prompts of 419 tokens (K samples share one prefill) against the rubric kept, 2 instructions and 8 answers a call.
        Assert.Equal(16 * 419, baseline);
        Assert.Equal(2 * (2 * 60 + 8 * 108), reuse);
        Assert.InRange(result["prefill_tokens_computed_fraction"]!.GetValue<double>(), 0.0, 0.35);
    }
}
