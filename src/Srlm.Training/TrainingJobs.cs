// Over 300 lines on purpose: the two job records, their metadata and the job runner both trainers share.
namespace Srlm.Training;

/// <summary>A preference pair as text. When the pipeline already stored the reference log-probs with the
/// pair (summed completion log-probs under the parent, as <see cref="DpoTrainer.ComputeLogps"/> gives
/// them) they are used instead of computing them.</summary>
public sealed record PreferencePair(string Id, string Prompt, string Chosen, string Rejected)
{
    public double? ReferenceChosenLogp { get; init; }
    public double? ReferenceRejectedLogp { get; init; }
}

/// <summary>An SFT job: parent checkpoint + examples -> output checkpoint. Resumes from <see cref="StateDirectory"/>.</summary>
public sealed record SftJob
{
    public required string JobId { get; init; }
    /// <summary>HF checkpoint folder of the model to fine-tune (M0).</summary>
    public required string ParentCheckpoint { get; init; }
    public required IReadOnlyList<SftExample> Examples { get; init; }
    public SftOptions Options { get; init; } = new();
    /// <summary>Where resumable state lives; the pipeline's durable job record points here.</summary>
    public required string StateDirectory { get; init; }
    /// <summary>Where the trained checkpoint and training_meta.json are written (replaced atomically).</summary>
    public required string OutputDirectory { get; init; }
    /// <summary>Recorded in training_meta.json (e.g. the seed dataset id).</summary>
    public string? DatasetId { get; init; }
}

/// <summary>A DPO job: parent checkpoint (policy start and reference) + pairs -> output checkpoint.</summary>
public sealed record DpoJob
{
    public required string JobId { get; init; }
    public required string ParentCheckpoint { get; init; }
    public required IReadOnlyList<PreferencePair> Pairs { get; init; }
    /// <summary>SFT examples replayed beside the pairs (<see cref="DpoOptions.ReplayPerPair"/> per pair).</summary>
    public IReadOnlyList<SftExample> Replay { get; init; } = [];
    public DpoOptions Options { get; init; } = new();
    public required string StateDirectory { get; init; }
    public required string OutputDirectory { get; init; }
    public string? DatasetId { get; init; }
}

/// <summary>training_meta.json, written beside the weights of every trained checkpoint.</summary>
public sealed record TrainingMeta
{
    public required string Kind { get; init; }
    public required string JobId { get; init; }
    public required string ParentCheckpoint { get; init; }
    public required IReadOnlyDictionary<string, string> ParentWeightsSha256 { get; init; }
    public string? DatasetId { get; init; }
    public required long Seed { get; init; }
    public required JsonElement Hyperparameters { get; init; }
    public required int Steps { get; init; }
    public required int TrainExamples { get; init; }
    public required int ValidationExamples { get; init; }
    public int TooLong { get; init; }
    public int? BestStep { get; init; }
    public required IReadOnlyDictionary<string, double> Metrics { get; init; }
    public required IReadOnlyList<Dictionary<string, double>> Log { get; init; }
    public required IReadOnlyDictionary<string, string> WeightsSha256 { get; init; }
    public required DateTime CreatedUtc { get; init; }
    public string? LibtorchThreads { get; init; }

    public const string File = "training_meta.json";

    public static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    public static TrainingMeta Load(string checkpointDir) =>
        JsonSerializer.Deserialize<TrainingMeta>(System.IO.File.ReadAllText(Path.Combine(checkpointDir, File)), Json)!;
}

/// <summary>Loading, tokenizing, the dedicated thread, and writing the output checkpoint: shared by both trainers.</summary>
internal static class JobRunner
{
    /// <summary>Runs <paramref name="work"/> on a new dedicated thread: TorchSharp's dispose scopes and grad
    /// mode are per thread, so a whole job stays on one thread and never crosses an await.</summary>
    public static Task<T> OnThread<T>(ModelExecutor? executor, string name, Func<T> work, CancellationToken cancel) =>
        executor is not null ? executor.RunAsync(work, cancel) : OnDedicatedThread(name, work);

