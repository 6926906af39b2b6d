using Srlm.Bench.Toy;

namespace Srlm.Cli.Commands;

/// <summary>`srlm toy --seed-dir samples/tiny/seed --out DIR`: the library-level toy experiment (SFT, pass@1,
/// pass@N, self-judging accuracy on dev). Measures whether self-rewarding can work at this scale.</summary>
public sealed class ToyCommand : ICommand
{
    public string Name => "toy";

    public string Summary => "SFT a tiny model on the letters task and measure pass@1, pass@4 and its judge's accuracy (dev only)";

    public Task<int> RunAsync(string[] args, CancellationToken cancel)
    {
        var a = new Args(args);
        var d = new ToyOptions { SeedDir = "", OutDir = "" };
        var o = d with
        {
            SeedDir = a.Get("--seed-dir") ?? "samples/tiny/seed",
            OutDir = a.Required("--out"),
            Hidden = a.Int("--hidden", d.Hidden),
            Layers = a.Int("--layers", d.Layers),
            Heads = a.Int("--heads", d.Heads),
            SftSteps = a.Int("--steps", d.SftSteps),
            BatchSize = a.Int("--batch", d.BatchSize),
            LearningRate = a.Double("--lr", d.LearningRate),
            DevPrompts = a.Int("--dev", d.DevPrompts),
            SampledPrompts = a.Int("--sampled", d.SampledPrompts),
            JudgedPrompts = a.Int("--judged", d.JudgedPrompts),
            JudgeEvalRecords = a.Int("--judge-eval", d.JudgeEvalRecords),
            Seed = a.Int("--seed", (int)d.Seed),
            BpeVocab = a.Int("--bpe", 0),
        };
        a.EnsureAllRead();
        if (!File.Exists(Path.Combine(o.SeedDir, "ift.jsonl"))) throw new UsageException($"{o.SeedDir}: no ift.jsonl (write one with srlm seed)");
        Srlm.Model.TorchRuntime.Initialise(); // SRLM_THREADS, checked by CommandLine before the verb runs
        ToyExperiment.Run(o, Console.Out, cancel);
        return Task.FromResult(0);
    }
}
