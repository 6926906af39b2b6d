using Srlm.Contracts.Spec;
using Srlm.Messaging.Broker;

namespace Srlm.Messaging.Operations;

/// <summary>One iteration's counts as `srlm status` shows them: the stored facts' <see cref="IterationStatus"/> and K,
/// the judge samples per candidate from the run spec. Its JSON is the status contract (<see cref="IterationCountsJson"/>).</summary>
[JsonConverter(typeof(IterationCountsJson))]
public sealed record IterationCounts(IterationStatus Counts, int JudgeSamples);

/// <summary>The JSON of one iteration in `srlm status --json`, as it has always been: the counts without the ones
/// status does not show (run id, generated prompts, shards, settled prompts, start checkpoint), K as judge_samples
/// after truncated, and the produced checkpoint as checkpoint. Written only (status is never read back).</summary>
public sealed class IterationCountsJson : JsonConverter<IterationCounts>
{
    private static readonly string[] Hidden =
    [
        nameof(IterationStatus.RunId), nameof(IterationStatus.PromptsGenerated), nameof(IterationStatus.PromptShards),
        nameof(IterationStatus.Settled), nameof(IterationStatus.StartCheckpointId),
    ];

    public override void Write(Utf8JsonWriter writer, IterationCounts value, JsonSerializerOptions options)
    {
        string Name(string property) => options.PropertyNamingPolicy?.ConvertName(property) ?? property;
        var o = JsonSerializer.SerializeToNode(value.Counts, options)!.AsObject();
        foreach (var hidden in Hidden) o.Remove(Name(hidden));
        int at = o.IndexOf(Name(nameof(IterationStatus.CheckpointId)));
        var checkpoint = o[at]?.DeepClone();
        o.RemoveAt(at);
        o.Insert(at, Name("Checkpoint"), checkpoint);
        o.Insert(o.IndexOf(Name(nameof(IterationStatus.Truncated))) + 1, Name(nameof(IterationCounts.JudgeSamples)), value.JudgeSamples);
        o.WriteTo(writer, options);
    }

    public override IterationCounts Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        throw new NotSupportedException("srlm status JSON is written, never read");
}

/// <summary>Messages handled per minute by one stage, over the recent window.</summary>
public sealed record StageThroughput(string Stage, string MessageType, long Handled, double PerMinute);

/// <summary>One training job of the run as `srlm status` lists it (the stored job record's state and step).</summary>
public sealed record TrainingJobStatus(string JobId, string Kind, int Iteration, string State, long Step, long? TotalSteps, int Attempts);

/// <summary>What `srlm status RUN` reports.</summary>
public sealed record RunStatusReport
{
    public required string RunId { get; init; }
    /// <summary>running, stalled, failed, completed or cancelled.</summary>
    public required string State { get; init; }
    public string? FailureReason { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset LastProgressAt { get; init; }
    public double SecondsSinceProgress { get; init; }
    public required IReadOnlyList<IterationCounts> Iterations { get; init; }
    public required IReadOnlyList<StageThroughput> Throughput { get; init; }
    public IReadOnlyList<TrainingJobStatus> Training { get; init; } = [];
    /// <summary>Rough seconds left for the current iteration's generation and judging at the recent rates (null when unknown).</summary>
    public double? EtaSeconds { get; init; }
    /// <summary>Ready messages per queue (shared by all runs on the broker); null without a RabbitMQ broker.</summary>
    public IReadOnlyList<QueueDepth>? Queues { get; init; }
    public string? QueuesNote { get; init; }
    public int Errors { get; init; }

    public bool IsTerminal => State is "failed" or "completed" or "cancelled";

    public static JsonSerializerOptions Json { get; } = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };
}

public static class RunStatusBuilder
{
    /// <summary>The stages whose consumed messages measure throughput, in pipeline order.</summary>
    public static readonly (string Stage, string MessageType)[] Stages =
    [
        ("prompts", "Srlm.Contracts.GeneratePrompts"),
        ("responses", "Srlm.Contracts.GenerateResponses"),
        ("judge", "Srlm.Contracts.JudgeCandidate"),
        ("pairs", "Srlm.Contracts.CandidateJudged"),
    ];