    public static Task<T> OnDedicatedThread<T>(string name, Func<T> work)
    {
        var tcs = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() =>
        {
            try { tcs.SetResult(work()); }
            catch (Exception e) { tcs.SetException(e); }
        }, maxStackSize: 16 * 1024 * 1024) { IsBackground = true, Name = name };
        thread.Start();
        return tcs.Task;
    }

    public static LanguageModel LoadParent(string dir, double dropout) =>
        LanguageModel.Load(dir, configure: c => c with { AttentionDropout = dropout, ResidualDropout = dropout });

    public static int MaxLength(TrainerOptions o, LlamaConfig c) =>
        o.MaxSequenceLength > 0 ? Math.Min(o.MaxSequenceLength, c.MaxPositionEmbeddings) : c.MaxPositionEmbeddings;

    public static int[] EncodePrompt(LanguageModel lm, string prompt) =>
        [.. lm.Tokenizer.Encode(lm.Template.Format(prompt), addBos: lm.Template.AddBos(lm.Tokenizer))];

    /// <summary>An SFT example's prompt tokens: its seed conversation through a chat template, turn by turn, else its
    /// prompt text through the template (<see cref="PromptText.Of"/>).</summary>
    public static int[] EncodePrompt(LanguageModel lm, SftExample e) =>
        [.. lm.Tokenizer.Encode(PromptText.Of(lm.Template, e), addBos: lm.Template.AddBos(lm.Tokenizer))];

    public static int[] EncodeCompletion(LanguageModel lm, string completion)
    {
        // A chat template's answer ends with its end-of-turn token (the token generation stops at); else EOS.
        var endOfTurn = lm.Template.Chat?.EndOfTurn is { } eot ? lm.Tokenizer.TokenToId(eot) : null;
        var eos = endOfTurn ?? lm.Tokenizer.EosId ?? lm.Config.EosTokenIds.FirstOrDefault(-1);
        if (eos < 0) throw new InvalidOperationException("the parent checkpoint names no end-of-sequence token; a completion cannot be terminated");
        return [.. lm.Tokenizer.Encode(completion), eos];
    }

    public static Dictionary<string, string> WeightHashes(string dir)
    {
        var files = Directory.GetFiles(dir, "*.safetensors").Order(StringComparer.Ordinal);
        var d = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var f in files)
        {
            using var s = File.OpenRead(f);
            d[Path.GetFileName(f)] = Convert.ToHexStringLower(SHA256.HashData(s));
        }
        return d;
    }

    public static string Fingerprint(string kind, TrainerOptions options, IReadOnlyDictionary<string, string> parentHashes, Action<IncrementalHash> data)
    {
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        void Add(string s) { var b = System.Text.Encoding.UTF8.GetBytes(s); h.AppendData(BitConverter.GetBytes(b.Length)); h.AppendData(b); }
        Add(kind);
        Add(JsonSerializer.Serialize(options, options.GetType()));
        foreach (var kv in parentHashes) { Add(kv.Key); Add(kv.Value); }
        data(h);
        return Convert.ToHexStringLower(h.GetHashAndReset());
    }

    public static void AddIds(IncrementalHash h, int[] ids)
    {
        h.AppendData(BitConverter.GetBytes(ids.Length));
        h.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(ids.AsSpan()));
    }

    /// <summary>Writes the trained checkpoint (best weights when kept) and training_meta.json into a temp
    /// folder, then swaps it into place, so the output folder is either absent, the old one, or complete.</summary>
    public static TrainingResult WriteOutput(string kind, string jobId, string parentDir, string? datasetId, string outputDir,
        LanguageModel lm, LlamaConfig parentConfig, TrainerOptions options, TrainingRun run, TrainingStateStore store,
        IReadOnlyDictionary<string, string> parentHashes, int tooLong)
    {
        if (options.Keep == KeepCheckpoint.Best && run.State.BestStep is not null)
            lm.Model.load(store.BestWeightsPath);
        var full = Path.GetFullPath(outputDir);
        var tmp = full + ".tmp";
        if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true);
        lm.Save(tmp);
        // The training dropout is a property of the job, not of the model: keep the parent's values.
        File.WriteAllText(Path.Combine(tmp, Checkpoint.ConfigFile),
            (lm.Config with { AttentionDropout = parentConfig.AttentionDropout, ResidualDropout = parentConfig.ResidualDropout }).ToJson());
        var hashes = WeightHashes(tmp);
        var metrics = run.FinalMetrics;
        var meta = new TrainingMeta
        {
            Kind = kind, JobId = jobId, ParentCheckpoint = Path.GetFullPath(parentDir), ParentWeightsSha256 = parentHashes,
            DatasetId = datasetId, Seed = options.Seed,
            Hyperparameters = JsonSerializer.SerializeToElement(options, options.GetType()),
            Steps = run.State.TotalSteps, TrainExamples = run.TrainExamples, ValidationExamples = run.ValidationExamples,
            TooLong = tooLong, BestStep = options.Keep == KeepCheckpoint.Best ? run.State.BestStep : null,
            Metrics = metrics, Log = run.State.Log, WeightsSha256 = hashes, CreatedUtc = DateTime.UtcNow,
            LibtorchThreads = torch.get_num_threads().ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        File.WriteAllText(Path.Combine(tmp, TrainingMeta.File), JsonSerializer.Serialize(meta, TrainingMeta.Json));
        if (Directory.Exists(full)) Directory.Delete(full, recursive: true);
        Directory.Move(tmp, full);
        return new TrainingResult
        {
            OutputDirectory = full, Steps = run.State.TotalSteps, TrainExamples = run.TrainExamples,
            ValidationExamples = run.ValidationExamples, TooLong = tooLong, Resumed = run.Resumed, FinalMetrics = metrics,
            BestStep = meta.BestStep, WeightFileSha256 = hashes,
        };
    }
}

