namespace Srlm.Cli.Commands;

/// <summary>`srlm resume RUN`: on a deployment, re-issues the work a run had in flight from the store's facts, the
/// same recovery `srlm run --resume DIR` performs for the embedded run (InFlightWork). For a run whose messages were
/// lost with the broker (a queue purged, a broker rebuilt without its volume); while they still sit in the queues it
/// is harmless, since every re-issued message is one the services handle idempotently.</summary>
public sealed class ResumeCommand : ICommand
{
    public string Name => "resume";
    public string Summary => "re-issue a deployed run's in-flight work from the store (after lost messages)";

    public async Task<int> RunAsync(string[] args, CancellationToken cancel)
    {
        var a = new Args(args);
        var store = a.Get("--store");
        a.EnsureAllRead();
        if (a.Positional.Count != 1) throw new UsageException("usage: srlm resume RUN [--store URI]  (the services' SRLM_BUS must be a RabbitMQ broker)");
        var runId = a.Positional[0];
        await using var env = OpsEnvironment.Open(store);
        var run = await env.Store.GetRunAsync(runId, cancel) ?? throw new UsageException($"run '{runId}' not found in {env.Store.Location}");
        if (run.IsTerminal)
        {
            Console.WriteLine($"run {runId} is {run.State.ToString().ToLowerInvariant()}: nothing to resume");
            return 0;
        }
        await using var bus = await env.StartBusAsync("resume", cancel);
        int n;
        try { n = await InFlightWork.ReissueAsync(env.Store, bus.Bus, runId, cancel); }
        catch (RunNotResumableException e) { throw new UsageException(e.Message); }
        Console.WriteLine($"run {runId}: {n} messages re-issued from stored facts");
        return 0;
    }
}
