namespace Srlm.Tests.Messaging;

/// <summary>`srlm status --json` keeps its iteration fields, in order, now that an iteration's counts are the store's
/// IterationStatus plus K.</summary>
public class RunStatusJsonTests
{
    [Fact]
    public void An_iteration_has_the_status_fields_in_their_order_with_K_and_the_checkpoint()
    {
        var counts = new IterationCounts(new IterationStatus
        {
            RunId = "r", Iteration = 2, Prompts = 8, PromptSetFinal = true, PromptsGenerated = 9, PromptShards = 1, Candidates = 32,
            Truncated = 1, Judgments = 96, Unparseable = 2, Pairs = 7, DroppedTies = 1, Settled = 8, Duplicates = 0,
            StartCheckpointId = "r/m2", CheckpointId = "r/m3",
        }, JudgeSamples: 3);
        using var doc = JsonDocument.Parse(JsonSerializer.Serialize(counts, RunStatusReport.Json));
        var names = doc.RootElement.EnumerateObject().Select(p => p.Name).ToList();
        Assert.Equal(["iteration", "prompts", "prompt_set_final", "candidates", "truncated", "judge_samples", "judgments", "unparseable",
            "pairs", "dropped_ties", "dropped_other", "too_long", "dropped_truncated", "duplicates", "checkpoint"], names);
        Assert.Equal(3, doc.RootElement.GetProperty("judge_samples").GetInt32());
        Assert.Equal("r/m3", doc.RootElement.GetProperty("checkpoint").GetString());
        Assert.Equal(96, doc.RootElement.GetProperty("judgments").GetInt64());
    }
}
