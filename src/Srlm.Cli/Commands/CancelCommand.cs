namespace Srlm.Cli.Commands;

/// <summary>`srlm cancel RUN`: marks the run cancelled in the store (services then acknowledge its remaining
/// messages without work) and, on a RabbitMQ deployment, publishes CancelRun so services can stop long work.</summary>
public sealed class CancelCommand : ICommand
{
    public string Name => "cancel";
    public string Summary => "cancel a run: services stop taking its work";

    public async Task<int> RunAsync(string[] args, CancellationToken cancel)
    {
        var a = new Args(args);
        var store = a.Get("--store");
        a.EnsureAllRead();
        if (a.Positional.Count != 1) throw new UsageException("usage: srlm cancel RUN");
        var runId = a.Positional[0];
        await using var env = OpsEnvironment.Open(store);
        var run = await env.Store.GetRunAsync(runId, cancel) ?? throw new UsageException($"run '{runId}' not found in {env.Store.Location}");
        if (run.IsTerminal)
        {
            Console.WriteLine($"run {runId} is already {run.State.ToString().ToLowerInvariant()}");
            return run.State == RunState.Cancelled ? 0 : 1;
        }
        await env.Store.SetRunStateAsync(runId, RunState.Cancelled, "cancelled by the operator", cancel);
        if (env.Options.Bus.Transport == Srlm.Messaging.Configuration.BusTransport.RabbitMq)
        {
            await using var bus = await env.StartBusAsync("cancel", cancel);
            await bus.Bus.Publish(new CancelRun { RunId = runId }, cancel);
        }
        Console.WriteLine($"run {runId} cancelled");
        return 0;
    }
}
