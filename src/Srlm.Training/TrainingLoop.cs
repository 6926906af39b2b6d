using System.Diagnostics;

namespace Srlm.Training;

/// <summary>What one micro-batch contributed: its share of the loss (already divided by the batch
/// normalizer), the tokens it ran through the model, and DPO statistics when the job is DPO.</summary>
internal readonly record struct MicroResult(double Loss, long Tokens, DpoBatchStats? Dpo);

/// <summary>
/// The optimizer loop shared by SFT and DPO: the data plan (seeded split, shuffling, length buckets),
/// AdamW, warm-up + cosine schedule, gradient accumulation, clipping, per-step dropout seeding,
/// validation, metrics, and atomic resumable state. Runs synchronously on the calling thread.
/// </summary>
internal sealed class TrainingLoop
{
    public required string Kind { get; init; }
    public required string JobId { get; init; }
    public required LlamaForCausalLM Model { get; init; }
    public required TrainerOptions Options { get; init; }
    public required int Count { get; init; }
    /// <summary>Tokens of item i (for length buckets and micro-batch grouping).</summary>
    public required Func<int, int> LengthOf { get; init; }
    /// <summary>Loss normalizer weight of item i (SFT: completion tokens; DPO: 1).</summary>
    public required Func<int, double> WeightOf { get; init; }
    /// <summary>Forward + backward of one micro-batch; the loss must be divided by the given normalizer.</summary>
    public required Func<int[], double, MicroResult> TrainMicro { get; init; }
    /// <summary>Validation metrics (eval/ keys) and a score where higher is better.</summary>
    public required Func<int[], (Dictionary<string, double> Metrics, double Score)> Evaluate { get; init; }
    public required int BucketBatches { get; init; }
    public required string Fingerprint { get; init; }
    public required TrainingStateStore Store { get; init; }
    public IProgress<TrainingProgress>? Progress { get; init; }

    public int[] ValidationIndices { get; private set; } = [];
    public TrainingStateInfo? Final { get; private set; }
    public bool Resumed { get; private set; }

    public void Run(CancellationToken cancel)
    {
        var o = Options;
        var saved = Store.TryLoadLatest();
        if (saved is not null && saved.JobFingerprint != Fingerprint)
            throw new InvalidOperationException($"training state in {Store.Directory} belongs to another job (different data, options or parent); use a fresh state directory");
        var plan = saved ?? NewPlan();
        ValidationIndices = plan.Validation;

        var parameters = Model.parameters().Where(p => p.requires_grad).ToList();
        // Decay matrices only; norms and biases keep their scale (the usual AdamW practice).
        var decay = Model.named_parameters().Where(p => p.parameter.requires_grad && p.parameter.dim() >= 2).Select(p => p.parameter).ToList();
        var noDecay = Model.named_parameters().Where(p => p.parameter.requires_grad && p.parameter.dim() < 2).Select(p => p.parameter).ToList();
        var groups = new List<AdamW.ParamGroup> {
            new(decay, lr: o.LearningRate, beta1: o.AdamBeta1, beta2: o.AdamBeta2, eps: o.AdamEpsilon, weight_decay: o.WeightDecay) };
        if (noDecay.Count > 0)
            groups.Add(new(noDecay, lr: o.LearningRate, beta1: o.AdamBeta1, beta2: o.AdamBeta2, eps: o.AdamEpsilon, weight_decay: 0));
        using var optimizer = optim.AdamW(groups, o.LearningRate, o.AdamBeta1, o.AdamBeta2, o.AdamEpsilon, o.WeightDecay);

        if (saved is not null)
        {
            Store.LoadLatestInto(Model, optimizer);
            Resumed = true;
        }
        var schedule = new LearningRateSchedule(o.LearningRate, o.MinLearningRate, o.WarmupSteps, plan.TotalSteps);
        var log = plan.Log;
        int? bestStep = plan.BestStep;
        double? bestScore = plan.BestScore;
        double seconds = plan.Seconds;
        var window = new List<(double Loss, long Tokens, double Seconds, double GradNorm, List<DpoBatchStats> Dpo)>();

        TrainingStateInfo Snapshot(int step) => plan with { Step = step, Log = log, BestStep = bestStep, BestScore = bestScore, Seconds = seconds };

        for (int step = plan.Step; step < plan.TotalSteps; step++)
        {
            if (cancel.IsCancellationRequested)
            {
                Store.Save(Snapshot(step), Model, optimizer); // state saved when cancelled
                cancel.ThrowIfCancellationRequested();
            }
            var sw = Stopwatch.StartNew();
            double lr = schedule.At(step);
            foreach (var g in optimizer.ParamGroups) g.LearningRate = lr;
            // The RNG state of a step is a function of (seed, step): a resumed job draws the same dropout masks.
            var stepSeed = DeterministicRandom.Derive(o.Seed, step, salt: 0xD0);
            torch.random.manual_seed(stepSeed); // libtorch's CPU generator only
            if (Model.Device.type == DeviceType.CUDA) torch.cuda.manual_seed_all(stepSeed); // dropout on a GPU draws from its own generator
            Model.train();
            optimizer.zero_grad();

            var batch = plan.Batches[step];
            double normalizer = batch.Sum(WeightOf);
            double loss = 0; long tokens = 0;
            var dpo = new List<DpoBatchStats>();
            foreach (var micro in MicroBatches(batch))
            {
                var r = TrainMicro(micro, normalizer);
                loss += r.Loss; tokens += r.Tokens;
                if (r.Dpo is not null) dpo.Add(r.Dpo);
            }
            double gradNorm = nn.utils.clip_grad_norm_(parameters, o.MaxGradNorm > 0 ? o.MaxGradNorm : 1e30);
            optimizer.step();
            sw.Stop();
            seconds += sw.Elapsed.TotalSeconds;
            window.Add((loss, tokens, sw.Elapsed.TotalSeconds, gradNorm, dpo));

            int done = step + 1;
            if (done % o.LogEverySteps == 0 || done == plan.TotalSteps)
            {
                var row = new Dictionary<string, double>
                {
                    ["step"] = done,
                    ["epoch"] = EpochOf(plan, step),
                    ["loss"] = window.Average(w => w.Loss),
                    ["learning_rate"] = lr,
                    ["grad_norm"] = window.Average(w => w.GradNorm),
                    ["tokens_per_s"] = window.Sum(w => w.Tokens) / Math.Max(1e-9, window.Sum(w => w.Seconds)),
                };
                var allDpo = window.SelectMany(w => w.Dpo).ToList();
                if (allDpo.Count > 0) foreach (var kv in DpoBatchStats.Average(allDpo)) row[kv.Key] = kv.Value;
                window.Clear();
                log.Add(row);
                Progress?.Report(new TrainingProgress(JobId, "train", done, plan.TotalSteps, row));
            }

            bool validateNow = ValidationIndices.Length > 0 &&
                ((o.ValidateEverySteps > 0 && done % o.ValidateEverySteps == 0) || done == plan.TotalSteps);
            if (validateNow)
            {
                var (metrics, score) = RunEvaluation();
                metrics["step"] = done;
                log.Add(metrics);
                Progress?.Report(new TrainingProgress(JobId, "eval", done, plan.TotalSteps, metrics));
                if (o.Keep == KeepCheckpoint.Best && (bestScore is null || score > bestScore))
                {
                    bestScore = score; bestStep = done;
                    Store.SaveBest(Model);
                }
            }

            if ((o.SaveStateEverySteps > 0 && done % o.SaveStateEverySteps == 0) || done == plan.TotalSteps)
                Store.Save(Snapshot(done), Model, optimizer);
        }
        Final = Snapshot(plan.TotalSteps);
    }

