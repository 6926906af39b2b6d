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

    /// <summary>The closing summary. On a terminal a table; when stdout is not a terminal (CI logs, `| tee`), where a
    /// table would be squeezed to 80 columns and every cell wrapped, plain text aligned at its full width.</summary>
    public static void PrintSummary(RunReport r, string dir)
    {
        if (Console.IsOutputRedirected)
        {
            Console.Out.Write(SummaryText(r, dir));
            Console.Out.Flush();
            return;
        }
        var (headers, rows) = SummaryCells(r);
        var table = new Table().Title($"{r.RunId}: {r.State}");
        foreach (var c in headers) table.AddColumn(c);
        foreach (var row in rows) table.AddRow(row.Select(Markup.Escape).ToArray());
        AnsiConsole.Write(table);
        if (r.FailureReason is not null) AnsiConsole.MarkupLineInterpolated($"[red]failed:[/] {r.FailureReason}");
        AnsiConsole.MarkupLineInterpolated($"{Footer(r, dir)}");
    }

    /// <summary>The summary as plain text: a title line, the table with every column as wide as its widest cell (one
    /// line per model, never wrapped), then the footer.</summary>
    public static string SummaryText(RunReport r, string dir)
    {
        var (headers, rows) = SummaryCells(r);
        var widths = headers.Select((h, i) => rows.Select(row => row[i].Length).Append(h.Length).Max()).ToArray();
        string Line(IReadOnlyList<string> cells) =>
            string.Join("  ", cells.Select((c, i) => i == 0 ? c.PadRight(widths[i]) : c.PadLeft(widths[i]))).TrimEnd();
        var sb = new System.Text.StringBuilder();
        sb.Append($"{r.RunId}: {r.State}\n");
        sb.Append(Line(headers)).Append('\n');
        sb.Append(string.Join("  ", widths.Select(w => new string('-', w)))).Append('\n');
        foreach (var row in rows) sb.Append(Line(row)).Append('\n');
        if (r.FailureReason is not null) sb.Append($"failed: {r.FailureReason}\n");
        sb.Append(Footer(r, dir)).Append('\n');
        return sb.ToString();
    }

    private static string Footer(RunReport r, string dir) =>
        $"leakage {r.Leakage} of {r.HeldOutItems} held-out items, duplicates {r.Duplicates}; report: {Path.Combine(dir, "report.md")}";

    /// <summary>Column headers and one row of cells per model; the control and win-rate columns only when the run measured them.</summary>
    private static (string[] Headers, List<string[]> Rows) SummaryCells(RunReport r)
    {
        static string F(double? v) => v?.ToString("0.000", CultureInfo.InvariantCulture) ?? "-";
        static string L(long? v) => v?.ToString(CultureInfo.InvariantCulture) ?? "-";
        var columns = new List<(string Header, Func<ModelEntry, string> Cell)>
        {
            ("model", e => e.Model), ("accuracy", e => F(e.Accuracy)),
        };
        if (r.Iterations.Any(e => e.ControlAccuracy is not null)) columns.Add(("control", e => F(e.ControlAccuracy)));
        if (r.Iterations.Any(e => e.WinRateVsParent is not null)) columns.Add(("win vs parent", e => F(e.WinRateVsParent)));
        if (r.Baseline is not (null or Srlm.Contracts.Spec.EvaluationSpec.BaselineParent) && r.Iterations.Any(e => e.WinRateVsBaseline is not null))
            columns.Add(($"win vs {r.Baseline}", e => F(e.WinRateVsBaseline)));
        columns.AddRange(new (string, Func<ModelEntry, string>)[]
        {
            ("judge acc", e => F(e.JudgePairwiseAccuracy)), ("prompts", e => L(e.Prompts)), ("candidates", e => L(e.Candidates)),
            ("judgments", e => L(e.Judgments)), ("unparseable", e => L(e.Unparseable)), ("pairs", e => L(e.Pairs)), ("ties", e => L(e.DroppedTies)),
            ("other", e => L(e.DroppedOther)), ("too long", e => L(e.TooLong)),
            ("resp tok", e => e.MeanResponseTokens?.ToString("0.0", CultureInfo.InvariantCulture) ?? "-"), ("DPO acc", e => F(e.DpoRewardsAccuracies)),
            ("s", e => e.Seconds?.ToString("0", CultureInfo.InvariantCulture) ?? "-"),
        });
        return (columns.Select(c => c.Header).ToArray(), r.Iterations.Select(e => columns.Select(c => c.Cell(e)).ToArray()).ToList());
    }
}
