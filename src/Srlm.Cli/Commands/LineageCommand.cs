namespace Srlm.Cli.Commands;

/// <summary>`srlm lineage CHECKPOINT [--json]`.</summary>
public sealed class LineageCommand : ICommand
{
    public string Name => "lineage";
    public string Summary => "walk from a checkpoint back through pairs, judgements, candidates, prompts and parents to the seed data";

    public async Task<int> RunAsync(string[] args, CancellationToken cancel)
    {
        var a = new Args(args, "--json");
        var json = a.Flag("--json");
        var store = a.Get("--store");
        a.EnsureAllRead();
        if (a.Positional.Count != 1) throw new UsageException("usage: srlm lineage CHECKPOINT [--json]");
        await using var env = OpsEnvironment.Open(store);
        IReadOnlyList<LineageNode> nodes;
        try { nodes = await LineageWalker.WalkAsync(env.Store, a.Positional[0], cancel); }
        catch (KeyNotFoundException e) { throw new UsageException(e.Message); }
        Console.WriteLine(json
            ? JsonSerializer.Serialize(nodes, new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, WriteIndented = true })
            : LineageWalker.Format(nodes));
        return 0;
    }
}
