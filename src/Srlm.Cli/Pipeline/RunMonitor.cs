namespace Srlm.Cli.Pipeline;

/// <summary>Watches a run through the store (the same facts `srlm status` reads) until it ends: completed
/// (and every checkpoint evaluated, when the spec evaluates), failed or cancelled.</summary>
public sealed class RunMonitor(IArtifactStore store, TrainingStatus training, string runId)
{
    public sealed record Snapshot(RunRecord Run, RunSpec Spec, IReadOnlyList<IterationStatus> Iterations, long Evaluations, long Checkpoints, int TrainStep, int TrainTotal, bool Done, int ControlStep = 0, int ControlTotal = 0)
    {
        public int CurrentIteration => Iterations.Where(i => i.Iteration >= 1).Select(i => i.Iteration).DefaultIfEmpty(0).Max();
        public IterationStatus? Current => Iterations.FirstOrDefault(i => i.Iteration == CurrentIteration);
    }

    public async Task<Snapshot> ReadAsync(CancellationToken ct)
    {
        var run = await store.GetRunAsync(runId, ct) ?? throw new InvalidOperationException($"run {runId} vanished from {store.Location}");
        var spec = RunSpecJson.Parse(run.SpecJson);
        var iterations = await store.GetRunStatusAsync(runId, ct);
        long evaluations = spec.Evaluation is null ? 0 : await store.CountAsync<EvaluationRecord>(ArtifactQuery.OfRun(runId), ct);
        long checkpoints = await store.CountAsync<CheckpointRecord>(ArtifactQuery.OfRun(runId), ct);
        // The latest main job (i0/sft, i1/dpo, ...) and the latest control arm (iN/dpo/control), which trains beside it.
        var jobs = training.Jobs.Where(j => j.Key.StartsWith(runId + "/", StringComparison.Ordinal)).OrderBy(j => j.Key, StringComparer.Ordinal).ToList();
        var job = jobs.LastOrDefault(j => !j.Key.EndsWith("/control", StringComparison.Ordinal)).Value;
        var control = jobs.LastOrDefault(j => j.Key.EndsWith("/control", StringComparison.Ordinal)).Value;
        bool done = run.State is RunState.Failed or RunState.Cancelled
                    || (run.State == RunState.Completed && (spec.Evaluation is null || evaluations >= ExpectedEvaluations(spec)));
        return new Snapshot(run, spec, iterations, evaluations, checkpoints, job.Step, job.Total, done, control.Step, control.Total);
    }

    /// <summary>M1..M_{T+1}, and C2..C_{T+1} when the spec has a control arm (C1 is M1).</summary>
    public static int ExpectedEvaluations(RunSpec spec) => spec.Iterations + 1 + (spec.Control is null ? 0 : spec.Iterations);

    public async Task WithStatusLinesAsync(TextWriter output, CancellationToken ct)
    {
        string last = "";
        var lastPrint = DateTime.MinValue;
        while (true)
        {
            var s = await ReadAsync(ct);
            var line = Line(s);
            if (line != last && (DateTime.UtcNow - lastPrint > TimeSpan.FromSeconds(5) || s.Done))
            {
                output.WriteLine($"{DateTime.UtcNow:HH:mm:ss} {line}");
                last = line;
                lastPrint = DateTime.UtcNow;
            }
            if (s.Done) return;
            await Task.Delay(500, ct);
        }
    }

    public static string Line(Snapshot s)
    {
        var c = s.Current;
        var it = c is null ? "sft" : $"iteration {c.Iteration}/{s.Spec.Iterations}";
        return $"{s.Run.State.ToString().ToLowerInvariant()} {it}: prompts {c?.Prompts ?? 0}, candidates {c?.Candidates ?? 0}, judgments {c?.Judgments ?? 0} ({c?.Unparseable ?? 0} unparseable), " +
               $"settled {c?.Settled ?? 0} (pairs {c?.Pairs ?? 0}), training step {s.TrainStep}/{s.TrainTotal}, " +
               (s.Spec.Control is null ? "" : $"control step {s.ControlStep}/{s.ControlTotal}, ") + $"checkpoints {s.Checkpoints}, evaluations {s.Evaluations}";
    }

    public async Task WithProgressBarsAsync(CancellationToken ct)
    {
        await AnsiConsole.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .StartAsync(async ctx =>
            {
                var bars = new Dictionary<string, ProgressTask>();
                var rates = new Dictionary<string, (double Value, DateTime At)>();
                ProgressTask Bar(string key) => bars.TryGetValue(key, out var b) ? b : bars[key] = ctx.AddTask(key, autoStart: true, maxValue: 1);
                void Set(string key, string label, double value, double max)
                {
                    var bar = Bar(key);
                    bar.MaxValue = Math.Max(1, max);
                    bar.Value = Math.Min(value, bar.MaxValue);
                    var now = DateTime.UtcNow;
                    var (v0, t0) = rates.TryGetValue(key, out var r) ? r : (value, now);
                    if (!rates.ContainsKey(key)) rates[key] = (value, now);
                    double secs = (now - t0).TotalSeconds;
                    string rate = secs > 1 && value > v0 ? $" {(value - v0) / secs:0.0}/s" : "";
                    bar.Description = $"{label,-28} {value.ToString(CultureInfo.InvariantCulture),6}/{max.ToString(CultureInfo.InvariantCulture),-6}{rate}";
                }
                while (true)
                {
                    var s = await ReadAsync(ct);
                    var spec = s.Spec;
                    int t = s.CurrentIteration;
                    string pfx = t == 0 ? "M1 " : $"i{t} ";
                    var c = s.Current;
                    long promptsMax = c is { PromptSetFinal: true } ? c.Prompts : spec.Prompts.PerIteration;
                    Set("prompts", pfx + "prompts", c?.Prompts ?? 0, promptsMax);
                    Set("candidates", pfx + "candidates", c?.Candidates ?? 0, promptsMax * spec.Responses.N);
                    Set("judgments", pfx + "judgments", c?.Judgments ?? 0, promptsMax * spec.Responses.N * spec.Judge.Samples);
                    Set("pairs", pfx + "prompts settled", c?.Settled ?? 0, promptsMax);
                    Set("training", "training steps", s.TrainStep, Math.Max(1, s.TrainTotal));
                    if (spec.Control is not null) Set("control", "control arm training steps", s.ControlStep, Math.Max(1, s.ControlTotal));
                    int models = ExpectedEvaluations(spec);
                    Set("models", spec.Control is null ? $"checkpoints M1..M{spec.Iterations + 1}" : $"checkpoints M1..M{spec.Iterations + 1}, C2..C{spec.Iterations + 1}", Math.Min(models, Math.Max(0, s.Checkpoints - 1)), models);
                    if (s.Done) return;
                    await Task.Delay(500, ct);
                }
            });
    }
}
