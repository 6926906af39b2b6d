namespace Srlm.Training;

/// <summary>A tokenized preference pair; reference log-probs are the sums under the frozen reference
/// (null until computed).</summary>
public sealed record TokenizedPair(string Id, int[] Prompt, int[] Chosen, int[] Rejected)
{
    public TokenizedSequence ChosenSequence => new(Prompt, Chosen);
    public TokenizedSequence RejectedSequence => new(Prompt, Rejected);
    public int Length => Prompt.Length + Math.Max(Chosen.Length, Rejected.Length);
}

/// <summary>DPO (Rafailov et al. 2023): the policy against a frozen reference, one forward over [chosen; rejected].</summary>
public static partial class DpoTrainer
{
    internal const string ReferenceFile = "reference_logps.json";

    internal sealed record StoredReference(string[] Ids, float[] Chosen, float[] Rejected);

    /// <summary>
    /// Summed completion log-probs of every pair under <paramref name="model"/> in eval mode without
    /// gradient: (chosen, rejected), each as float32 exactly as the live reference computes them.
    /// </summary>
    public static (float[] Chosen, float[] Rejected) ComputeLogps(LlamaForCausalLM model, IReadOnlyList<TokenizedPair> pairs, int microBatchSize, CancellationToken cancel = default)
    {
        var was = model.training;
        model.eval();
        try
        {
            using var _ = no_grad();
            var chosen = new float[pairs.Count];
            var rejected = new float[pairs.Count];
            // Same grouping as training (sorted by length, then index), so padding matches the live reference.
            foreach (var micro in Enumerable.Range(0, pairs.Count).OrderBy(i => pairs[i].Length).ThenBy(i => i).Chunk(microBatchSize))
            {
                cancel.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                using var both = PolicyLogps(model, micro.Select(i => pairs[i]).ToList()).cpu(); // the numbers leave the engine here
                var logps = both.data<float>().ToArray();
                for (int k = 0; k < micro.Length; k++)
                {
                    chosen[micro[k]] = logps[k];
                    rejected[micro[k]] = logps[micro.Length + k];
                }
            }
            return (chosen, rejected);
        }
        finally { model.train(was); }
    }

    /// <summary>One forward over [chosen; rejected]: summed completion log-probs (2m): chosen first.</summary>
    internal static Tensor PolicyLogps(LlamaForCausalLM model, IReadOnlyList<TokenizedPair> micro)
    {
        using var scope = NewDisposeScope();
        var seqs = micro.Select(p => p.ChosenSequence).Concat(micro.Select(p => p.RejectedSequence));
        using var batch = TokenLogProbs.Collate(seqs, model.Device);
        return LogProbs.Compute(model, batch).Sum.MoveToOuterDisposeScope(); // (2m) on the model's device
    }

    /// <summary>The stored reference log-probs of the pairs <paramref name="micro"/> as (m) tensors on the policy's device.</summary>
    public static (Tensor Chosen, Tensor Rejected) StoredReferenceLogps(float[] chosen, float[] rejected, int[] micro, Device device) =>
        (tensor(micro.Select(i => chosen[i]).ToArray(), device: device), tensor(micro.Select(i => rejected[i]).ToArray(), device: device));

