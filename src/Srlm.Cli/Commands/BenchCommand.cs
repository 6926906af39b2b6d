using Srlm.Bench;

namespace Srlm.Cli.Commands;

/// <summary>srlm bench NAME [--json FILE] [options]: runs one benchmark of bench/Srlm.Bench (an IBenchmark found by
/// name) and prints its JSON measurements; --json also writes them to FILE.</summary>
public sealed class BenchCommand : ICommand
{
    public string Name => "bench";
    public string Summary => $"run a benchmark ({string.Join(", ", Benchmarks.All.Select(b => b.Name))}) and print JSON; --json FILE saves it";

    public async Task<int> RunAsync(string[] args, CancellationToken cancel)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help")
        {
            Console.WriteLine("usage: srlm bench <name> [--json FILE] [options]\n");
            foreach (var b in Benchmarks.All)
                Console.WriteLine($"  {b.Name,-10} {b.Summary}{(b.Options.Count > 0 ? $" (options: {string.Join(" ", b.Options)})" : "")}");
            return args.Length == 0 ? 2 : 0;
        }
        var bench = Benchmarks.Find(args[0]) ?? throw new UsageException($"unknown benchmark '{args[0]}' (known: {string.Join(", ", Benchmarks.All.Select(b => b.Name))})");
        var flags = bench.Options.Where(o => o.StartsWith("--quick", StringComparison.Ordinal)).ToArray();
        var a = new Args(args[1..], flags);
        var json = a.Get("--json");
        var options = new Dictionary<string, string?>(StringComparer.Ordinal);
        foreach (var o in bench.Options)
        {
            if (flags.Contains(o)) { if (a.Flag(o)) options[o] = "true"; }
            else if (a.Get(o) is { } v) options[o] = v;
        }
        a.EnsureAllRead();
        if (a.Positional.Count > 0) throw new UsageException($"unexpected argument '{a.Positional[0]}'");

        System.Text.Json.Nodes.JsonObject result;
        try { result = await bench.RunAsync(new BenchmarkContext(options, Console.Error), cancel); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
        var text = result.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
        Console.Out.WriteLine(text);
        if (json is not null)
        {
            var dir = Path.GetDirectoryName(Path.GetFullPath(json));
            if (dir is not null) Directory.CreateDirectory(dir);
            await File.WriteAllTextAsync(json, text + "\n", cancel);
        }
        return 0;
    }
}
