namespace Srlm.Tests.Cli;

/// <summary>User mistakes on the command line end in one line that names the file, folder, option or variable at
/// fault and a non-zero exit code: never a stack trace, never a new empty store, never a half-written file.</summary>
[Collection("console")]
public sealed class CliMistakeTests : IAsyncLifetime
{
    private readonly string _folder = Directory.CreateTempSubdirectory("srlm-mistakes-").FullName;
    private string StoreUri => "sqlite://" + Path.Combine(_folder, "srlm.db");

    public async Task InitializeAsync()
    {
        await using var stores = await OpsFixtures.OpenAsync(_folder);
        await OpsFixtures.WriteFinishedIterationAsync(stores, "run1", _folder);
    }

    public Task DisposeAsync()
    {
        try { Directory.Delete(_folder, true); } catch (IOException) { }
        return Task.CompletedTask;
    }

    private static async Task<(int Code, string Err)> Srlm(params string[] args)
    {
        var (code, _, err) = await CliConsole.RunAsync(args);
        Assert.DoesNotContain("   at ", err, StringComparison.Ordinal);
        Assert.DoesNotContain("Unhandled exception", err, StringComparison.Ordinal);
        Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        return (code, err.Trim());
    }

    [Fact]
    public async Task A_mistyped_store_path_is_refused_and_not_created()
    {
        var missing = Path.Combine(_folder, "srlm.bd");
        var (code, err) = await Srlm("runs", "--store", "sqlite://" + missing);
        Assert.Equal(2, code);
        Assert.Equal($"srlm runs: SRLM_STORE=sqlite://{missing}: no store at {missing}", err);
        Assert.False(File.Exists(missing));
        Assert.False(Directory.Exists(missing + ".checkpoints"));
    }

    [Fact]
    public async Task Export_refuses_a_missing_folder_a_folder_as_file_and_an_iteration_the_run_does_not_have()
    {
        var (code, err) = await Srlm("export", "pairs", "run1", "--out", Path.Combine(_folder, "nodir", "x.jsonl"), "--store", StoreUri);
        Assert.Equal((2, $"srlm export: --out {Path.Combine(_folder, "nodir", "x.jsonl")}: folder {Path.Combine(_folder, "nodir")} does not exist"), (code, err));
        (code, err) = await Srlm("export", "pairs", "run1", "--out", _folder, "--store", StoreUri);
        Assert.Equal((2, $"srlm export: --out {_folder} is a folder; give a file path"), (code, err));
        Assert.False(File.Exists(_folder + ".tmp"));
        (code, err) = await Srlm("export", "pairs", "run1", "--iteration", "99", "--store", StoreUri);
        Assert.Equal((2, "srlm export: --iteration 99: run run1 has iterations 1"), (code, err));
    }

    [Fact]
    public async Task Report_on_a_folder_that_is_not_a_run_folder_says_so()
    {
        var empty = Directory.CreateDirectory(Path.Combine(_folder, "empty")).FullName;
        var (code, err) = await Srlm("report", empty);
        Assert.Equal(2, code);
        Assert.Equal($"srlm report: {empty} is not a srlm run folder (it has no run.id); give a run folder, or a run id with SRLM_STORE", err);
        File.WriteAllText(Path.Combine(empty, "run.id"), "r");
        (code, err) = await Srlm("report", empty);
        Assert.Equal((2, $"srlm report: {empty} has run.id but no srlm.db: not a complete srlm run folder"), (code, err));
        Assert.False(File.Exists(Path.Combine(empty, "srlm.db")));
    }

    [Fact]
    public async Task A_bad_SRLM_THREADS_is_one_line_before_any_model_thread_reads_it()
    {
        var old = Environment.GetEnvironmentVariable("SRLM_THREADS");
        Environment.SetEnvironmentVariable("SRLM_THREADS", "abc");
        try
        {
            var (code, err) = await Srlm("generate", "--model", _folder, "--prompt", "hi");
            Assert.Equal((2, "srlm generate: SRLM_THREADS must be a positive integer, got 'abc'"), (code, err));
        }
        finally { Environment.SetEnvironmentVariable("SRLM_THREADS", old); }
    }

    [Fact]
    public async Task A_bad_SRLM_DEVICE_is_one_line_at_start_never_the_cpu_instead()
    {
        // Resolve this process's own device first: other tests load models meanwhile, and must not read the bad value.
        _ = global::Srlm.Model.TorchRuntime.Device;
        var old = Environment.GetEnvironmentVariable("SRLM_DEVICE");
        try
        {
            Environment.SetEnvironmentVariable("SRLM_DEVICE", "gpu");
            var (code, err) = await Srlm("generate", "--model", _folder, "--prompt", "hi");
            Assert.Equal((2, "srlm generate: SRLM_DEVICE must be cpu, cuda or cuda:N (N a GPU index), got 'gpu'"), (code, err));
            if (!TorchSharp.torch.cuda.is_available())
            {
                Environment.SetEnvironmentVariable("SRLM_DEVICE", "cuda");
                (code, err) = await Srlm("generate", "--model", _folder, "--prompt", "hi");
                Assert.Equal((2, "srlm generate: SRLM_DEVICE=cuda but libtorch sees no CUDA GPU (a CPU build of srlm, no driver, or no GPU visible to this process); set SRLM_DEVICE=cpu or leave it unset"), (code, err));
            }
        }
        finally { Environment.SetEnvironmentVariable("SRLM_DEVICE", old); }
    }

