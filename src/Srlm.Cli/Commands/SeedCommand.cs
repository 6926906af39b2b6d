namespace Srlm.Cli.Commands;

/// <summary>`srlm seed --task NAME --out DIR`: writes a task family's seed data and evaluation splits.</summary>
public sealed class SeedCommand : ICommand
{
    public string Name => "seed";

    public string Summary => "write a task family's seed data (IFT, EFT, prompts, dev, held-out test, judge template); seed check FILE --kind ift|eft|prompts|held-out|judge-pairs";

    /// <summary>Problems `seed check` prints before it only counts the rest.</summary>
    public const int ShownProblems = 20;

    public Task<int> RunAsync(string[] args, CancellationToken cancel)
    {
        if (args.Length > 0 && args[0] == "check") return Task.FromResult(Check(args[1..]));
        var a = new Args(args, "--list", "--force");
        if (a.Flag("--list"))
        {
            a.EnsureAllRead();
            if (a.Positional.Count > 0) throw new UsageException($"seed --list takes no arguments, got '{string.Join(" ", a.Positional)}'");
            foreach (var f in TaskFamilies.All) Console.WriteLine($"{f.Name,-10} {f.Summary}");
            return Task.FromResult(0);
        }
        var name = a.Required("--task");
        var family = TaskFamilies.Find(name)
            ?? throw new UsageException($"unknown task '{name}' (known: {string.Join(", ", TaskFamilies.All.Select(f => f.Name))})");
        // The letters family's difficulty dial: --letters-set MIN-MAX offered letters, --letters-length MIN-MAX.
        var setRange = a.Get("--letters-set");
        var lengthRange = a.Get("--letters-length");
        if (setRange is not null || lengthRange is not null)
        {
            if (family is not LettersTask) throw new UsageException("--letters-set and --letters-length apply to --task letters only");
            var def = new LettersOptions();
            var (s0, s1) = Range("--letters-set", setRange, def.SetSizeMin, def.SetSizeMax);
            var (l0, l1) = Range("--letters-length", lengthRange, def.LengthMin, def.LengthMax);
            try { family = new LettersTask(new LettersOptions { SetSizeMin = s0, SetSizeMax = s1, LengthMin = l0, LengthMax = l1 }); }
            catch (ArgumentException e) { throw new UsageException(e.Message); }
        }
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

    /// <summary>`srlm seed check FILE --kind KIND [--max-score N]`: reads FILE with the reader the run uses for that
    /// kind and prints the valid lines, the formats found and the first problems (stdout); exit code 0 when every line
    /// is valid, 1 otherwise.</summary>
    private static int Check(string[] args)
    {
        var a = new Args(args);
        var kindText = a.Required("--kind");
        var maxScore = a.Int("--max-score", SeedReader.DefaultMaxScore);
        a.EnsureAllRead();
        if (a.Positional.Count != 1) throw new UsageException("usage: srlm seed check FILE --kind ift|eft|prompts|held-out|judge-pairs [--max-score N]");
        var file = a.Positional[0];
        SeedKind kind = kindText switch
        {
            "ift" => SeedKind.Ift, "eft" => SeedKind.Eft, "prompts" => SeedKind.Prompts, "held-out" => SeedKind.HeldOut, "judge-pairs" => SeedKind.JudgePairs,
            _ => throw new UsageException($"--kind {kindText}: expected ift, eft, prompts, held-out or judge-pairs"),
        };
        if (maxScore < 1) throw new UsageException($"--max-score must be at least 1, got {maxScore}");
        if (Directory.Exists(file)) throw new UsageException($"{file} is a folder; give a JSONL file");
        if (!File.Exists(file)) throw new UsageException($"{file}: no such file");
        byte[] bytes;
        try { bytes = JsonlLines.ReadFile(file); }
        catch (SeedDataException e) { throw new UsageException(e.Message); }
        var (valid, formats, problems) = SeedReader.Check(kind, bytes, file, maxScore);
        var found = formats.Count == 0 ? "none" : string.Join(", ", formats.Select(f => $"{f.Key} {f.Value}"));
        Console.WriteLine($"{file}: {valid} valid lines as {kindText}; formats: {found}");
        foreach (var p in problems.Take(ShownProblems)) Console.WriteLine(p);
        if (problems.Count > ShownProblems) Console.WriteLine($"... and {problems.Count - ShownProblems} more problems");
        Console.WriteLine(problems.Count > 0 ? $"{problems.Count} problems: a run refuses this file"
            : valid == 0 ? $"{file}: no records: a run refuses this file" : "ok");
        return problems.Count == 0 && valid > 0 ? 0 : 1;
    }

    private static (int Min, int Max) Range(string option, string? text, int min, int max)
    {
        if (text is null) return (min, max);
        var parts = text.Split('-');
        if (parts.Length is 1 or 2 && parts.All(p => int.TryParse(p, out _)))
            return (int.Parse(parts[0], System.Globalization.CultureInfo.InvariantCulture), int.Parse(parts[^1], System.Globalization.CultureInfo.InvariantCulture));
        throw new UsageException($"{option}: expected N or MIN-MAX, got '{text}'");
    }
}