    /// <summary>Builds the report. <paramref name="stallAfter"/>: a running run with no stored progress for this
    /// long is "stalled". <paramref name="window"/>: how far back throughput is measured.</summary>
    public static async Task<RunStatusReport?> BuildAsync(IArtifactStore store, string runId, TimeSpan stallAfter, TimeSpan window,
        DateTimeOffset now, CancellationToken ct = default)
    {
        var run = await store.GetRunAsync(runId, ct);
        if (run is null) return null;
        var (n, k) = SpecNumbers(run.SpecJson);

        var consumed = await store.QueryJournalAsync(new JournalQuery { RunId = runId, Direction = JournalDirection.Consumed }, ct);
        var iterations = (await store.GetRunStatusAsync(runId, ct)).Select(s => new IterationCounts(s, k)).ToList();

        var since = now - window;
        var first = consumed.Count > 0 ? consumed.Min(e => e.Time) : now;
        var minutes = Math.Max((now - (first > since ? first : since)).TotalMinutes, 1.0 / 60);
        var throughput = Stages.Select(st =>
        {
            var handled = consumed.Count(e => e.MessageType == st.MessageType && e.Time >= since);
            return new StageThroughput(st.Stage, st.MessageType, handled, handled / minutes);
        }).ToList();

        double? eta = null;
        var current = iterations.Select(i => i.Counts).Where(i => i.Iteration >= 1).MaxBy(i => i.Iteration);
        if (current is { PromptSetFinal: true } && !run.IsTerminal)
        {
            var responsesDone = consumed.Where(e => e.Iteration == current.Iteration && e.MessageType == "Srlm.Contracts.GenerateResponses")
                .Select(e => e.MessageId).Distinct().LongCount();
            var remainingPrompts = Math.Max(0, current.Prompts - responsesDone);
            var remainingJudge = Math.Max(0.0, current.Prompts * n - current.Judgments / (double)Math.Max(k, 1));
            var responseRate = throughput.First(t => t.Stage == "responses").PerMinute;
            var judgeRate = throughput.First(t => t.Stage == "judge").PerMinute;
            if ((remainingPrompts == 0 || responseRate > 0) && (remainingJudge == 0 || judgeRate > 0))
                eta = 60 * ((remainingPrompts == 0 ? 0 : remainingPrompts / responseRate) + (remainingJudge == 0 ? 0 : remainingJudge / judgeRate));
        }

        var jobs = await store.ListJobsAsync(runId, ct: ct);
        var errors = await store.ListErrorsAsync(runId, ct: ct);
        var sinceProgress = (now - run.LastProgressAt).TotalSeconds;
        var state = run.State switch
        {
            RunState.Running when sinceProgress > stallAfter.TotalSeconds && !jobs.Any(j => j.State == JobState.Running && j.HeartbeatAt > now - stallAfter) => "stalled",
            _ => run.State.ToString().ToLowerInvariant(),
        };
        return new RunStatusReport
        {
            RunId = runId, State = state, FailureReason = run.FailureReason, CreatedAt = run.CreatedAt, LastProgressAt = run.LastProgressAt,
            SecondsSinceProgress = Math.Round(sinceProgress, 1), Iterations = iterations, Throughput = throughput, EtaSeconds = eta is null ? null : Math.Round(eta.Value),
            Training = jobs.Select(j => new TrainingJobStatus(j.Id, j.Kind.ToString(), j.Iteration, j.State.ToString(), j.Step, j.TotalSteps, j.Attempts)).ToList(),
            Errors = errors.Count,
        };
    }

    /// <summary>N (candidates per prompt) and K (judge samples) from the stored spec, read by <see cref="RunSpecJson"/>
    /// (the one spec reader, with the spec's own defaults). A stored spec was checked when its run started; one that
    /// cannot be read any more gives the defaults.</summary>
    public static (int N, int K) SpecNumbers(string specJson)
    {
        try
        {
            var spec = RunSpecJson.Parse(specJson);
            return (spec.Responses.N, spec.Judge.Samples);
        }
        catch (RunSpecException) { return (new ResponsesSpec().N, new JudgeSpec().Samples); }
    }

    /// <summary>The text form of a report (what `srlm status` prints without --json).</summary>
    public static string Format(RunStatusReport r)
    {
        var sb = new System.Text.StringBuilder();
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        sb.AppendLine(inv, $"run {r.RunId}: {r.State}{(r.FailureReason is null ? "" : $" ({r.FailureReason})")}");
        sb.AppendLine(inv, $"  last progress {r.LastProgressAt:u} ({r.SecondsSinceProgress:F0} s ago), errors parked: {r.Errors}");
        sb.AppendLine("  iteration  prompts  candidates  truncated  K  judgments  unparseable  pairs  dropped_ties  dropped_other  dropped_truncated  too_long  duplicates  checkpoint");
        foreach (var (i, k) in r.Iterations)
            sb.AppendLine(inv, $"  {i.Iteration,9}  {i.Prompts,7}{(i.PromptSetFinal ? "" : "*")}  {i.Candidates,10}  {i.Truncated,9}  {k}  {i.Judgments,9}  {i.Unparseable,11}  {i.Pairs,5}  {i.DroppedTies,12}  {i.DroppedOther,13}  {i.DroppedTruncated,17}  {i.TooLong,8}  {i.Duplicates,10}  {i.CheckpointId ?? "-"}");
        sb.AppendLine("  throughput (per minute, recent): " + string.Join(", ", r.Throughput.Select(t => string.Create(inv, $"{t.Stage} {t.PerMinute:F1}"))));
        foreach (var t in r.Training)
            sb.AppendLine(inv, $"  training {t.Kind} {t.JobId}: {t.State} step {t.Step}/{(t.TotalSteps?.ToString(inv) ?? "?")} (attempts {t.Attempts})");
        if (r.EtaSeconds is { } eta) sb.AppendLine(inv, $"  time left (generation + judging of this iteration): ~{TimeSpan.FromSeconds(eta):hh\\:mm\\:ss}");
        if (r.Queues is not null)
            sb.AppendLine("  queues (ready/consumers): " + string.Join(", ", r.Queues.Where(q => q.Messages is not null)
                .Select(q => string.Create(inv, $"{q.Queue} {q.Messages}/{q.Consumers}"))));
        else if (r.QueuesNote is not null) sb.AppendLine("  queues: " + r.QueuesNote);
        return sb.ToString().TrimEnd();
    }
}
