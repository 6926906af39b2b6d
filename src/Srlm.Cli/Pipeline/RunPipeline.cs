namespace Srlm.Cli.Pipeline;

public sealed record RunPipelineOptions
{
    /// <summary>The spec of a new run (null when resuming).</summary>
    public string? SpecPath { get; init; }

    public required string Directory { get; init; }

    public bool Resume { get; init; }

    /// <summary>Plain status lines instead of progress bars (also when the output is not a terminal).</summary>
    public bool Quiet { get; init; }

    /// <summary>Extra registrations (tests swap parts in).</summary>
    public Action<IServiceCollection>? Configure { get; init; }
}

public sealed record RunPipelineResult(string RunId, string Directory, RunState State, bool Interrupted, RunReport? Report);

/// <summary>`srlm run`: the whole loop in one process, with progress, then the report.</summary>
public static class RunPipeline
{
    public const string RunIdFile = "run.id";

    public static async Task<RunPipelineResult> ExecuteAsync(RunPipelineOptions o, TextWriter output, CancellationToken cancel)
    {
        var dir = Path.GetFullPath(o.Directory);
        RunSpec? spec = null;
        if (o.Resume)
        {
            if (!File.Exists(Path.Combine(dir, RunIdFile)) || !File.Exists(Path.Combine(dir, PipelineHost.StoreFile)))
                throw new UsageException($"--resume {dir}: not a run folder (no {RunIdFile} / {PipelineHost.StoreFile})");
        }
        else
        {
            try { spec = RunSpecJson.Load(o.SpecPath ?? throw new UsageException("missing SPEC")); }
            catch (RunSpecException e) { throw new UsageException(e.Message); }
            if (File.Exists(Path.Combine(dir, RunIdFile))) throw new UsageException($"--out {dir} already holds a run; use --resume {dir} to continue it");
        }

        using var host = PipelineHost.Build(dir, o.Configure);
        await host.StartAsync(cancel);
        var store = host.Services.GetRequiredService<IArtifactStore>();
        var bus = host.Services.GetRequiredService<IBus>();
        var started = DateTimeOffset.UtcNow;
        string runId;
        bool interrupted = false;
        try
        {
            if (o.Resume)
            {
                runId = (await File.ReadAllTextAsync(Path.Combine(dir, RunIdFile), cancel)).Trim();
                int n;
                try { n = await InFlightWork.ReissueAsync(store, bus, runId, cancel); }
                catch (RunNotResumableException e) { throw new UsageException($"--resume {dir}: {e.Message}"); }
                output.WriteLine($"srlm run: resuming {runId} in {dir}: {n} messages re-issued from stored facts");
            }
            else
            {
                runId = RunUpload.NewRunId(spec!.Name);
                var uploaded = await RunUpload.UploadAsync(store, host.Services.GetRequiredService<ICheckpointStore>(), spec, Path.GetDirectoryName(Path.GetFullPath(o.SpecPath!))!, runId, cancel);
                // run.id names a stored run, or does not exist: written only after the run is stored, and atomically,
                // so a reader (a watcher, `srlm run --resume` after a crash at this instant) never sees an empty id.
                await WriteRunIdAsync(dir, runId, cancel);
                await bus.Publish(new RunStarted { RunId = runId, Iteration = 0, CheckpointId = uploaded.StartCheckpointId }, cancel);
                output.WriteLine($"srlm run: {runId} in {dir}");
            }
            var monitor = new RunMonitor(store, host.Services.GetRequiredService<TrainingStatus>(), runId);
            bool interactive = !o.Quiet && !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive;
            try
            {
                if (interactive) await monitor.WithProgressBarsAsync(cancel);
                else await monitor.WithStatusLinesAsync(output, cancel);
            }
            catch (OperationCanceledException) when (cancel.IsCancellationRequested) { interrupted = true; }
        }
        finally
        {
            using var stopping = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await host.StopAsync(stopping.Token);
        }

        var run = await store.GetRunAsync(runId, CancellationToken.None);
        RunReport? report = null;
        if (!interrupted)
        {
            report = await RunReportBuilder.BuildAsync(store, runId, Leakage.Count, CancellationToken.None);
            ReportWriter.Write(report, dir);
        }
        return new RunPipelineResult(runId, dir, run?.State ?? RunState.Failed, interrupted, report);
    }

    /// <summary>Writes DIR/run.id through a temporary file and a rename, so the file is whole whenever it exists.</summary>
    private static async Task WriteRunIdAsync(string dir, string runId, CancellationToken cancel)
    {
        var path = Path.Combine(dir, RunIdFile);
        var temporary = path + ".tmp";
        await File.WriteAllTextAsync(temporary, runId + "\n", cancel);
        File.Move(temporary, path, overwrite: false);
    }
}
