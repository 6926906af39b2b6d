namespace Srlm.Cli.Commands;

/// <summary>`srlm audit RUN [--sample N] [--iteration T] [--seed S]`: re-runs a sample of stored judgements on their
/// recorded checkpoint, prompt, candidate and seed with the judge's own scoring code, and compares text and score.
/// Prints `N checked, M mismatches`; exit 1 when M > 0. Calls to external endpoints (spec evaluation.judge_model or
/// models.prompt_model given as an endpoint) are listed in their own section, not re-run.</summary>
public sealed class AuditCommand : ICommand
{
    public string Name => "audit";
    public string Summary => "re-run N stored judgements on their recorded checkpoint and seed; report mismatches";

    public async Task<int> RunAsync(string[] args, CancellationToken cancel)
    {
        var a = new Args(args);
        var sample = a.Int("--sample", 20);
        var iteration = a.Get("--iteration") is null ? (int?)null : a.Int("--iteration", 0);
        var seed = a.Int("--seed", 0);
        var store = a.Get("--store");
        a.EnsureAllRead();
        if (a.Positional.Count != 1) throw new UsageException("usage: srlm audit RUN [--sample N] [--iteration T] [--seed S]");
        if (sample < 1) throw new UsageException($"--sample must be at least 1, got {sample}");
        var runId = a.Positional[0];

        await using var env = OpsEnvironment.Open(store);
        if (await env.Store.GetRunAsync(runId, cancel) is null) throw new UsageException($"run '{runId}' not found in {env.Store.Location}");
        var services = new ServiceCollection();
        services.AddLogging(b => b.SetMinimumLevel(LogLevel.Warning));
        services.AddSingleton(env.Stores.Artifacts);
        services.AddSingleton(env.Stores.Checkpoints);
        services.AddJudge();
        await using var provider = services.BuildServiceProvider();
        var result = await JudgementAudit.RunAsync(env.Store, provider.GetRequiredService<RunSpecCache>(), provider.GetRequiredService<IModelProvider>(),
            runId, sample, iteration, seed, Console.Out, cancel);
        Console.WriteLine($"{result.Checked} checked, {result.Mismatches} mismatches");
        await ExternalCallsAudit.WriteAsync(env.Store, runId, iteration, sample, Console.Out, cancel);
        return result.Mismatches > 0 || result.Checked == 0 ? 1 : 0;
    }
}

public static class JudgementAudit
{
    public sealed record Result(int Checked, int Mismatches);

    /// <summary>Draws <paramref name="sample"/> stored judgements of the run (seeded, so an audit can be repeated),
    /// regenerates them per candidate in one call of the judge's <see cref="Judging.SampleAsync"/>, and writes one line
    /// per mismatch (stored vs now: score, seed or text).</summary>
    public static async Task<Result> RunAsync(IArtifactStore store, RunSpecCache specs, IModelProvider models, string runId, int sample,
        int? iteration, int seed, TextWriter output, CancellationToken ct)
    {
        var spec = await specs.GetAsync(runId, ct);
        var all = await store.ListAsync<JudgementRecord>(ArtifactQuery.OfRun(runId, iteration), ct);
        var chosen = all.OrderBy(_ => 0).ToList();
        new Random(seed).Shuffle(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(chosen));
        chosen = chosen.Take(sample).ToList();
        int mismatches = 0;
        foreach (var group in chosen.GroupBy(j => (j.CheckpointId, j.CandidateId)).OrderBy(g => g.Key.CandidateId, StringComparer.Ordinal))
        {
            var candidate = await store.GetAsync<CandidateRecord>(group.Key.CandidateId, ct)
                            ?? throw new StoreIntegrityException($"judgement {group.First().Id}: candidate {group.Key.CandidateId} is not stored");
            var prompt = await store.GetAsync<PromptRecord>(candidate.PromptId, ct)
                         ?? throw new StoreIntegrityException($"candidate {candidate.Id}: prompt {candidate.PromptId} is not stored");
            var model = await models.GetAsync(group.Key.CheckpointId, spec.Models.Dtype, ct);
            var judgements = group.OrderBy(j => j.SampleIndex).ToList();
            var again = await Judging.SampleAsync(model, spec, runId, prompt.Text, candidate.Text, candidate.Id, judgements.Select(j => j.SampleIndex).ToList(), ct);
            foreach (var (stored, now) in judgements.Zip(again))
            {
                var differences = new List<string>();
                if (stored.Score != now.Parsed.Score) differences.Add($"score stored {Show(stored.Score)}, now {Show(now.Parsed.Score)}");
                if (stored.Seed != now.Seed) differences.Add($"seed stored {stored.Seed}, now {now.Seed}");
                if (stored.RawText != now.RawText) differences.Add("judge text differs");
                if (differences.Count == 0) continue;
                mismatches++;
                await output.WriteLineAsync($"mismatch {stored.Id} on {stored.CheckpointId}: {string.Join("; ", differences)}");
            }
        }
        return new Result(chosen.Count, mismatches);
    }

    private static string Show(double? score) => score?.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture) ?? "unparseable";
}

/// <summary>The "external calls" section of `srlm audit`: what the run asked external endpoints and what they answered
/// (or why they did not), from the stored <see cref="ExternalCallRecord"/>s. They are shown, never re-run: another model's
/// server is not expected to give the same text twice, so no difference from a re-run is a mismatch.</summary>
public static class ExternalCallsAudit
{
    public static async Task<int> WriteAsync(IArtifactStore store, string runId, int? iteration, int sample, TextWriter output, CancellationToken ct)
    {
        var calls = await store.ListAsync<ExternalCallRecord>(ArtifactQuery.OfRun(runId, iteration), ct);
        if (calls.Count == 0) return 0;
        await output.WriteLineAsync($"external calls: {calls.Count} stored, {calls.Count(c => c.Error is not null)} failed " +
            "(not re-run: an external endpoint is not expected to reproduce its answers, so they are shown, not compared)");
        foreach (var g in calls.GroupBy(c => (c.Model, c.Endpoint, c.Purpose)).OrderBy(g => g.Key.Purpose, StringComparer.Ordinal))
            await output.WriteLineAsync($"  {g.Key.Purpose}: {g.Count()} calls to {g.Key.Model} at {g.Key.Endpoint}, {g.Count(c => c.Error is not null)} failed, " +
                $"{g.Sum(c => c.Attempts)} attempts");
        foreach (var c in calls.OrderBy(c => c.CallId, StringComparer.Ordinal).Take(sample))
        {
            var said = c.Error is { } e ? $"no answer: {e}" : $"{c.FinishReason ?? c.RawFinishReason ?? "?"}: {OneLine(c.Text ?? "")}";
            await output.WriteLineAsync($"  {c.CallId}: {said}");
        }
        return calls.Count;
    }

    private static string OneLine(string text)
    {
        var line = text.ReplaceLineEndings(" ");
        return line.Length > 100 ? line[..100] + "..." : line;
    }
}