    /// <summary>Validation metrics with the model in eval mode (no dropout, no gradient).</summary>
    public (Dictionary<string, double> Metrics, double Score) RunEvaluation()
    {
        var was = Model.training;
        Model.eval();
        try
        {
            using var _ = no_grad();
            return Evaluate(ValidationIndices);
        }
        finally { Model.train(was); }
    }

    /// <summary>Splits a batch into micro-batches of similar lengths (sorted by length, stable).</summary>
    public IEnumerable<int[]> MicroBatches(int[] batch) =>
        batch.OrderBy(LengthOf).ThenBy(i => i).Chunk(Options.MicroBatchSize);

    private static double EpochOf(TrainingStateInfo plan, int step) =>
        plan.StepsPerEpoch == 0 ? 0 : (double)(step + 1) / plan.StepsPerEpoch;

    /// <summary>The seeded data plan: validation split, then per epoch a shuffle, length buckets and a shuffled batch order.</summary>
    private TrainingStateInfo NewPlan()
    {
        var o = Options;
        var all = Enumerable.Range(0, Count).ToArray();
        new DeterministicRandom((ulong)DeterministicRandom.Derive(o.Seed, 0, salt: 0x5A)).Shuffle(all);
        int nVal = o.ValidationFraction > 0 ? Math.Max(1, (int)Math.Round(Count * o.ValidationFraction)) : 0;
        if (nVal >= Count) throw new ArgumentException($"validation split ({nVal}) leaves no training examples out of {Count}");
        var validation = all.Take(nVal).Order().ToArray();
        var train = all.Skip(nVal).Order().ToArray();

        var batches = new List<int[]>();
        int perEpoch = 0;
        for (int epoch = 0; epoch < o.Epochs; epoch++)
        {
            var order = (int[])train.Clone();
            new DeterministicRandom((ulong)DeterministicRandom.Derive(o.Seed, epoch, salt: 0x5B)).Shuffle(order);
            var epochBatches = new List<int[]>();
            foreach (var window in order.Chunk(o.BatchSize * BucketBatches))
            {
                var sorted = BucketBatches > 1 ? window.OrderBy(LengthOf).ThenBy(i => i).ToArray() : window;
                epochBatches.AddRange(sorted.Chunk(o.BatchSize));
            }
            if (BucketBatches > 1) new DeterministicRandom((ulong)DeterministicRandom.Derive(o.Seed, epoch, salt: 0x5C)).Shuffle(epochBatches);
            batches.AddRange(epochBatches);
            perEpoch = epochBatches.Count;
        }
        int total = o.MaxSteps > 0 ? Math.Min(o.MaxSteps, batches.Count) : batches.Count;
        return new TrainingStateInfo
        {
            Kind = Kind, Step = 0, TotalSteps = total, Seed = o.Seed, JobFingerprint = Fingerprint,
            Batches = batches.Take(total).ToArray(), Validation = validation, StepsPerEpoch = perEpoch,
        };
    }
}
