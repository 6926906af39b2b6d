using Srlm.Tasks;

namespace Srlm.Cli.Commands;

/// <summary>`srlm seed --task NAME --out DIR`: writes a task family's seed data and evaluation splits.</summary>
public sealed class SeedCommand : ICommand
{
    public string Name => "seed";

    public string Summary => "write a task family's seed data (IFT, EFT, prompts, dev, held-out test, judge template)";

    public Task<int> RunAsync(string[] args, CancellationToken cancel)
    {
        var a = new Args(args, "--list", "--force");
        if (a.Flag("--list"))
        {
            a.EnsureAllRead();
            foreach (var f in TaskFamilies.All) Console.WriteLine($"{f.Name,-10} {f.Summary}");
            return Task.FromResult(0);
        }
        var name = a.Required("--task");
        var family = TaskFamilies.Find(name)
            ?? throw new UsageException($"unknown task '{name}' (known: {string.Join(", ", TaskFamilies.All.Select(f => f.Name))})");
        var outDir = a.Required("--out");
        var seed = a.Int("--seed", 1);
        var d = family.DefaultSizes;
        var sizes = d with
        {
            Ift = a.Int("--ift", d.Ift),
            Eft = a.Int("--eft", d.Eft),
            Prompts = a.Int("--prompts", d.Prompts),
            Dev = a.Int("--dev", d.Dev),
            Test = a.Int("--test", d.Test),
            JudgeEval = a.Int("--judge-eval", d.JudgeEval),
        };
        bool force = a.Flag("--force");
        a.EnsureAllRead();
        if (a.Positional.Count > 0) throw new UsageException($"unexpected argument '{a.Positional[0]}'");
        if (Directory.Exists(outDir) && Directory.EnumerateFileSystemEntries(outDir).Any() && !force)
            throw new UsageException($"{outDir} is not empty (pass --force to overwrite the seed files in it)");

        SeedSet set;
        try { set = SeedBuilder.Build(family, seed, sizes); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
        catch (InvalidOperationException e) { throw new UsageException(e.Message); }
        var files = SeedBuilder.Write(set, outDir);
        foreach (var (file, (records, sha)) in files.OrderBy(f => f.Key, StringComparer.Ordinal))
            Console.WriteLine($"{Path.Combine(outDir, file),-48} {records,6} records  sha256 {sha[..12]}");
        Console.WriteLine($"task {family.Name}, seed {seed}: held-out test split = test.jsonl + test_judge.jsonl (no stage may read them)");
        return Task.FromResult(0);
    }
}