    [Fact]
    public async Task Files_in_the_way_and_bad_numbers_name_the_path_or_option()
    {
        var file = Path.Combine(_folder, "a-file.txt");
        File.WriteAllText(file, "x");
        var (code, err) = await Srlm("seed", "--task", "addition", "--out", file);
        Assert.Equal(1, code);
        Assert.Contains(file, err, StringComparison.Ordinal);
        Assert.Equal("x", File.ReadAllText(file));

        var m1 = OpsFixtures.CheckpointFolder(_folder, "weights");
        (code, err) = await Srlm("train", "sft", "--parent", m1, "--state", Path.Combine(_folder, "st"), "--out", Path.Combine(_folder, "out"), "--ift", file, "--max-steps", "abc");
        Assert.Equal((2, "srlm train: option --max-steps must be an integer, got 'abc'"), (code, err));
        (code, err) = await Srlm("train", "sft", "--parent", m1, "--state", Path.Combine(_folder, "st"), "--out", file, "--ift", file);
        Assert.Equal((2, $"srlm train: --out {file}: a file is in the way (the checkpoint is written as a folder)"), (code, err));
        (code, err) = await Srlm("runs", "--store", StoreUri, "--bogus");
        Assert.Equal((2, "srlm runs: option --bogus needs a value (or is not an option of this verb)"), (code, err));
    }

    [Fact]
    public async Task Stray_arguments_and_a_negative_timeout_are_refused()
    {
        var (code, err) = await Srlm("seed", "--list", "extra");
        Assert.Equal((2, "srlm seed: seed --list takes no arguments, got 'extra'"), (code, err));
        (code, err) = await Srlm("status", "run1", "--timeout", "-5", "--store", StoreUri);
        Assert.Equal((2, "srlm status: --interval, --stall-after, --window and --timeout must be positive"), (code, err));
    }

    [Fact]
    public async Task An_evaluator_srlm_does_not_have_is_refused_before_the_run_starts()
    {
        var from = Path.Combine(FindRepo(), "samples", "smoke");
        var spec = Path.Combine(_folder, "spec");
        foreach (var d in Directory.GetDirectories(from, "*", SearchOption.AllDirectories)) Directory.CreateDirectory(Path.Combine(spec, Path.GetRelativePath(from, d)));
        foreach (var f in Directory.GetFiles(from, "*", SearchOption.AllDirectories)) File.Copy(f, Path.Combine(spec, Path.GetRelativePath(from, f)));
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(from, "run.json")), documentOptions: new System.Text.Json.JsonDocumentOptions { CommentHandling = System.Text.Json.JsonCommentHandling.Skip })!;
        json["evaluation"]!["evaluator"] = "nosuchtask";
        File.WriteAllText(Path.Combine(spec, "run.json"), json.ToJsonString());

        var (code, err) = await Srlm("run", Path.Combine(spec, "run.json"), "--out", Path.Combine(_folder, "out"));
        Assert.Equal(2, code);
        Assert.Equal("srlm run: spec.evaluation.evaluator: 'nosuchtask' is not an evaluator srlm has (one of: letters, addition, judge_win_rate)", err);
    }

    [Fact]
    public async Task The_checkpoint_store_of_a_srlm_run_folder_is_its_checkpoints_folder_and_a_file_in_the_way_names_SRLM_CHECKPOINTS()
    {
        var run = Directory.CreateDirectory(Path.Combine(_folder, "a-run")).FullName;
        File.WriteAllText(Path.Combine(run, "run.id"), "r");
        Directory.CreateDirectory(Path.Combine(run, "checkpoints"));
        var env = new System.Collections.Hashtable { ["SRLM_STORE"] = "sqlite://" + Path.Combine(run, "srlm.db") };
        await using (var stores = await StoreFactory.FromEnvironmentAsync(env))
            Assert.Equal(Path.Combine(run, "checkpoints"), ((Srlm.Storage.Checkpoints.DirectoryCheckpointStore)stores.Checkpoints).Root);
        // Anywhere else the default stays PATH.checkpoints.
        await using (var stores = await StoreFactory.FromEnvironmentAsync(new System.Collections.Hashtable { ["SRLM_STORE"] = StoreUri }))
            Assert.Equal(Path.Combine(_folder, "srlm.db.checkpoints"), ((Srlm.Storage.Checkpoints.DirectoryCheckpointStore)stores.Checkpoints).Root);

        var file = Path.Combine(_folder, "in-the-way");
        File.WriteAllText(file, "x");
        env["SRLM_CHECKPOINTS"] = file;
        var e = await Assert.ThrowsAsync<StoreConfigurationException>(() => StoreFactory.FromEnvironmentAsync(env));
        Assert.StartsWith($"SRLM_CHECKPOINTS='{file}' cannot be used as the checkpoint folder: ", e.Message);
    }

    private static string FindRepo()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Pipeline.sln"))) return d.FullName;
        throw new DirectoryNotFoundException("Pipeline.sln not found above " + AppContext.BaseDirectory);
    }
}
