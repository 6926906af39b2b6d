using Srlm.Messaging.Operations;

namespace Srlm.Cli.Commands;

/// <summary>`srlm export pairs RUN [--iteration N] [--out FILE]`: JSONL with prompt, chosen, rejected and scores.</summary>
public sealed class ExportCommand : ICommand
{
    public string Name => "export";
    public string Summary => "export pairs RUN [--iteration N] [--out FILE]: preference pairs as JSONL (prompt, chosen, rejected, scores)";

    public async Task<int> RunAsync(string[] args, CancellationToken cancel)
    {
        var a = new Args(args);
        var iteration = a.Get("--iteration") is null ? (int?)null : a.Int("--iteration", 0);
        var outFile = a.Get("--out");
        var store = a.Get("--store");
        a.EnsureAllRead();
        if (a.Positional.Count != 2 || a.Positional[0] != "pairs") throw new UsageException("usage: srlm export pairs RUN [--iteration N] [--out FILE]");
        var runId = a.Positional[1];
        await using var env = OpsEnvironment.Open(store);
        if (await env.Store.GetRunAsync(runId, cancel) is null) throw new UsageException($"run '{runId}' not found in {env.Store.Location}");
        int count;
        if (outFile is null)
        {
            count = await PairExport.WriteJsonlAsync(env.Store, runId, iteration, Console.Out, cancel);
            await Console.Out.FlushAsync(cancel);
        }
        else
        {
            var tmp = outFile + ".tmp";
            await using (var w = new StreamWriter(tmp, append: false, new System.Text.UTF8Encoding(false)))
                count = await PairExport.WriteJsonlAsync(env.Store, runId, iteration, w, cancel);
            File.Move(tmp, outFile, overwrite: true);
        }
        Console.Error.WriteLine($"{count} pairs exported{(outFile is null ? "" : $" to {outFile}")}");
        return 0;
    }
}
