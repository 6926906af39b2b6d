using Srlm.Training;

namespace Srlm.Cli.Commands;

/// <summary>
/// srlm train sft|dpo: one training job from files, resumable from its state directory (run the same
/// command again after a crash or Ctrl-C). The trainer service runs the same code from the store, and turns seed files into the
/// same training text (<see cref="SeedExamplesOf"/>).
/// </summary>
public sealed class TrainCommand : ICommand
{
    private readonly Action<TrainingProgress>? _afterReport;

    public TrainCommand() { }

    /// <summary>A command whose training thread calls <paramref name="afterReport"/> after each progress line: the seam
    /// through which the fault tests' host (tests/Srlm.FaultHost) stops a job mid-way. srlm itself never sets it.</summary>
    public TrainCommand(Action<TrainingProgress> afterReport) => _afterReport = afterReport;

    public string Name => "train";
    public string Summary => "train sft|dpo --parent DIR --state DIR --out DIR (SFT: --ift FILE [--eft FILE --judge-template FILE]; DPO: --pairs FILE [--replay-ift FILE [--replay-eft FILE --judge-template FILE]] for options with replayPerPair > 0)";

    private static readonly JsonSerializerOptions OptionsJson = new() { PropertyNameCaseInsensitive = true, ReadCommentHandling = JsonCommentHandling.Skip };

    public async Task<int> RunAsync(string[] args, CancellationToken cancel)
    {
        var a = new Args(args);
        var kind = a.Positional.Count == 1 ? a.Positional[0] : throw new UsageException("usage: srlm train sft|dpo --parent DIR --state DIR --out DIR ...");
        var parent = a.Required("--parent");
        var state = a.Required("--state");
        var output = a.Required("--out");
        var optionsFile = a.Get("--options");
        var maxSteps = a.Get("--max-steps") is null ? (int?)null : a.Int("--max-steps", 0);
        var seed = a.Get("--seed") is null ? (long?)null : a.Long("--seed", 0);
        var jobId = a.Get("--job") ?? $"{kind}-{Path.GetFileName(Path.GetFullPath(output))}";
        if (!Directory.Exists(parent)) throw new UsageException($"--parent {parent}: no such checkpoint folder");
        if (File.Exists(output)) throw new UsageException($"--out {output}: a file is in the way (the checkpoint is written as a folder)");

        T LoadOptions<T>() where T : TrainerOptions, new()
        {
            var o = new T();
            if (optionsFile is not null)
            {
                if (!File.Exists(optionsFile)) throw new UsageException($"--options {optionsFile}: no such file");
                try { o = JsonSerializer.Deserialize<T>(File.ReadAllText(optionsFile), OptionsJson) ?? o; }
                catch (JsonException e) { throw new UsageException($"--options {optionsFile}: {e.Message.Split('\n')[0]}"); }
            }
            if (maxSteps is not null) o = o with { MaxSteps = maxSteps.Value };
            if (seed is not null) o = o with { Seed = seed.Value };
            try { o.Validate(); } catch (ArgumentException e) { throw new UsageException(e.Message); }
            return o;
        }

        var progress = new LineProgress(_afterReport);
        TrainingResult result;
        try
        {
            switch (kind)
            {
                case "sft":
                {
                    var ift = a.Required("--ift");
                    var eft = a.Get("--eft");
                    var template = a.Get("--judge-template");
                    a.EnsureAllRead();
                    var examples = SeedExamplesOf(ift, eft, template, "--eft");
                    result = await SftTrainer.RunAsync(new SftJob
                    {
                        JobId = jobId, ParentCheckpoint = parent, Examples = examples, Options = LoadOptions<SftOptions>(),
                        StateDirectory = state, OutputDirectory = output, DatasetId = Path.GetFileName(ift),
                    }, progress, cancel);
                    break;
                }
                case "dpo":
                {
                    var pairsFile = a.Required("--pairs");
                    var replayIft = a.Get("--replay-ift");
                    var replayEft = a.Get("--replay-eft");
                    var template = a.Get("--judge-template");
                    a.EnsureAllRead();
                    var options = LoadOptions<DpoOptions>();
                    if (options.ReplayPerPair > 0 && replayIft is null)
                        throw new UsageException($"options replayPerPair = {options.ReplayPerPair} needs --replay-ift FILE (and optionally --replay-eft FILE --judge-template FILE)");
                    var replay = replayIft is null ? [] : SeedExamplesOf(replayIft, replayEft, template, "--replay-eft");
                    result = await DpoTrainer.RunAsync(new DpoJob
                    {
                        JobId = jobId, ParentCheckpoint = parent, Pairs = PairFile.Read(pairsFile), Options = options, Replay = replay,
                        StateDirectory = state, OutputDirectory = output, DatasetId = Path.GetFileName(pairsFile),
                    }, progress, cancel);
                    break;
                }
                default:
                    throw new UsageException($"unknown training kind '{kind}' (sft or dpo)");
            }
        }
        catch (SeedDataException e) { throw new UsageException(e.Message); }

        Console.WriteLine(JsonSerializer.Serialize(new
        {
            output = result.OutputDirectory, steps = result.Steps, train_examples = result.TrainExamples,
            validation_examples = result.ValidationExamples, too_long = result.TooLong, resumed = result.Resumed,
            best_step = result.BestStep, metrics = result.FinalMetrics, weights_sha256 = result.WeightFileSha256,
        }, new JsonSerializerOptions { WriteIndented = true }));
        return 0;
    }

    /// <summary>The SFT set (or a DPO job's replay set) from seed files: IFT, plus EFT as judge prompts when given, read
    /// by the one seed reader and turned into text by <see cref="SeedExamples.Sft"/>, exactly as the trainer service
    /// does with the same files stored with a run.</summary>
    public static IReadOnlyList<SftExample> SeedExamplesOf(string ift, string? eft, string? judgeTemplateFile, string eftFlag)
    {
        if (eft is not null && judgeTemplateFile is null)
            throw new UsageException($"{eftFlag} needs --judge-template FILE (the judge prompt with {{instruction}} and {{response}})");
        string? template = null;
        if (judgeTemplateFile is not null)
        {
            if (!File.Exists(judgeTemplateFile)) throw new UsageException($"--judge-template {judgeTemplateFile}: no such file");
            template = File.ReadAllText(judgeTemplateFile);
            if (JudgePrompt.Problem(template) is { } problem) throw new UsageException($"--judge-template {judgeTemplateFile} {problem}");
        }
        try
        {
            var iftRecords = SeedReader.ReadIft(ift).OrThrow();
            var eftRecords = eft is null ? null : SeedReader.ReadEft(eft).OrThrow();
            return SeedExamples.Sft(iftRecords, eftRecords, template).Select(SftExample.Of).ToList();
        }
        catch (SeedDataException e) { throw new UsageException(e.Message); }
    }

    /// <summary>One line per logging step on stderr: "step 3/20 loss 0.6931 ..." (stdout stays for the result).</summary>
    private sealed class LineProgress(Action<TrainingProgress>? afterReport) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress p)
        {
            var values = string.Join(" ", p.Metrics.Where(kv => kv.Key != "step")
                .Select(kv => $"{kv.Key} {kv.Value.ToString("G5", CultureInfo.InvariantCulture)}"));
            Console.Error.WriteLine($"{p.Kind} step {p.Step}/{p.TotalSteps} {values}");
            afterReport?.Invoke(p);
        }
    }
}
