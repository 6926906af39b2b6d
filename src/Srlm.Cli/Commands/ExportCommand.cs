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
        if (outFile is not null)
        {
            if (Directory.Exists(outFile)) throw new UsageException($"--out {outFile} is a folder; give a file path");
            var folder = Path.GetDirectoryName(Path.GetFullPath(outFile))!;
            if (!Directory.Exists(folder)) throw new UsageException($"--out {outFile}: folder {folder} does not exist");
        }
        await using var env = OpsEnvironment.Open(store);
        if (await env.Store.GetRunAsync(runId, cancel) is null) throw new UsageException($"run '{runId}' not found in {env.Store.Location}");
        if (iteration is { } t)
        {
            var stored = (await env.Store.GetRunStatusAsync(runId, cancel)).Select(s => s.Iteration).Where(i => i >= 1).Order().ToList();
            if (!stored.Contains(t))
                throw new UsageException($"--iteration {t}: run {runId} has {(stored.Count == 0 ? "no iteration yet" : $"iterations {string.Join(", ", stored)}")}");
        }
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
