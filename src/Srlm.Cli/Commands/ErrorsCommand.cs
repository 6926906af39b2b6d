namespace Srlm.Cli.Commands;

/// <summary>`srlm errors list [--run RUN] [--all] [--json]` and `srlm errors requeue [--run RUN] [--queue Q_error]`.</summary>
public sealed class ErrorsCommand : ICommand
{
    public string Name => "errors";
    public string Summary => "list parked messages with their reasons, or requeue them from the _error queues";

    public async Task<int> RunAsync(string[] args, CancellationToken cancel)
    {
        var a = new Args(args, "--json", "--all");
        var run = a.Get("--run");
        var json = a.Flag("--json");
        var all = a.Flag("--all");
        var queue = a.Get("--queue");
        var store = a.Get("--store");
        a.EnsureAllRead();
        var action = a.Positional.Count == 1 ? a.Positional[0] : null;
        if (action is not ("list" or "requeue")) throw new UsageException("usage: srlm errors list [--run RUN] [--all] [--json] | srlm errors requeue [--run RUN] [--queue QUEUE_error]");
        await using var env = OpsEnvironment.Open(store);
        var errors = await env.Store.ListErrorsAsync(run, includeRequeued: all, cancel);

        if (action == "list")
        {
            if (json)
            {
                Console.WriteLine(JsonSerializer.Serialize(errors, new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, WriteIndented = true }));
                return 0;
            }
            if (errors.Count == 0) { Console.WriteLine("no parked messages"); return 0; }
            foreach (var e in errors)
                Console.WriteLine($"{e.Time:u}  {e.Queue ?? "?"}  {e.MessageType}  {e.MessageId}  run={e.RunId ?? "?"} iteration={e.Iteration?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "?"}" +
                                  $"{(e.RequeuedAt is null ? "" : $" requeued {e.RequeuedAt:u}")}\n    {e.Reason}");
            return 0;
        }

        if (env.Options.Bus.Transport != Srlm.Messaging.Configuration.BusTransport.RabbitMq)
            throw new UsageException($"requeue moves messages on the broker: set SRLM_BUS=amqp://... (it is {env.Options.Bus.Display})");
        var pending = errors.Where(e => e.RequeuedAt is null && e.Queue is not null && (queue is null || e.Queue == queue)).ToList();
        var queues = queue is not null ? [queue] : pending.Select(e => e.Queue!).Distinct(StringComparer.Ordinal).ToList();
        if (queues.Count == 0) { Console.WriteLine("nothing to requeue"); return 0; }
        await using var connection = await RabbitQueues.ConnectAsync(env.Options.Bus, "srlm-errors", cancel);
        // A run failed by these parked messages goes back to running first, so a message that fails again fails it again.
        foreach (var runId in pending.Where(e => queues.Contains(e.Queue!)).Select(e => e.RunId).OfType<string>().Distinct(StringComparer.Ordinal))
        {
            var stored = await env.Store.GetRunAsync(runId, cancel);
            if (stored?.State == Srlm.Storage.RunState.Failed && await env.Store.ReopenFailedRunAsync(runId, cancel) == Srlm.Storage.WriteOutcome.Updated)
                Console.WriteLine($"run {runId} reopened (was failed: {stored.FailureReason})");
        }
        var moved = 0;
        foreach (var q in queues)
        {
            // With --run, only that run's parked messages move (matched by message id); otherwise the whole queue.
            var ids = pending.Where(e => e.Queue == q && e.MessageId is not null).Select(e => e.MessageId!).ToHashSet(StringComparer.Ordinal);
            Func<RabbitMQ.Client.IReadOnlyBasicProperties, ReadOnlyMemory<byte>, bool>? select = run is null ? null : (p, _) => p.MessageId is { } id && ids.Contains(id);
            var ok = await RabbitQueues.RequeueAsync(connection, q, select: select, ct: cancel);
            foreach (var id in ok)
                foreach (var e in pending.Where(e => e.Queue == q && e.MessageId == id))
                    await env.Store.MarkErrorRequeuedAsync(e.Id, cancel);
            Console.WriteLine($"{q}: {ok.Count} messages moved back to {q[..^"_error".Length]}");
            moved += ok.Count;
        }
        Console.WriteLine($"{moved} messages requeued");
        return 0;
    }
}
