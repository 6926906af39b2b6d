namespace Srlm.Tests.Cli;

/// <summary>srlm generate and srlm bench, run in-process with stdout and stderr captured.</summary>
[Collection("console")]
public class GenerateCommandTests
{
    private static Task<(int Code, string Out, string Err)> Run(params string[] args) => CliConsole.RunAsync(args);

    [Fact]
    public async Task Generate_prints_only_the_greedy_continuation_at_temperature_zero()
    {
        var dir = TestModels.SavedCharModel("cli", 31);
        var (code, stdout, stderr) = await Run("generate", "--model", dir, "--prompt", "hello there", "--max-new-tokens", "20", "--temperature", "0");
        Assert.True(code == 0, stderr);
        using var lm = LanguageModel.Load(dir);
        var expected = new TextGenerator(lm.Model, lm.Tokenizer)
            .Generate([new GenerationRequest(lm.Tokenizer.Encode("hello there", addBos: true), 0UL)], SamplingOptions.Greedy(20))[0].Text;
        Assert.Equal(expected + Environment.NewLine, stdout);
        Assert.DoesNotContain("hello there", stdout);
        Assert.DoesNotContain("<s>", stdout);
    }

    [Fact]
    public async Task Generate_with_a_seed_is_reproducible_and_seeds_differ()
    {
        var dir = TestModels.SavedCharModel("cli", 32);
        string[] Args(string seed) => ["generate", "--model", dir, "--prompt", "abc", "--max-new-tokens", "24", "--temperature", "1.0", "--top-p", "0.95", "--top-k", "50", "--seed", seed];
        var a = await Run(Args("1"));
        var b = await Run(Args("1"));
        var outputs = new HashSet<string>();
        for (int s = 2; s < 6; s++) outputs.Add((await Run(Args(s.ToString()))).Out);
        Assert.Equal(0, a.Code);
        Assert.Equal(a.Out, b.Out);
        Assert.True(outputs.Count > 1, "different seeds gave the same text every time");
    }

    [Fact]
    public async Task Generate_reports_a_bad_checkpoint_as_one_line_on_stderr()
    {
        var dir = TestModels.SavedCharModel("cli", 33);
        File.WriteAllBytes(Path.Combine(dir, Checkpoint.WeightsFile), [1, 2, 3]);
        var (code, stdout, stderr) = await Run("generate", "--model", dir, "--prompt", "x");
        Assert.NotEqual(0, code);
        Assert.Equal("", stdout);
        Assert.Single(stderr.TrimEnd().Split('\n'));
        Assert.Contains("model.safetensors", stderr);
        Assert.Contains("truncated", stderr);
    }

    [Fact]
    public async Task Generate_rejects_bad_options_with_usage_errors()
    {
        var dir = TestModels.SavedCharModel("cli", 34);
        var (code, stdout, stderr) = await Run("generate", "--model", dir, "--prompt", "x", "--temperature", "-1");
        Assert.Equal(2, code);
        Assert.Contains("temperature", stderr);
        (code, _, stderr) = await Run("generate", "--model", dir + "-nope", "--prompt", "x");
        Assert.Equal(2, code);
        Assert.Contains("no such directory", stderr);
        (code, _, stderr) = await Run("generate", "--model", dir, "--prompt", "x", "--tempreature", "1");
        Assert.Equal(2, code);
        Assert.Contains("unknown option --tempreature", stderr);
    }

    [Fact]
    public async Task Bench_lists_its_benchmarks_and_rejects_unknown_ones()
    {
        var (code, stdout, _) = await Run("bench", "--help");
        Assert.Equal(0, code);
        Assert.Contains("generate", stdout);
        (code, _, var stderr) = await Run("bench", "nosuch");
        Assert.Equal(2, code);
        Assert.Contains("unknown benchmark 'nosuch'", stderr);
    }
}
