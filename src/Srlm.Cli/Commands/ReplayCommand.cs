namespace Srlm.Cli.Commands;

/// <summary>`srlm replay RUN [--iteration N] [--type MESSAGE] [--into NEW_RUN] [--dry-run]`.</summary>
public sealed class ReplayCommand : ICommand
{
    public string Name => "replay";
    public string Summary => "re-publish journaled messages of a run (a slice by --iteration/--type), optionally --into a new run";

    public async Task<int> RunAsync(string[] args, CancellationToken cancel)
    {
        var a = new Args(args, "--dry-run");
        var iteration = a.Get("--iteration") is null ? (int?)null : a.Int("--iteration", 0);
        var type = a.Get("--type");
        var into = a.Get("--into");
        var dryRun = a.Flag("--dry-run");
        var store = a.Get("--store");
        a.EnsureAllRead();
        if (a.Positional.Count != 1) throw new UsageException("usage: srlm replay RUN [--iteration N] [--type MESSAGE] [--into NEW_RUN] [--dry-run]");
        var runId = a.Positional[0];
        if (into is not null && (into == runId || into.Contains('/', StringComparison.Ordinal) || string.IsNullOrWhiteSpace(into)))
            throw new UsageException($"--into must be a new run id without '/', got '{into}'");

        await using var env = OpsEnvironment.Open(store);
        if (await env.Store.GetRunAsync(runId, cancel) is null) throw new UsageException($"run '{runId}' not found in {env.Store.Location}");
        var items = await JournalReplay.SelectAsync(env.Store, runId, iteration, type, cancel);
        if (items.Count == 0)
        {
            Console.Error.WriteLine($"srlm replay: no journaled messages of run {runId} match" +
                                    $"{(iteration is null ? "" : $" iteration {iteration}")}{(type is null ? "" : $" type {type}")}");
            return 1;
        }
        foreach (var g in items.GroupBy(i => i.MessageType.Name)) Console.WriteLine($"{g.Key}: {g.Count()}");
        if (dryRun) { Console.WriteLine($"dry run: {items.Count} messages would be published"); return 0; }

        await using var bus = await env.StartBusAsync("replay", cancel);
        if (into is not null)
        {
            var cutoff = items.Min(i => i.Entry.Time);
            var copied = await JournalReplay.CopyRunAsync(env.Store, env.Stores.Checkpoints, runId, into, cutoff, await JournalReplay.InputsAsync(env.Store, items, runId, cancel), cancel);
            Console.WriteLine($"run {into} created from {runId}: {copied} artifacts copied (those stored before {cutoff:u} and those the messages read)");
        }
        var published = await JournalReplay.PublishAsync(bus.Bus, items, runId, into, cancel);
        Console.WriteLine($"{published} messages published{(into is null ? "" : $" into run {into}")}");
        return 0;
    }
}
