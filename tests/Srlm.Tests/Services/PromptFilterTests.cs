namespace Srlm.Tests.Services;

public class PromptFilterTests
{
    private static RawPrompt P(int shard, int index, string text) => new($"r/i1/p{shard}-{index}", shard, index, text);

    [Fact]
    public void Rouge_l_is_one_for_equal_texts_and_zero_for_disjoint_ones()
    {
        var a = PromptFilter.Words("Add 12 and 34, please.");
        Assert.Equal(1.0, PromptFilter.RougeL(a, a), 9);
        Assert.Equal(0.0, PromptFilter.RougeL(a, PromptFilter.Words("completely other words")));
        // LCS of "what is 12 plus 34" and "what is 56 plus 78" = 3 of 5 words each.
        Assert.Equal(0.6, PromptFilter.RougeL(PromptFilter.Words("What is 12 plus 34?"), PromptFilter.Words("what is 56 plus 78")), 9);
    }

    [Fact]
    public void Exact_duplicates_near_duplicates_and_bad_lengths_are_dropped_with_reasons()
    {
        var spec = new PromptFilterSpec { MinChars = 5, MaxChars = 60, MaxRougeL = 0.7, BannedWords = ["image"] };
        var raw = new[]
        {
            P(1, 0, "Write a haiku about the sea."),
            P(0, 0, "Explain how rainbows form in the sky."),
            P(0, 1, "explain how   rainbows form in the SKY."),
            P(0, 2, "Explain how rainbows form in the sky today."),
            P(1, 1, "Hi"),
            P(1, 2, new string('x', 61)),
            P(1, 3, "Describe this image in detail."),
            P(1, 4, "List three uses of copper."),
        };
        var r = PromptFilter.Apply(raw, [], spec, quota: 10);
        Assert.Equal(["Explain how rainbows form in the sky.", "Write a haiku about the sea.", "List three uses of copper."], r.Kept.Select(k => k.Text));
        var reasons = r.Rejected.ToDictionary(x => x.Prompt.PromptId, x => x.Reason);
        Assert.Equal(PromptRejection.ExactDuplicate, reasons["r/i1/p0-1"]);
        Assert.Equal(PromptRejection.NearDuplicate, reasons["r/i1/p0-2"]);
        Assert.Equal(PromptRejection.TooShort, reasons["r/i1/p1-1"]);
        Assert.Equal(PromptRejection.TooLong, reasons["r/i1/p1-2"]);
        Assert.Equal(PromptRejection.BannedWord, reasons["r/i1/p1-3"]);
    }

    [Fact]
    public void Prompts_repeating_a_seed_instruction_are_dropped_and_the_quota_caps_the_set()
    {
        var raw = new[] { P(0, 0, "What is 12 plus 34?"), P(0, 1, "Name a prime above 50."), P(0, 2, "Spell 'cat' backwards."), P(0, 3, "Name two oceans.") };
        var r = PromptFilter.Apply(raw, ["what is 12 plus 34"], new PromptFilterSpec(), quota: 2);
        Assert.Equal(["Name a prime above 50.", "Spell 'cat' backwards."], r.Kept.Select(k => k.Text));
        Assert.Contains(r.Rejected, x => x.Reason == PromptRejection.SeedOverlap);
        Assert.Contains(r.Rejected, x => x.Reason == PromptRejection.OverQuota);
    }

    [Fact]
    public void The_result_does_not_depend_on_arrival_order()
    {
        var raw = Enumerable.Range(0, 12).Select(i => P(i % 3, i / 3, $"Task number {i} about topic {i * 7 % 5} here")).ToList();
        var a = PromptFilter.Apply(raw, [], new PromptFilterSpec(), 6);
        var b = PromptFilter.Apply(Enumerable.Reverse(raw), [], new PromptFilterSpec(), 6);
        Assert.Equal(a.Kept.Select(k => k.PromptId), b.Kept.Select(k => k.PromptId));
    }

    [Fact]
    public void Self_instruct_few_shot_is_seeded_and_the_task_is_the_first_line_of_the_continuation()
    {
        var seeds = Enumerable.Range(0, 20).Select(i => $"seed task {i}").ToList();
        var gen = new[] { "generated one", "generated two", "generated three" };
        var shots = new FewShotSpec();
        var a = SelfInstruct.BuildFewShot(seeds, gen, shots, 42);
        Assert.Equal(a, SelfInstruct.BuildFewShot(seeds, gen, shots, 42));
        Assert.NotEqual(a, SelfInstruct.BuildFewShot(seeds, gen, shots, 43));
        Assert.Equal(6, seeds.Count(s => a.Contains(s + "\n")));
        Assert.Equal(2, gen.Count(g => a.Contains(g)));
        Assert.EndsWith("Task 9:", a);
        Assert.Equal("Add 3 and 4.", SelfInstruct.ExtractTask(" Add 3 and 4.\nTask 10: more"));
        Assert.Equal("Add 3 and 4.", SelfInstruct.ExtractTask(" Add 3 and 4. Task 10: more"));
        Assert.Equal("Add 3 and 4.", SelfInstruct.ExtractTask("Task 9: Add 3 and 4.\nTask 10: more")); // a chat model repeating the label
    }

    [Fact]
    public void Pool_slices_cover_distinct_prompts_across_shards_and_iterations()
    {
        var all = new List<int>();
        for (int it = 1; it <= 2; it++)
            for (int s = 0; s < 3; s++)
                all.AddRange(PromptPool.Slice(100, 7, it, s, 3, 10));
        Assert.Equal(20, all.Count);
        Assert.Equal(20, all.Distinct().Count());
        Assert.Equal(PromptPool.Slice(100, 7, 1, 1, 3, 10), PromptPool.Slice(100, 7, 1, 1, 3, 10));
    }
}