public static partial class SftTrainer
{
    /// <summary>
    /// The trainer service's entry point for SFT: loads the parent, tokenizes and checks every example
    /// (a bad one fails the job with <see cref="SeedDataException"/> before any step), trains on a
    /// dedicated thread (resuming from the state directory when it holds state of this job), and writes
    /// the HF checkpoint plus training_meta.json.
    /// </summary>
    /// <param name="executor">the thread to run on; null starts a dedicated thread for this job.</param>
    public static Task<TrainingResult> RunAsync(SftJob job, IProgress<TrainingProgress>? progress = null, CancellationToken cancel = default, ModelExecutor? executor = null) =>
        JobRunner.OnThread(executor, $"srlm-sft-{job.JobId}", () => Run(job, progress, cancel), cancel);

    private static TrainingResult Run(SftJob job, IProgress<TrainingProgress>? progress, CancellationToken cancel)
    {
        TorchRuntime.Initialise();
        job.Options.Validate();
        var parentConfig = LlamaConfig.Load(Path.Combine(job.ParentCheckpoint, Checkpoint.ConfigFile));
        using var lm = JobRunner.LoadParent(job.ParentCheckpoint, job.Options.Dropout);
        var examples = Tokenize(lm, job.Examples, JobRunner.MaxLength(job.Options, lm.Config));
        var parentHashes = JobRunner.WeightHashes(job.ParentCheckpoint);
        var fingerprint = JobRunner.Fingerprint("sft", job.Options, parentHashes, h =>
        {
            foreach (var e in examples) { JobRunner.AddIds(h, e.Prompt); JobRunner.AddIds(h, e.Completion); }
        });
        var store = new TrainingStateStore(job.StateDirectory);
        var run = Train(lm.Model, examples, job.Options, store, job.JobId, fingerprint, progress, cancel);
        return JobRunner.WriteOutput("sft", job.JobId, job.ParentCheckpoint, job.DatasetId, job.OutputDirectory,
            lm, parentConfig, job.Options, run, store, parentHashes, tooLong: 0);
    }

    /// <summary>Tokenizes examples with the checkpoint's template; every example longer than the context is
    /// reported with its source (file:line) and nothing is truncated.</summary>
    public static List<TokenizedSequence> Tokenize(LanguageModel lm, IReadOnlyList<SftExample> examples, int maxLength)
    {
        var list = new List<TokenizedSequence>(examples.Count);
        var errors = new List<string>();
        foreach (var e in examples)
        {
            var prompt = JobRunner.EncodePrompt(lm, e);
            var completion = JobRunner.EncodeCompletion(lm, e.Completion);
            if (prompt.Length >= maxLength)
                errors.Add($"{e.Source}: prompt is {prompt.Length} tokens, longer than the context ({maxLength}) after tokenization");
            else if (prompt.Length + completion.Length > maxLength)
                errors.Add($"{e.Source}: prompt + answer is {prompt.Length + completion.Length} tokens, longer than the context ({maxLength}) after tokenization");
            else list.Add(new TokenizedSequence(prompt, completion));
        }
        if (errors.Count > 0) throw new SeedDataException(errors);
        return list;
    }
}

public static partial class DpoTrainer
{
    /// <summary>
    /// The trainer service's entry point for DPO: loads the parent as the policy (and, with
    /// <see cref="ReferenceMode.Live"/>, a second frozen copy as the reference), drops pairs longer than the
    /// context (counted in <see cref="TrainingResult.TooLong"/>, never truncated), computes the reference
    /// log-probs once when the pairs do not carry them, trains on a dedicated thread (resuming from the
    /// state directory), and writes the HF checkpoint plus training_meta.json.
    /// </summary>
    /// <param name="executor">the thread to run on; null starts a dedicated thread for this job.</param>
    public static Task<TrainingResult> RunAsync(DpoJob job, IProgress<TrainingProgress>? progress = null, CancellationToken cancel = default, ModelExecutor? executor = null) =>
        JobRunner.OnThread(executor, $"srlm-dpo-{job.JobId}", () => Run(job, progress, cancel), cancel);