    /// <summary>
    /// The loss of one micro-batch, divided by <paramref name="normalizer"/>, as a scalar tensor on the policy's device,
    /// and the policy's summed log-probs (2m, chosen first). Nothing is read back to the host, so it runs on any device
    /// (tests run it on libtorch's meta device): DPO (eq. 7), plus <see cref="DpoOptions.NllWeight"/> times the chosen
    /// answer's NLL per token, plus <see cref="DpoOptions.ReplayWeight"/> times each replayed example's NLL per token.
    /// </summary>
    public static (Tensor Loss, Tensor PolicyLogps) MicroLoss(LlamaForCausalLM policy, IReadOnlyList<TokenizedPair> microPairs,
        Tensor referenceChosen, Tensor referenceRejected, DpoOptions options, double normalizer, IReadOnlyList<TokenizedSequence> replayed)
    {
        using var scope = NewDisposeScope();
        int m = microPairs.Count;
        var both = PolicyLogps(policy, microPairs); // (2m)
        var losses = DpoLoss.Losses(both.narrow(0, 0, m), both.narrow(0, m, m), referenceChosen, referenceRejected, options.Beta);
        if (options.NllWeight > 0)
        {
            // + alpha * NLL of the chosen answer per token (its summed log-prob over its length).
            var lengths = tensor(microPairs.Select(p => (float)p.Chosen.Length).ToArray(), device: both.device);
            using var alpha = options.NllWeight.ToScalar();
            losses = losses + (-both.narrow(0, 0, m) / lengths) * alpha;
        }
        var loss = losses.sum() / normalizer;
        if (replayed.Count > 0)
        {
            using var batch = TokenLogProbs.Collate(replayed, policy.Device);
            var summed = LogProbs.Compute(policy, batch).Sum;
            var lengths = tensor(replayed.Select(q => (float)q.Completion.Length).ToArray(), device: summed.device);
            using var weight = (options.ReplayWeight / normalizer).ToScalar();
            loss = loss + (-(summed / lengths)).sum() * weight;
        }
        return (loss.MoveToOuterDisposeScope(), both.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Trains <paramref name="policy"/> in place on tokenized pairs on the calling thread. With
    /// <paramref name="liveReference"/> null the reference log-probs are computed once with the policy's
    /// starting weights before the first step (or read back from the state folder when resuming);
    /// otherwise the live model is run without gradient beside the policy every micro-batch.
    /// </summary>
    public static TrainingRun Train(LlamaForCausalLM policy, IReadOnlyList<TokenizedPair> pairs, DpoOptions options,
        TrainingStateStore store, string jobId, string fingerprint, LlamaForCausalLM? liveReference = null,
        IProgress<TrainingProgress>? progress = null, CancellationToken cancel = default, IReadOnlyList<TokenizedSequence>? replay = null)
    {
        options.Validate();
        if (pairs.Count == 0) throw new ArgumentException("no preference pairs to train on");
        replay ??= [];
        if (options.ReplayPerPair > 0 && replay.Count == 0) throw new ArgumentException($"ReplayPerPair = {options.ReplayPerPair} but no replay examples were given");
        // Pair i replays examples order[(i * R + r) % count], r < R: a fixed, seeded assignment, so a resumed
        // job replays exactly what an uninterrupted one would.
        var replayOrder = Enumerable.Range(0, replay.Count).ToArray();
        new DeterministicRandom(unchecked((ulong)options.Seed) ^ 0x5EED_2E91A7UL).Shuffle(replayOrder);
        if (liveReference is null != (options.Reference == ReferenceMode.Precomputed))
            throw new ArgumentException($"options.Reference = {options.Reference} but a live reference was {(liveReference is null ? "not " : "")}given");

        float[]? refChosen = null, refRejected = null;
        if (liveReference is null)
        {
            var stored = store.TryReadFile(ReferenceFile);
            if (stored is not null)
            {
                var r = JsonSerializer.Deserialize<StoredReference>(stored)!;
                if (!r.Ids.SequenceEqual(pairs.Select(p => p.Id)))
                    throw new InvalidOperationException($"{Path.Combine(store.Directory, ReferenceFile)} was computed for other pairs; use a fresh state directory");
                (refChosen, refRejected) = (r.Chosen, r.Rejected);
            }
            else
            {
                if (store.TryLoadLatest() is not null)
                    throw new InvalidOperationException($"{store.Directory}: training state without {ReferenceFile}; the reference can no longer be recomputed from the policy");
                (refChosen, refRejected) = ComputeLogps(policy, pairs, options.MicroBatchSize, cancel);
                store.WriteFileAtomic(ReferenceFile, JsonSerializer.SerializeToUtf8Bytes(new StoredReference(pairs.Select(p => p.Id).ToArray(), refChosen, refRejected)));
            }
        }
        else
        {
            liveReference.eval();
            foreach (var p in liveReference.parameters()) p.requires_grad_(false);
        }

        (Tensor Chosen, Tensor Rejected) Reference(int[] micro, IReadOnlyList<TokenizedPair> microPairs)
        {
            if (liveReference is null) return StoredReferenceLogps(refChosen!, refRejected!, micro, policy.Device);
            using var _ = no_grad();
            var both = PolicyLogps(liveReference, microPairs);
            int m = micro.Length;
            return (both.narrow(0, 0, m), both.narrow(0, m, m));
        }

        MicroResult Step(int[] micro, double normalizer, bool backward)
        {
            using var scope = NewDisposeScope();
            var microPairs = micro.Select(i => pairs[i]).ToList();
            int m = micro.Length;
            var (rc, rr) = Reference(micro, microPairs);
            // Training only: validation compares DPO losses, with or without replay.
            var replayed = backward && options.ReplayPerPair > 0 && options.ReplayWeight > 0
                ? micro.SelectMany(i => Enumerable.Range(0, options.ReplayPerPair)
                    .Select(r => replay[replayOrder[(int)(((long)i * options.ReplayPerPair + r) % replay.Count)]])).ToList()
                : [];
            var (loss, both) = MicroLoss(policy, microPairs, rc, rr, options, normalizer, replayed);
            var stats = DpoLoss.Stats(both.narrow(0, 0, m), both.narrow(0, m, m), rc, rr, options.Beta);
            long tokens = microPairs.Sum(p => (long)p.Prompt.Length * 2 + p.Chosen.Length + p.Rejected.Length)
                + replayed.Sum(q => (long)q.Prompt.Length + q.Completion.Length);
            if (backward) loss.backward();
            return new MicroResult(loss.ToDouble(), tokens, stats);
        }

        var loop = new TrainingLoop
        {
            Kind = "dpo", JobId = jobId, Model = policy, Options = options, Count = pairs.Count,
            LengthOf = i => pairs[i].Length, WeightOf = _ => 1.0,
            TrainMicro = (micro, norm) => Step(micro, norm, backward: true),
            Evaluate = val =>
            {
                double loss = 0;
                var stats = new List<DpoBatchStats>();
                foreach (var micro in val.OrderBy(i => pairs[i].Length).ThenBy(i => i).Chunk(options.MicroBatchSize))
                {
                    var r = Step(micro, val.Length, backward: false);
                    loss += r.Loss; stats.Add(r.Dpo!);
                }
                var metrics = DpoBatchStats.Average(stats, "eval/");
                metrics["eval/loss"] = loss;
                // Higher is better: reward accuracy, ties broken by lower loss.
                return (metrics, metrics["eval/rewards/accuracies"] - 1e-6 * loss);
            },
            BucketBatches = 1, Fingerprint = fingerprint, Store = store, Progress = progress,
        };
        loop.Run(cancel);
        return TrainingRun.From(loop);
    }
}

/// <summary>The outcome of a training loop on an in-memory model.</summary>
public sealed record TrainingRun(TrainingStateInfo State, int TrainExamples, int ValidationExamples, bool Resumed)
{
    internal static TrainingRun From(TrainingLoop loop) =>
        new(loop.Final!, loop.Count - loop.ValidationIndices.Length, loop.ValidationIndices.Length, loop.Resumed);

    /// <summary>The last "train" row merged with the last "eval" row.</summary>
    public IReadOnlyDictionary<string, double> FinalMetrics
    {
        get
        {
            var d = new Dictionary<string, double>();
            var train = State.Log.LastOrDefault(r => r.ContainsKey("loss"));
            var eval = State.Log.LastOrDefault(r => r.ContainsKey("eval/loss"));
            if (train is not null) foreach (var kv in train) d[kv.Key] = kv.Value;
            if (eval is not null) foreach (var kv in eval) if (kv.Key != "step") d[kv.Key] = kv.Value;
            return d;
        }
    }
}
