using Srlm.Tests.Seeds;
namespace Srlm.Tests.Cli;

/// <summary>`srlm seed check FILE --kind KIND`: the valid lines, the formats found and the first problems, read by the
/// reader the run uses; exit 0 only when a run would accept the file.</summary>
[Collection("console")]
public sealed class SeedCheckCommandTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("srlm-seedcheck-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_folder, true); } catch (IOException) { }
    }

    private string Write(string name, params string[] lines)
    {
        var path = Path.Combine(_folder, name);
        File.WriteAllText(path, string.Join("\n", lines) + "\n");
        return path;
    }

    [Fact]
    public async Task A_good_file_prints_its_count_and_formats_and_exits_0()
    {
        var f = Write("ift.jsonl",
            """{"instruction":"Say hi","answer":"Hi!"}""",
            """{"instruction":"T","input":"B","output":"H","id":3}""",
            """{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}""");
        var (code, stdout, stderr) = await CliConsole.RunAsync("seed", "check", f, "--kind", "ift");
        Assert.Equal(0, code);
        Assert.Equal($"{f}: 3 valid lines as ift; formats: alpaca 1, instruction/answer 1, messages 1\nok\n", stdout.ReplaceLineEndings("\n"));
        Assert.Equal("", stderr);
    }

    [Fact]
    public async Task A_bad_file_prints_each_problem_as_file_line_problem_and_exits_1()
    {
        var f = Write("eft.jsonl",
            """{"instruction":"i","answer":"a","judgement":"Good.\nScore: 3","score":4}""",
            """{"instruction":"i","answer":"a","judgement":"Fine.\nScore: 4"}""",
            """{"instruction":"i","answer":"a","judgement":"Fine.","input":"x","score":2}""");
        var (code, stdout, _) = await CliConsole.RunAsync("seed", "check", f, "--kind", "eft");
        Assert.Equal(1, code);
        Assert.Equal(string.Join("\n",
            $"{f}: 1 valid lines as eft; formats: eft 1",
            $"{f}:1: the judgement's last `Score:` gives 3 but field \"score\" = 4",
            $"{f}:3: field \"input\" would be dropped: the eft format has no place for it",
            "2 problems: a run refuses this file") + "\n", stdout.ReplaceLineEndings("\n"));
    }

    [Fact]
    public async Task Only_the_first_problems_are_printed()
    {
        var f = Write("p.jsonl", Enumerable.Range(0, 25).Select(_ => """{"prompt":"x"}""").ToArray());
        var (code, stdout, _) = await CliConsole.RunAsync("seed", "check", f, "--kind", "held-out");
        Assert.Equal(1, code);
        var lines = stdout.ReplaceLineEndings("\n").TrimEnd('\n').Split('\n');
        Assert.Equal($"{f}: 0 valid lines as held-out; formats: none", lines[0]);
        Assert.Equal($"{f}:1: missing field \"instruction\"", lines[1]);
        Assert.Equal("... and 30 more problems", lines[^2]);
        Assert.Equal("50 problems: a run refuses this file", lines[^1]);
        Assert.Equal(23, lines.Length);
    }

    [Fact]
    public async Task Srlm_train_refuses_a_line_that_would_lose_content_in_one_line_before_training()
    {
        var f = Write("ift.jsonl", """{"instruction":"ok","answer":"ok"}""", """{"instruction":"Sum.","input":"2 3","answer":"5"}""");
        var (code, _, err) = await CliConsole.RunAsync("train", "sft", "--parent", _folder, "--state", Path.Combine(_folder, "st"), "--out", Path.Combine(_folder, "out"), "--ift", f);
        Assert.Equal((2, $"srlm train: {f}:2: field \"input\" would be dropped: the instruction/answer format has no place for it (an Alpaca line names its answer \"output\")"), (code, err.Trim()));
        Assert.False(Directory.Exists(Path.Combine(_folder, "out")));
    }

    [Fact]
    public async Task Mistakes_are_one_line_on_stderr()
    {
        var f = Write("ok.jsonl", """{"instruction":"x"}""");
        var (code, _, err) = await CliConsole.RunAsync("seed", "check", f, "--kind", "sft");
        Assert.Equal((2, "srlm seed: --kind sft: expected ift, eft, prompts, held-out or judge-pairs"), (code, err.Trim()));
        (code, _, err) = await CliConsole.RunAsync("seed", "check", Path.Combine(_folder, "none.jsonl"), "--kind", "prompts");
        Assert.Equal((2, $"srlm seed: {Path.Combine(_folder, "none.jsonl")}: no such file"), (code, err.Trim()));
        (code, var stdout, _) = await CliConsole.RunAsync("seed", "check", Write("empty.jsonl", ""), "--kind", "prompts");
        Assert.Equal(1, code);
        Assert.EndsWith("empty.jsonl: no records: a run refuses this file\n", stdout.ReplaceLineEndings("\n"));
    }
}
