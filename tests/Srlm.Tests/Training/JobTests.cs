namespace Srlm.Tests.Training;

/// <summary>The entry points the trainer service calls, on real checkpoint folders and files.</summary>
[Collection(TrainingCollection.Name)]
public class JobTests
{
    private const string Alphabet = "abcdefghijklmnopqrstuvwxyz0123456789 .,:?!#\nABCDEFGHIJKLMNOPQRSTUVWXYZ+=";

    /// <summary>A tiny HF checkpoint folder with a character-level tokenizer and the plain template.</summary>
    internal static string WriteParent(string dir, int context = 160, long seed = 11)
    {
        Tiny.UseTestThreads();
        var tok = TokenizerBuilder.CharLevel(Alphabet);
        var config = LlamaConfig.Tiny(tok.VocabSize, hidden: 64, layers: 2, heads: 4, kvHeads: 2) with { MaxPositionEmbeddings = context };
        using var lm = new LanguageModel(LlamaForCausalLM.Create(config, seed), tok, PromptTemplate.Plain, new GenerationSettings());
        lm.Save(dir);
        return dir;
    }

    /// <summary>Pairs as the JSONL `srlm train dpo --pairs` reads.</summary>
    private static void WritePairs(string path, IEnumerable<PreferencePair> pairs) =>
        File.WriteAllLines(path, pairs.Select(p => JsonSerializer.Serialize(new { id = p.Id, prompt = p.Prompt, chosen = p.Chosen, rejected = p.Rejected })));

