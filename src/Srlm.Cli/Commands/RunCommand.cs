using System.Globalization;
using Spectre.Console;
using Srlm.Cli.Pipeline;
using Srlm.Storage;

namespace Srlm.Cli.Commands;

/// <summary>`srlm run SPEC [--out DIR] [--quiet]` / `srlm run --resume DIR`: the whole self-rewarding loop
/// in one process (in-memory bus, SQLite under DIR), progress per stage, then report.json/report.md/PNGs.</summary>
public sealed class RunCommand : ICommand
{
    public string Name => "run";

    public string Summary => "run a spec end to end in this process (in-memory bus, SQLite under --out DIR); --resume DIR continues one";

    public async Task<int> RunAsync(string[] args, CancellationToken cancel)
    {
        var a = new Args(args, "--quiet");
        var resume = a.Get("--resume");
        var outDir = a.Get("--out");
        bool quiet = a.Flag("--quiet");
        a.EnsureAllRead();
        RunPipelineOptions options;
        if (resume is not null)
        {
            if (a.Positional.Count > 0 || outDir is not null) throw new UsageException("--resume DIR takes no SPEC and no --out");
            options = new RunPipelineOptions { Directory = resume, Resume = true, Quiet = quiet };
        }
        else
        {
            if (a.Positional.Count != 1) throw new UsageException("usage: srlm run SPEC [--out DIR] [--quiet] | srlm run --resume DIR");
            var spec = a.Positional[0];
            if (!File.Exists(spec)) throw new UsageException($"spec file not found: {spec}");
            outDir ??= Path.Combine("runs", $"{Path.GetFileNameWithoutExtension(spec)}-{DateTime.UtcNow:yyyyMMdd-HHmmss}");
            options = new RunPipelineOptions { SpecPath = spec, Directory = outDir, Quiet = quiet };
        }

        var result = await RunPipeline.ExecuteAsync(options, Console.Out, cancel);
        if (result.Interrupted)
        {
            Console.Error.WriteLine($"srlm run: interrupted; continue with: srlm run --resume {result.Directory}");
            return 130;
        }
        if (result.Report is { } report) PrintSummary(report, result.Directory);
        return result.State == RunState.Completed ? 0 : 1;
    }

    public static void PrintSummary(RunReport r, string dir)
    {
        static string F(double? v) => v?.ToString("0.000", CultureInfo.InvariantCulture) ?? "-";
        static string L(long? v) => v?.ToString(CultureInfo.InvariantCulture) ?? "-";
        var table = new Table().Title($"{r.RunId}: {r.State}");
        foreach (var c in new[] { "model", "accuracy", "judge acc", "prompts", "candidates", "judgments", "unparseable", "pairs", "ties", "other", "too long", "resp tok", "DPO acc", "s" })
            table.AddColumn(c);
        foreach (var e in r.Iterations)
            table.AddRow(e.Model, F(e.Accuracy), F(e.JudgePairwiseAccuracy), L(e.Prompts), L(e.Candidates), L(e.Judgments), L(e.Unparseable), L(e.Pairs),
                L(e.DroppedTies), L(e.DroppedOther), L(e.TooLong), e.MeanResponseTokens?.ToString("0.0", CultureInfo.InvariantCulture) ?? "-", F(e.DpoRewardsAccuracies),
                e.Seconds?.ToString("0", CultureInfo.InvariantCulture) ?? "-");
        AnsiConsole.Write(table);
        if (r.FailureReason is not null) AnsiConsole.MarkupLineInterpolated($"[red]failed:[/] {r.FailureReason}");
        AnsiConsole.MarkupLineInterpolated($"leakage {r.Leakage} of {r.HeldOutItems} held-out items, duplicates {r.Duplicates}; report: {Path.Combine(dir, "report.md")}");
    }
}
