namespace Srlm.Cli.Commands;

/// <summary>
/// srlm eval --model DIR --held-out FILE --task NAME: grades one checkpoint folder on a file of instructions
/// with a task family's checker, outside any run. Greedy accuracy (what report.json's accuracy counts), and
/// with --samples K the per-sample accuracy and pass@K at the given temperature. For tuning on a dev split and
/// for checking a checkpoint by hand; a run's own evaluation lives in the pipeline.
/// </summary>
public sealed class EvalCommand : ICommand
{
    public string Name => "eval";
    public string Summary => "eval --model DIR --held-out FILE --task NAME [--samples K --temperature T]: accuracy of one checkpoint folder";

    public async Task<int> RunAsync(string[] args, CancellationToken cancel)
    {
        var a = new Args(args);
        var dir = a.Required("--model");
        var file = a.Required("--held-out");
        var taskName = a.Required("--task");
        int maxItems = a.Int("--max-items", int.MaxValue);
        int maxNew = a.Int("--max-new-tokens", 16);
        int samples = a.Int("--samples", 0);
        double temperature = a.Double("--temperature", 0.7);
        double topP = a.Double("--top-p", 0.9);
        var jsonOut = a.Get("--json");
        a.EnsureAllRead();
        if (a.Positional.Count > 0) throw new UsageException($"unexpected argument '{a.Positional[0]}'");
        var family = TaskFamilies.Find(taskName) ?? throw new UsageException($"--task {taskName}: unknown task family (known: {string.Join(", ", TaskFamilies.All.Select(f => f.Name))})");
        if (!Directory.Exists(dir)) throw new UsageException($"--model {dir}: no such directory");
        if (!File.Exists(file)) throw new UsageException($"--held-out {file}: no such file");
        if (maxNew < 1) throw new UsageException("--max-new-tokens must be at least 1");
        if (samples < 0) throw new UsageException("--samples must be 0 or more");

        List<string> instructions;
        try { instructions = SeedReader.ReadPrompts(file).OrThrow().Take(maxItems).Select(r => r.Instruction).ToList(); }
        catch (SeedDataException e) { throw new UsageException(e.Message); }
        if (instructions.Count == 0) throw new UsageException($"{file}: no instructions");

        Srlm.Model.TorchRuntime.Initialise(); // SRLM_THREADS, checked by CommandLine before the verb runs
        ServedModel model;
        try { model = await ServedModel.LoadAsync(Path.GetFileName(Path.GetFullPath(dir)), dir, cancel); }
        catch (CheckpointException e) { Console.Error.WriteLine($"srlm eval: {e.Message}"); return 1; }
        using (model)
        {
            var started = DateTime.UtcNow;
            var requests = instructions.Select(i => new Srlm.Model.GenerationRequest(model.Tokenizer.Encode(model.Template.Format(i), addBos: model.Template.AddBos(model.Tokenizer)), [0UL])).ToList();
            var greedy = await model.GenerateAsync(requests, new SamplingOptions { Temperature = 0, MaxNewTokens = maxNew, StopStrings = model.Template.StopStrings, StopTokenIds = model.Template.StopTokenIds(model.Tokenizer) }, cancel);
            int correct = 0, ungradeable = 0;
            foreach (var g in greedy)
            {
                var grade = family.Check(instructions[g.RequestIndex], g.Text);
                if (grade is null) ungradeable++;
                else if (grade.Correct) correct++;
            }
            var result = new Dictionary<string, object>
            {
                ["model"] = Path.GetFullPath(dir), ["items"] = instructions.Count, ["accuracy"] = Math.Round((double)correct / instructions.Count, 4),
                ["ungradeable"] = ungradeable, ["mean_answer_tokens"] = Math.Round(greedy.Average(g => g.TokenIds.Length), 2),
            };
            if (samples > 0)
            {
                var sampled = instructions.Select((i, r) => new Srlm.Model.GenerationRequest(requests[r].PromptIds,
                    Enumerable.Range(0, samples).Select(k => (ulong)(r * 1_000_003L + k + 1)).ToList())).ToList();
                var outs = await model.GenerateAsync(sampled, new SamplingOptions { Temperature = temperature, TopP = topP, MaxNewTokens = maxNew, StopStrings = model.Template.StopStrings, StopTokenIds = model.Template.StopTokenIds(model.Tokenizer) }, cancel);
                var right = outs.Where(o => family.Check(instructions[o.RequestIndex], o.Text)?.Correct == true).ToList();
                result["samples"] = samples;
                result["temperature"] = temperature;
                result["per_sample_accuracy"] = Math.Round((double)right.Count / outs.Count, 4);
                result[$"pass@{samples}"] = Math.Round((double)right.Select(o => o.RequestIndex).Distinct().Count() / instructions.Count, 4);
            }
            result["seconds"] = Math.Round((DateTime.UtcNow - started).TotalSeconds, 1);
            var json = JsonSerializer.Serialize(result, new JsonSerializerOptions { WriteIndented = true });
            Console.WriteLine(json);
            if (jsonOut is not null) File.WriteAllText(jsonOut, json);
            return 0;
        }
    }
}
