namespace Srlm.Cli.Commands;

/// <summary>`srlm status RUN [--wait] [--json] [--stall-after S] [--interval S] [--timeout S]`.</summary>
public sealed class StatusCommand : ICommand
{
    public string Name => "status";
    public string Summary => "a run's state, per-iteration counts, throughput, time left and queue depths (--wait: until it ends)";

    public async Task<int> RunAsync(string[] args, CancellationToken cancel)
    {
        var a = new Args(args, "--wait", "--json");
        var wait = a.Flag("--wait");
        var json = a.Flag("--json");
        var stallAfter = TimeSpan.FromSeconds(a.Double("--stall-after", 600));
        var interval = TimeSpan.FromSeconds(a.Double("--interval", 5));
        var timeout = a.Get("--timeout") is null ? (TimeSpan?)null : TimeSpan.FromSeconds(a.Double("--timeout", 0));
        var window = TimeSpan.FromSeconds(a.Double("--window", 300));
        var store = a.Get("--store");
        a.EnsureAllRead();
        if (a.Positional.Count != 1) throw new UsageException("usage: srlm status RUN [--wait] [--json] [--stall-after SECONDS] [--timeout SECONDS]");
        if (interval <= TimeSpan.Zero || stallAfter <= TimeSpan.Zero || window <= TimeSpan.Zero || timeout <= TimeSpan.Zero)
            throw new UsageException("--interval, --stall-after, --window and --timeout must be positive");
        var runId = a.Positional[0];

        await using var env = OpsEnvironment.Open(store);
        var started = DateTimeOffset.UtcNow;
        string? lastPrinted = null;
        while (true)
        {
            var report = await RunStatusBuilder.BuildAsync(env.Store, runId, stallAfter, window, DateTimeOffset.UtcNow, cancel)
                         ?? throw new UsageException($"run '{runId}' not found in {env.Store.Location}");
            report = await WithQueuesAsync(env, report, cancel);
            var text = json ? JsonSerializer.Serialize(report, RunStatusReport.Json) : RunStatusBuilder.Format(report);
            if (!wait || report.IsTerminal || text != lastPrinted)
            {
                if (!wait || report.IsTerminal || !json) Console.WriteLine(text);
                lastPrinted = text;
            }
            if (!wait) return report.State is "failed" ? 1 : 0;
            if (report.IsTerminal) return report.State == "completed" ? 0 : 1;
            if (timeout is { } t && DateTimeOffset.UtcNow - started > t)
            {
                Console.Error.WriteLine($"srlm status: run {runId} still {report.State} after {t.TotalSeconds:F0} s");
                return 1;
            }
            await Task.Delay(interval, cancel);
        }
    }

    private static async Task<RunStatusReport> WithQueuesAsync(OpsEnvironment env, RunStatusReport report, CancellationToken cancel)
    {
        if (env.Options.Bus.Transport != BusTransport.RabbitMq) return report with { QueuesNote = "SRLM_BUS is not a RabbitMQ broker" };
        try
        {
            await using var connection = await RabbitQueues.ConnectAsync(env.Options.Bus, "srlm-status", cancel);
            // The services' queues and their _error twins, plus any queue this run has parked messages in.
            var parked = (await env.Store.ListErrorsAsync(report.RunId, ct: cancel)).Select(e => e.Queue).OfType<string>()
                .Select(q => q.EndsWith("_error", StringComparison.Ordinal) ? q[..^"_error".Length] : q);
            var queues = ServiceQueues().Concat(parked).Distinct(StringComparer.Ordinal).ToList();
            var depths = await RabbitQueues.DepthsAsync(connection, queues.Concat(queues.Select(q => q + "_error")), cancel);
            return report with { Queues = depths };
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            return report with { QueuesNote = $"broker {env.Options.Bus.Display} unreachable: {Redact.Uri(e.Message)}" };
        }
    }

    /// <summary>Every consumer queue of the four services and the fault recorder, named by the bus's formatter.</summary>
    internal static IReadOnlyList<string> ServiceQueues() =>
        RabbitQueues.ConsumerQueues(new[] { "Srlm.Generator", "Srlm.Judge", "Srlm.PairBuilder", "Srlm.Trainer" }
            .Select(TryLoad).OfType<System.Reflection.Assembly>()
            .Append(typeof(Srlm.Messaging.Bus.RunFaultConsumer).Assembly));

    private static System.Reflection.Assembly? TryLoad(string name)
    {
        try { return System.Reflection.Assembly.Load(name); }
        catch (FileNotFoundException) { return null; }
    }
}
