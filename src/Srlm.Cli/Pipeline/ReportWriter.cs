namespace Srlm.Cli.Pipeline;

/// <summary>Writes report.json, report.md and the PNG plots of a run into a folder.</summary>
public static class ReportWriter
{
    public static IReadOnlyList<string> Write(RunReport report, string dir)
    {
        Directory.CreateDirectory(dir);
        var files = new List<string>();
        var json = Path.Combine(dir, "report.json");
        File.WriteAllText(json, JsonSerializer.Serialize(report, RunReportBuilder.Json));
        files.Add(json);
        var plots = Plots(report, dir);
        files.AddRange(plots);
        var md = Path.Combine(dir, "report.md");
        File.WriteAllText(md, Markdown(report, plots.Select(Path.GetFileName).OfType<string>().ToList()));
        files.Add(md);
        return files;
    }

    private static string F(double? v, string format = "0.000") => v is { } d ? d.ToString(format, CultureInfo.InvariantCulture) : "-";

    private static string F(long? v) => v?.ToString(CultureInfo.InvariantCulture) ?? "-";

    public static string Markdown(RunReport r, IReadOnlyList<string> plots)
    {
        var sb = new StringBuilder();
        sb.AppendLine($"# Run {r.RunId} ({r.Name})").AppendLine();
        sb.AppendLine($"State: **{r.State}**{(r.FailureReason is null ? "" : $" ({r.FailureReason})")}. Seed {r.Seed}, prompts from `{r.PromptSource}`, N = {r.N} candidates, K = {r.K} judge samples.");
        sb.AppendLine($"Held-out items: {r.HeldOutItems}, leakage: **{r.Leakage}**, duplicates: {r.Duplicates}, wall time: {F(r.Seconds, "0")} s.").AppendLine();
        sb.AppendLine("| model | accuracy | control | win vs parent | win vs baseline | judge pairwise | spearman | kendall | prompts | candidates | truncated | judgments | unparseable | pairs | ties | other | cut | too long | resp tok | chosen tok | rejected tok | DPO acc | s |");
        sb.AppendLine("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        foreach (var e in r.Iterations)
            sb.AppendLine($"| {e.Model} | {F(e.Accuracy)} | {F(e.ControlAccuracy)} | {F(e.WinRateVsParent)} | {F(e.WinRateVsBaseline)} | {F(e.JudgePairwiseAccuracy)} | {F(e.JudgeSpearman)} | {F(e.JudgeKendallTau)} | {F(e.Prompts)} | {F(e.Candidates)} | {F(e.Truncated)} | {F(e.Judgments)} | {F(e.Unparseable)} | {F(e.Pairs)} | {F(e.DroppedTies)} | {F(e.DroppedOther)} | {F(e.DroppedTruncated)} | {F(e.TooLong)} | {F(e.MeanResponseTokens, "0.0")} | {F(e.MeanChosenTokens, "0.0")} | {F(e.MeanRejectedTokens, "0.0")} | {F(e.DpoRewardsAccuracies)} | {F(e.Seconds, "0")} |");
        sb.AppendLine();
        sb.AppendLine("Row M_t: held-out metrics of M_t, and the prompts, candidates, judgements and pairs M_t produced in iteration t (which trained M_{t+1}); the last model has no data of its own.");
        sb.AppendLine("`truncated`: candidates cut by the token limit (finish reason `length`); `cut`: prompts dropped because too few of their candidates were uncut (spec.pairs.truncated).");
        sb.AppendLine("`win vs parent`: with evaluator `judge_win_rate`, M_t's held-out answers against its parent's, judged by the fixed judge (ties count half). `-` = not measured (no evaluation section, or no control run).");
        sb.AppendLine($"`win vs baseline`: the same against the run's baseline ({(r.Baseline is null ? "none: no win-rate evaluation" : $"`{r.Baseline}`, judged {r.JudgeMode}")}); the baseline itself has none.").AppendLine();
        foreach (var p in plots) sb.AppendLine($"![{p}]({p})");
        return sb.ToString();
    }

    private static List<string> Plots(RunReport r, string dir)
    {
        var files = new List<string>();
        double[] xs = r.Iterations.Select(e => (double)e.Iteration).ToArray();

        var acc = new ScottPlot.Plot();
        void Series(Func<ModelEntry, double?> f, string label)
        {
            var pts = r.Iterations.Where(e => f(e) is not null).ToList();
            if (pts.Count == 0) return;
            var s = acc.Add.Scatter(pts.Select(e => (double)e.Iteration).ToArray(), pts.Select(e => f(e)!.Value).ToArray());
            s.LegendText = label;
        }
        Series(e => e.Accuracy, "accuracy");
        Series(e => e.ControlAccuracy, "control accuracy");
        Series(e => e.JudgePairwiseAccuracy, "judge pairwise accuracy");
        Series(e => e.WinRateVsParent, "win rate vs parent");
        if (r.Baseline is not (null or "parent")) Series(e => e.WinRateVsBaseline, $"win rate vs {r.Baseline}");
        acc.Title("Held-out accuracy per model"); acc.XLabel("model"); acc.YLabel("fraction");
        // One tick per model, named as the report names it (C_t beside M_t where a control arm ran; C1 is M1).
        bool control = r.Iterations.Any(e => e.ControlAccuracy is not null || e.ControlWinRateVsBaseline is not null);
        acc.Axes.Bottom.SetTicks(xs, r.Iterations.Select(e => control && e.Iteration > 1 ? $"{e.Model} / C{e.Iteration}" : e.Model).ToArray());
        if (xs.Length > 0) acc.Axes.SetLimitsX(xs.Min() - 0.5, xs.Max() + 0.5);
        // The legend sits in its own panel right of the data area, never over a point.
        acc.ShowLegend(ScottPlot.Edge.Right);
        files.Add(Save(acc, dir, "accuracy.png"));

        var len = new ScottPlot.Plot();
        void LenSeries(Func<ModelEntry, double?> f, string label)
        {
            var pts = r.Iterations.Where(e => f(e) is not null).ToList();
            if (pts.Count == 0) return;
            len.Add.Scatter(pts.Select(e => (double)e.Iteration).ToArray(), pts.Select(e => f(e)!.Value).ToArray()).LegendText = label;
        }
        LenSeries(e => e.MeanResponseTokens, "all candidates");
        LenSeries(e => e.MeanChosenTokens, "chosen");
        LenSeries(e => e.MeanRejectedTokens, "rejected");
        len.Title("Response length per iteration"); len.XLabel("iteration t"); len.YLabel("mean tokens");
        len.ShowLegend();
        files.Add(Save(len, dir, "length.png"));

        foreach (var (iteration, hist) in r.ScoreHistograms)
        {
            var h = new ScottPlot.Plot();
            var bars = h.Add.Bars(hist.Select(v => (double)v).ToArray());
            h.Title($"Judge scores, iteration {iteration} (last bar: unparseable)"); h.XLabel("score"); h.YLabel("samples");
            files.Add(Save(h, dir, $"judge_scores_i{iteration}.png"));
        }

        var margin = new ScottPlot.Plot();
        bool any = false;
        foreach (var (iteration, points) in r.DpoMargins)
        {
            if (points.Length == 0) continue;
            margin.Add.Scatter(points.Select(p => p[0]).ToArray(), points.Select(p => p[1]).ToArray()).LegendText = $"iteration {iteration}";
            any = true;
        }
        if (any)
        {
            margin.Title("DPO reward margin"); margin.XLabel("step"); margin.YLabel("rewards/margins");
            margin.ShowLegend();
            files.Add(Save(margin, dir, "dpo_margin.png"));
        }
        return files;
    }

    private static string Save(ScottPlot.Plot plot, string dir, string name)
    {
        var path = Path.Combine(dir, name);
        plot.SavePng(path, 800, 500);
        return path;
    }
}
