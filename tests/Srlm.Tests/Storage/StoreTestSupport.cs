namespace Srlm.Tests.Storage;

/// <summary>The store's test-only write: <see cref="IArtifactOverwrite"/>, which no production interface has.</summary>
public static class StoreTestAccess
{
    public static Task<WriteOutcome> OverwriteAsync<T>(this IArtifactStore store, T artifact, CancellationToken ct = default) where T : class, IArtifact =>
        ((IArtifactOverwrite)store).OverwriteAsync(artifact, ct);
}

/// <summary>A clock the tests move by hand (stale job heartbeats).</summary>
public sealed class ManualClock(DateTimeOffset start) : TimeProvider
{
    private DateTimeOffset _now = start;
    public override DateTimeOffset GetUtcNow() => _now;
    public void Advance(TimeSpan by) => _now += by;
}

/// <summary>A temp folder deleted at dispose.</summary>
public sealed class TempDir : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("srlm-store-test-").FullName;
    public string File(string name) => System.IO.Path.Combine(Path, name);
    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

/// <summary>Small builders for records with deterministic ids.</summary>
public static class Make
{
    public static PromptRecord Prompt(string run, int t, int index, int shard = 0) => new()
    {
        Id = $"{run}/t{t}/s{shard}/p{index}", RunId = run, Iteration = t, Shard = shard, Index = index, Text = $"prompt {index}",
    };

    public static CandidateRecord Candidate(string run, int t, string promptId, int index) => new()
    {
        Id = $"{promptId}/c{index}", RunId = run, Iteration = t, PromptId = promptId, Index = index, Text = $"answer {index}",
        CheckpointId = $"{run}/m{t}", Seed = index, TokenCount = 10 + index,
    };

    public static JudgementRecord Judgement(string run, int t, CandidateRecord c, int sample, double? score, string? id = null) => new()
    {
        Id = id ?? $"{c.Id}/j{sample}", RunId = run, Iteration = t, PromptId = c.PromptId, CandidateId = c.Id, SampleIndex = sample,
        RawText = score is null ? "no score here" : $"Fine. Score: {score}", Score = score, Seed = 1000 + sample, CheckpointId = $"{run}/m{t}",
    };

    public static PairRecord Pair(string run, int t, string promptId, string? id = null) => new()
    {
        Id = id ?? $"{promptId}/pair", RunId = run, Iteration = t, PromptId = promptId, ChosenCandidateId = $"{promptId}/c0",
        RejectedCandidateId = $"{promptId}/c1", ChosenScore = 4.5, RejectedScore = 1.0, ChosenTokens = 12, RejectedTokens = 30,
    };

    public static PairDropRecord Drop(string run, int t, string promptId, DropReason reason, string? id = null) => new()
    {
        Id = id ?? $"{promptId}/drop", RunId = run, Iteration = t, PromptId = promptId, Reason = reason,
    };

    public static CheckpointRecord Checkpoint(string run, int t, string? parent, string? dataset) => new()
    {
        Id = $"{run}/m{t}", RunId = run, Iteration = t, ParentCheckpointId = parent, DatasetId = dataset, Location = $"/ckpt/{run}/m{t}",
        Files = [new CheckpointFile("model.safetensors", 123, new string('a', 64))], Origin = parent is null ? "upload" : "dpo",
    };

    public static JournalEntry Journal(string run, int t, string messageId, string type, JournalDirection dir, DateTimeOffset time) => new()
    {
        Id = $"{messageId}/{dir}", MessageId = messageId, ConversationId = "conv-1", CorrelationId = "corr-1", MessageType = type,
        Direction = dir, Endpoint = "judge-candidate", Headers = new Dictionary<string, string> { ["x-test"] = "1" },
        BodyJson = $$"""{"runId":"{{run}}","iteration":{{t}}}""", Time = time, Host = "host-a", RunId = run, Iteration = t,
    };
}