    private static TrainingResult Run(DpoJob job, IProgress<TrainingProgress>? progress, CancellationToken cancel)
    {
        TorchRuntime.Initialise();
        job.Options.Validate();
        var parentConfig = LlamaConfig.Load(Path.Combine(job.ParentCheckpoint, Checkpoint.ConfigFile));
        using var lm = JobRunner.LoadParent(job.ParentCheckpoint, job.Options.Dropout);
        var (pairs, given, tooLong) = Tokenize(lm, job.Pairs, JobRunner.MaxLength(job.Options, lm.Config));
        if (pairs.Count == 0)
            throw new InvalidOperationException($"DPO job {job.JobId}: no pairs left to train on ({tooLong} of {job.Pairs.Count} longer than the context)");
        if (job.Options.ReplayPerPair > 0 && job.Replay.Count == 0)
            throw new ArgumentException($"DPO job {job.JobId}: ReplayPerPair = {job.Options.ReplayPerPair} but the job has no replay examples");
        var replay = job.Options.ReplayPerPair > 0 ? SftTrainer.Tokenize(lm, job.Replay, JobRunner.MaxLength(job.Options, lm.Config)) : [];
        var parentHashes = JobRunner.WeightHashes(job.ParentCheckpoint);
        var fingerprint = JobRunner.Fingerprint("dpo", job.Options, parentHashes, h =>
        {
            foreach (var p in pairs) { JobRunner.AddIds(h, p.Prompt); JobRunner.AddIds(h, p.Chosen); JobRunner.AddIds(h, p.Rejected); }
            foreach (var e in replay) { JobRunner.AddIds(h, e.Prompt); JobRunner.AddIds(h, e.Completion); }
        });
        var store = new TrainingStateStore(job.StateDirectory);
        if (given is not null && store.TryReadFile(ReferenceFile) is null)
            store.WriteFileAtomic(ReferenceFile, JsonSerializer.SerializeToUtf8Bytes(new StoredReference(pairs.Select(p => p.Id).ToArray(), given.Value.Chosen, given.Value.Rejected)));
        LanguageModel? reference = job.Options.Reference == ReferenceMode.Live ? JobRunner.LoadParent(job.ParentCheckpoint, 0) : null;
        try
        {
            var run = Train(lm.Model, pairs, job.Options, store, job.JobId, fingerprint, reference?.Model, progress, cancel, replay);
            return JobRunner.WriteOutput("dpo", job.JobId, job.ParentCheckpoint, job.DatasetId, job.OutputDirectory,
                lm, parentConfig, job.Options, run, store, parentHashes, tooLong);
        }
        finally { reference?.Dispose(); }
    }

    /// <summary>Tokenizes pairs; those longer than the context are dropped and counted. Returns the reference
    /// log-probs when every kept pair carries them.</summary>
    public static (List<TokenizedPair> Pairs, (float[] Chosen, float[] Rejected)? Reference, int TooLong) Tokenize(
        LanguageModel lm, IReadOnlyList<PreferencePair> pairs, int maxLength)
    {
        var list = new List<TokenizedPair>(pairs.Count);
        var kept = new List<PreferencePair>(pairs.Count);
        int tooLong = 0;
        foreach (var p in pairs)
        {
            var prompt = JobRunner.EncodePrompt(lm, p.Prompt);
            var chosen = JobRunner.EncodeCompletion(lm, p.Chosen);
            var rejected = JobRunner.EncodeCompletion(lm, p.Rejected);
            if (prompt.Length + Math.Max(chosen.Length, rejected.Length) > maxLength) { tooLong++; continue; }
            list.Add(new TokenizedPair(p.Id, prompt, chosen, rejected));
            kept.Add(p);
        }
        (float[], float[])? reference = null;
        if (kept.Count > 0 && kept.All(p => p.ReferenceChosenLogp is not null && p.ReferenceRejectedLogp is not null))
            reference = (kept.Select(p => (float)p.ReferenceChosenLogp!.Value).ToArray(), kept.Select(p => (float)p.ReferenceRejectedLogp!.Value).ToArray());
        return (list, reference, tooLong);
    }
}
