namespace Srlm.Tests.Cli;

/// <summary>srlm eval: one checkpoint folder graded on a file of instructions, outside any run.</summary>
[Collection("console")]
public class EvalCommandTests
{
    private static Task<(int Code, string Out, string Err)> Run(params string[] args) => CliConsole.RunAsync(args);

    private static (string Model, string HeldOut, List<string> Instructions) Fixture(string name)
    {
        var dir = TestModels.TempDir(name);
        var model = Path.Combine(dir, "model");
        using (var lm = TestModels.CharModel(41)) lm.Save(model);
        var family = TaskFamilies.Find("addition")!;
        var rng = new TaskRng(5);
        var instructions = Enumerable.Range(0, 12).Select(_ => family.NewInstruction(rng)).ToList();
        var heldOut = Path.Combine(dir, "held.jsonl");
        File.WriteAllLines(heldOut, instructions.Select(i => JsonSerializer.Serialize(new { instruction = i, answer = "x" })));
        return (model, heldOut, instructions);
    }

    [Fact]
    public async Task Eval_grades_the_greedy_answers_with_the_task_checker()
    {
        var (model, heldOut, instructions) = Fixture("eval");
        var json = Path.Combine(Path.GetDirectoryName(heldOut)!, "eval.json");
        var (code, _, stderr) = await Run("eval", "--model", model, "--held-out", heldOut, "--task", "addition", "--max-new-tokens", "6", "--samples", "2", "--json", json);
        Assert.True(code == 0, stderr);

        // The same greedy answers, made and graded here without the command.
        using var lm = LanguageModel.Load(model);
        var family = TaskFamilies.Find("addition")!;
        var answers = new TextGenerator(lm.Model, lm.Tokenizer).Generate(
            instructions.Select(i => new GenerationRequest(lm.Tokenizer.Encode(lm.Template.Format(i), addBos: lm.Tokenizer.AddBos), 0UL)).ToList(),
            SamplingOptions.Greedy(6) with { StopStrings = lm.Template.StopStrings });
        int correct = instructions.Where((i, k) => family.CheckKnown(i, answers[k].Text).Correct).Count();

        using var doc = JsonDocument.Parse(File.ReadAllText(json));
        var r = doc.RootElement;
        Assert.Equal(12, r.GetProperty("items").GetInt32());
        Assert.Equal(Math.Round(correct / 12.0, 4), r.GetProperty("accuracy").GetDouble());
        Assert.Equal(Math.Round(answers.Average(a => a.TokenIds.Length), 2), r.GetProperty("mean_answer_tokens").GetDouble());
        Assert.Equal(0, r.GetProperty("ungradeable").GetInt32());
        Assert.InRange(r.GetProperty("per_sample_accuracy").GetDouble(), 0, 1);
        Assert.True(r.TryGetProperty("pass@2", out _));
    }

    [Fact]
    public async Task Eval_names_the_line_at_fault_and_unknown_task_families()
    {
        var (model, heldOut, _) = Fixture("eval-bad");
        File.AppendAllText(heldOut, "{\"question\": \"no instruction here\"}\n");
        var (code, stdout, stderr) = await Run("eval", "--model", model, "--held-out", heldOut, "--task", "addition");
        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        Assert.Contains($"{heldOut}:13", stderr);
        Assert.Contains("\"instruction\"", stderr);
        (code, _, stderr) = await Run("eval", "--model", model, "--held-out", heldOut, "--task", "poetry");
        Assert.Equal(2, code);
        Assert.Contains("--task poetry: unknown task family", stderr);
    }
}
