namespace Srlm.Cli.Commands;

/// <summary>`srlm runs [--json]`: every run in the store, newest first.</summary>
public sealed class RunsCommand : ICommand
{
    public string Name => "runs";
    public string Summary => "list runs in the store (SRLM_STORE): id, state, created, last progress";

    public async Task<int> RunAsync(string[] args, CancellationToken cancel)
    {
        var a = new Args(args, "--json");
        var json = a.Flag("--json");
        var store = a.Get("--store");
        a.EnsureAllRead();
        if (a.Positional.Count > 0) throw new UsageException($"unexpected argument '{a.Positional[0]}' (usage: srlm runs [--json])");
        await using var env = OpsEnvironment.Open(store);
        var runs = await env.Store.ListRunsAsync(cancel);
        if (json)
        {
            Console.WriteLine(JsonSerializer.Serialize(runs.Select(r => new
            {
                run_id = r.Id, state = r.State.ToString().ToLowerInvariant(), created_at = r.CreatedAt, last_progress_at = r.LastProgressAt, failure_reason = r.FailureReason,
            }), new JsonSerializerOptions { WriteIndented = true }));
            return 0;
        }
        if (runs.Count == 0) { Console.WriteLine("no runs"); return 0; }
        Console.WriteLine($"{"run",-40} {"state",-10} {"created (UTC)",-20} {"last progress (UTC)",-20} reason");
        foreach (var r in runs)
            Console.WriteLine($"{r.Id,-40} {r.State.ToString().ToLowerInvariant(),-10} {r.CreatedAt:yyyy-MM-dd HH:mm:ss}  {r.LastProgressAt:yyyy-MM-dd HH:mm:ss}  {r.FailureReason}");
        return 0;
    }
}