    internal static List<PreferencePair> Pairs(int n, int seed)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, n).Select(i =>
        {
            int a = r.Next(10), b = r.Next(10);
            return new PreferencePair($"p{i}", $"{a}+{b}?", $"{a + b}.", $"no idea {r.Next(100)}");
        }).ToList();
    }

    [Fact]
    public async Task Sft_job_writes_a_loadable_checkpoint_with_training_meta_and_weight_hashes()
    {
        using var dir = new Tiny.TempDir();
        var parent = WriteParent(dir.Sub("m0"));
        var examples = Enumerable.Range(0, 24).Select(i => new SftExample($"{i % 10}+{i / 10}?", $"{i % 10 + i / 10}.", $"mem:{i}")).ToList();
        var rows = new List<TrainingProgress>();
        var result = await SftTrainer.RunAsync(new SftJob
        {
            JobId = "sft-1", ParentCheckpoint = parent, Examples = examples, DatasetId = "seed-7",
            Options = new SftOptions { BatchSize = 8, MicroBatchSize = 4, Epochs = 2, ValidationFraction = 0.25, Keep = KeepCheckpoint.Best, Seed = 9 },
            StateDirectory = dir.Sub("state"), OutputDirectory = dir.Sub("m1"),
        }, new SyncProgress(rows));

        Assert.Equal(6, result.Steps); // 18 training examples: batches of 8, 8, 2 per epoch
        Assert.Equal(18, result.TrainExamples);
        Assert.Equal(6, result.ValidationExamples);
        Assert.NotNull(result.BestStep);
        using var m1 = LanguageModel.Load(dir.Sub("m1"));
        Assert.Equal(PromptTemplate.Plain.Template, m1.Template.Template);
        Assert.Equal(0, m1.Config.ResidualDropout); // the job's dropout (0.1) is not written into the child
        var meta = TrainingMeta.Load(dir.Sub("m1"));
        Assert.Equal("sft", meta.Kind);
        Assert.Equal(Path.GetFullPath(parent), meta.ParentCheckpoint);
        Assert.Equal("seed-7", meta.DatasetId);
        Assert.Equal(9, meta.Seed);
        Assert.Equal(0.1, meta.Hyperparameters.GetProperty("Dropout").GetDouble());
        using (var s = File.OpenRead(Path.Combine(dir.Sub("m1"), "model.safetensors")))
            Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(s)), meta.WeightsSha256["model.safetensors"]);
        Assert.Equal(result.WeightFileSha256, meta.WeightsSha256);
        Assert.Contains("eval/loss", meta.Metrics.Keys);
        Assert.Contains(rows, r => r.Kind == "eval");
        Assert.NotEqual(meta.ParentWeightsSha256["model.safetensors"], meta.WeightsSha256["model.safetensors"]);
    }

    [Fact]
    public async Task Seed_example_longer_than_the_context_fails_before_training_with_its_source()
    {
        using var dir = new Tiny.TempDir();
        var parent = WriteParent(dir.Sub("m0"), context: 64);
        var examples = new List<SftExample> { new("1+1?", "2.", "ift.jsonl:1"), new(new string('a', 70), "ok", "ift.jsonl:2"), new("2+2?", new string('4', 40), "ift.jsonl:3") };
        var e = await Assert.ThrowsAsync<SeedDataException>(() => SftTrainer.RunAsync(new SftJob
        {
            JobId = "j", ParentCheckpoint = parent, Examples = examples, StateDirectory = dir.Sub("state"), OutputDirectory = dir.Sub("out"),
        }));
        Assert.Equal(2, e.Errors.Count);
        Assert.StartsWith("ift.jsonl:2: prompt is ", e.Errors[0]);
        Assert.EndsWith("longer than the context (64) after tokenization", e.Errors[0]);
        Assert.StartsWith("ift.jsonl:3: prompt + answer is ", e.Errors[1]);
        Assert.False(Directory.Exists(Path.Combine(dir.Sub("state"), "latest")));
        Assert.False(Directory.Exists(dir.Sub("out")));
    }

    [Fact]
    public async Task Dpo_job_drops_pairs_longer_than_the_context_and_counts_them()
    {
        using var dir = new Tiny.TempDir();
        var parent = WriteParent(dir.Sub("m0"), context: 64);
        var pairs = Pairs(12, 1);
        pairs.Add(new PreferencePair("long", "1+1?", "2.", new string('x', 60)));
        var result = await DpoTrainer.RunAsync(new DpoJob
        {
            JobId = "dpo-1", ParentCheckpoint = parent, Pairs = pairs,
            Options = new DpoOptions { BatchSize = 4, MicroBatchSize = 2, LearningRate = 1e-3, MinLearningRate = 1e-4 },
            StateDirectory = dir.Sub("state"), OutputDirectory = dir.Sub("m2"),
        });
        Assert.Equal(1, result.TooLong);
        Assert.Equal(12, result.TrainExamples);
        Assert.Equal(3, result.Steps);
        Assert.Equal(1, TrainingMeta.Load(dir.Sub("m2")).TooLong);
        Assert.Contains("rewards/accuracies", result.FinalMetrics.Keys);
    }

    [Fact]
    public async Task Reference_logps_carried_by_the_pairs_are_used_instead_of_recomputed()
    {
        using var dir = new Tiny.TempDir();
        var parent = WriteParent(dir.Sub("m0"));
        var pairs = Pairs(4, 2);
        DpoJob Job(IReadOnlyList<PreferencePair> p, string name) => new()
        {
            JobId = name, ParentCheckpoint = parent, Pairs = p, Options = new DpoOptions { BatchSize = 4, MicroBatchSize = 2, MaxSteps = 1 },
            StateDirectory = dir.Sub(name + "-state"), OutputDirectory = dir.Sub(name),
        };
        var honest = await DpoTrainer.RunAsync(Job(pairs, "a"));
        Assert.Equal(Math.Log(2), honest.FinalMetrics["loss"], 5); // policy == reference at step 0
        // Reference values far from the policy's own change the first loss: proof they were used.
        var shifted = pairs.Select(p => p with { ReferenceChosenLogp = 0, ReferenceRejectedLogp = -100 }).ToList();
        var given = await DpoTrainer.RunAsync(Job(shifted, "b"));
        Assert.True(given.FinalMetrics["loss"] > 5, $"loss {given.FinalMetrics["loss"]}");
    }

    [Fact]
    public async Task Resume_after_sigkill_of_the_training_process_gives_bit_identical_weights()
    {
        using var dir = new Tiny.TempDir();
        var (parent, pairsFile, optionsFile) = DpoInputs(dir, Pairs(48, 3), """ "Dropout": 0.1, "SaveStateEverySteps": 1 """);
        string[] Args(string name) => ["train", "dpo", "--parent", parent, "--pairs", pairsFile, "--options", optionsFile, "--state", dir.Sub(name + "-state"), "--out", dir.Sub(name)];

        var straight = await Srlm(Args("straight"), killAfterStep: null);
        Assert.Equal(0, straight.Code);

        var killed = await Srlm(Args("resumed"), killAfterStep: 4);
        Assert.True(killed.Killed, "the child finished before it could be killed");
        var saved = new TrainingStateStore(dir.Sub("resumed-state")).TryLoadLatest();
        Assert.NotNull(saved);
        Assert.Equal(3, saved.Step); // killed in step 4, before its state was written: resumes at a step > 0
        Assert.False(Directory.Exists(dir.Sub("resumed")));

        var resumed = await Srlm(Args("resumed"), killAfterStep: null);
        Assert.Equal(0, resumed.Code);
        Assert.Contains("\"resumed\": true", resumed.Stdout);
        Assert.Equal(File.ReadAllBytes(Path.Combine(dir.Sub("straight"), "model.safetensors")),
                     File.ReadAllBytes(Path.Combine(dir.Sub("resumed"), "model.safetensors")));
        Assert.Equal(12, TrainingMeta.Load(dir.Sub("resumed")).Steps);
    }

    [Fact]
    public async Task Train_dpo_with_replay_needs_a_replay_file_and_records_the_replay_in_training_meta()
    {
        using var dir = new Tiny.TempDir();
        var (parent, pairsFile, optionsFile) = DpoInputs(dir, Pairs(8, 5), """ "ReplayPerPair": 1, "ReplayWeight": 2 """);
        var iftFile = dir.Sub("ift.jsonl");
        File.WriteAllLines(iftFile, Enumerable.Range(0, 6).Select(i => JsonSerializer.Serialize(new { instruction = $"{i}+1?", answer = $"{i + 1}." })));
        string[] Args(params string[] extra) => ["train", "dpo", "--parent", parent, "--pairs", pairsFile, "--options", optionsFile, "--state", dir.Sub("state"), "--out", dir.Sub("out"), .. extra];

        var missing = await Srlm(Args(), killAfterStep: null);
        Assert.Equal(2, missing.Code);
        Assert.Contains("replayPerPair = 1 needs --replay-ift FILE", missing.Stderr);
        Assert.DoesNotContain("   at ", missing.Stderr);

        var trained = await Srlm(Args("--replay-ift", iftFile), killAfterStep: null);
        Assert.True(trained.Code == 0, trained.Stderr);
        var meta = TrainingMeta.Load(dir.Sub("out"));
        Assert.Equal(1, meta.Hyperparameters.GetProperty("ReplayPerPair").GetInt32());
        Assert.Equal(2, meta.Hyperparameters.GetProperty("ReplayWeight").GetDouble());
    }

    /// <summary>The files of a `srlm train dpo` call in <paramref name="dir"/>: a parent checkpoint (m0), the pairs, and
    /// options of 4-pair batches in micro-batches of 2 for one epoch, plus <paramref name="moreOptions"/>.</summary>
    private static (string Parent, string PairsFile, string OptionsFile) DpoInputs(Tiny.TempDir dir, IEnumerable<PreferencePair> pairs, string moreOptions)
    {
        var parent = WriteParent(dir.Sub("m0"));
        var pairsFile = dir.Sub("pairs.jsonl");
        WritePairs(pairsFile, pairs);
        var optionsFile = dir.Sub("options.json");
        File.WriteAllText(optionsFile, $$"""{ "BatchSize": 4, "MicroBatchSize": 2, "Epochs": 1, "LearningRate": 1e-3, "MinLearningRate": 1e-4, {{moreOptions}} }""");
        return (parent, pairsFile, optionsFile);
    }

    /// <summary>Runs srlm (the CLI beside the tests) with one libtorch thread; optionally SIGKILLs it once
    /// it reports the given training step (then srlm runs in the fault host, whose train verb holds its training thread
    /// there, so the kill always lands mid-job, after the state of the step before was saved).</summary>
    private static async Task<(int Code, bool Killed, string Stdout, string Stderr)> Srlm(string[] args, int? killAfterStep)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (killAfterStep is int hang)
        {
            // srlm's own verbs in the fault tests' host, whose train verb holds its training thread after this step.
            psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "srlm-faulthost.dll"));
            psi.ArgumentList.Add("cli");
            psi.Environment["SRLM_TEST_HANG_AFTER_STEP"] = hang.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
        else psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "srlm.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["SRLM_THREADS"] = "1";
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var err = new System.Text.StringBuilder();
        bool killed = false;
        string? line;
        using var bounded = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        using var stop = bounded.Token.Register(() => { try { p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { } });
        while ((line = await p.StandardError.ReadLineAsync(bounded.Token)) is not null)
        {
            err.AppendLine(line);
            if (killAfterStep is int k && line.StartsWith($"train step {k}/", StringComparison.Ordinal) && !killed)
            {
                p.Kill(); // SIGKILL on Linux: no handler, no flush, no finally blocks
                killed = true;
            }
        }
        await p.WaitForExitAsync(bounded.Token);
        return (p.ExitCode, killed, await stdout, err.ToString());
    }
}
