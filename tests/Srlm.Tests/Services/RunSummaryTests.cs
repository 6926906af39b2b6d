namespace Srlm.Tests.Services;

/// <summary>What a person reads at the end of `srlm run`: the closing summary when stdout is not a terminal, and the plots.</summary>
public sealed class RunSummaryTests
{
    private static RunReport Report() => new()
    {
        RunId = "smollm2-20261204-180000-abcd", Name = "smollm2", State = "completed", Seed = 1, PromptSource = "self_instruct", N = 4, K = 3,
        Baseline = "m1", JudgeMode = "pairwise", Leakage = 0, HeldOutItems = 64, Duplicates = 2,
        ScoreHistograms = new Dictionary<string, long[]>(), DpoMargins = new Dictionary<string, double[][]>(),
        Iterations =
        [
            new ModelEntry { Model = "M1", Iteration = 1, Checkpoint = "c/m1", CheckpointId = "r/m1", Accuracy = 0.25, ControlAccuracy = 0.25, Prompts = 64, Candidates = 256, Judgments = 768, Unparseable = 12, Pairs = 40, DroppedTies = 20, DroppedOther = 4, TooLong = 0, MeanResponseTokens = 87.25, DpoRewardsAccuracies = 0.5, Seconds = 1234 },
            new ModelEntry { Model = "M2", Iteration = 2, Checkpoint = "c/m2", CheckpointId = "r/m2", Accuracy = 0.375, ControlAccuracy = 0.3, WinRateVsParent = 0.61, WinRateVsBaseline = 0.61, Prompts = 64, Candidates = 256, Judgments = 768, Unparseable = 3, Pairs = 51, DroppedTies = 10, DroppedOther = 3, TooLong = 0, MeanResponseTokens = 95.5, DpoRewardsAccuracies = 0.75, Seconds = 1300 },
            new ModelEntry { Model = "M3", Iteration = 3, Checkpoint = "c/m3", CheckpointId = "r/m3", Accuracy = 0.5, ControlAccuracy = 0.3125, WinRateVsBaseline = 0.7 },
        ],
    };

    [Fact]
    public void The_plain_summary_keeps_each_model_on_one_aligned_line_at_full_width()
    {
        var lines = RunCommand.SummaryText(Report(), "runs/x").Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("smollm2-20261204-180000-abcd: completed", lines[0]);
        var header = lines[1];
        Assert.StartsWith("model  accuracy  control  win vs parent  win vs m1  judge acc  prompts", header);
        Assert.True(header.Length > 80, "the table is printed at its full width, not squeezed into 80 columns");
        Assert.Matches("^-+( +-+)+$", lines[2]);
        // One line per model holding every cell, right-aligned under its header.
        var m2 = lines.Single(l => l.StartsWith("M2 ", StringComparison.Ordinal));
        Assert.Matches(@"^M2 +0\.375 +0\.300 +0\.610 +0\.610 +- +64 +256 +768 +3 +51 +10 +3 +0 +95\.5 +0\.750 +1300$", m2);
        var m3 = lines.Single(l => l.StartsWith("M3 ", StringComparison.Ordinal));
        Assert.Matches(@"^M3 +0\.500 +0\.313 +- +0\.700 +-( +-)+$", m3);
        Assert.Equal(header.IndexOf("accuracy", StringComparison.Ordinal) + "accuracy".Length, m2.IndexOf("0.375", StringComparison.Ordinal) + "0.375".Length);
        Assert.Equal(header.IndexOf(" s", header.Length - 3, StringComparison.Ordinal) + 2, m2.Length);
        Assert.Equal("leakage 0 of 64 held-out items, duplicates 2; report: runs/x/report.md", lines[^1]);
    }

    [Fact]
    public void Columns_a_run_did_not_measure_are_left_out()
    {
        var r = Report() with
        {
            Baseline = null, JudgeMode = null,
            Iterations = Report().Iterations.Select(e => e with { ControlAccuracy = null, WinRateVsParent = null, WinRateVsBaseline = null }).ToList(),
        };
        var header = RunCommand.SummaryText(r, "d").Split('\n')[1];
        Assert.StartsWith("model  accuracy  judge acc  prompts", header);
    }

    [Fact]
    public void The_accuracy_plot_is_written_with_the_report()
    {
        var dir = Path.Combine(Path.GetTempPath(), $"srlm-summary-{Guid.NewGuid():N}");
        try
        {
            var files = ReportWriter.Write(Report(), dir);
            var png = Path.Combine(dir, "accuracy.png");
            Assert.Contains(png, files);
            Assert.True(new FileInfo(png).Length > 1000);
            Assert.Contains("| win vs parent | win vs baseline |", File.ReadAllText(Path.Combine(dir, "report.md")));
            Assert.Contains("`m1`, judged pairwise", File.ReadAllText(Path.Combine(dir, "report.md")));
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true); }
    }
}
