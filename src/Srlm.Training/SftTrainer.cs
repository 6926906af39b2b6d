namespace Srlm.Training;

/// <summary>Supervised fine-tuning: cross-entropy on completion tokens only (the prompt is masked).</summary>
public static partial class SftTrainer
{
    /// <summary>
    /// Trains <paramref name="model"/> in place on tokenized examples on the calling thread. The loss of
    /// an optimizer step is the mean over every completion token of its whole (accumulated) batch.
    /// </summary>
    public static TrainingRun Train(LlamaForCausalLM model, IReadOnlyList<TokenizedSequence> examples, SftOptions options,
        TrainingStateStore store, string jobId, string fingerprint,
        IProgress<TrainingProgress>? progress = null, CancellationToken cancel = default)
    {
        options.Validate();
        if (examples.Count == 0) throw new ArgumentException("no examples to train on");

        // Summed negative log-likelihood of the completion tokens of a micro-batch (a scalar tensor).
        (Tensor Nll, long Tokens) Nll(int[] micro)
        {
            var seqs = micro.Select(i => examples[i]).ToList();
            using var batch = TokenLogProbs.Collate(seqs, model.Device);
            var nll = -LogProbs.Compute(model, batch).PerToken.sum();    // PerToken (m, T-1) is zero outside the completions
            return (nll, seqs.Sum(s => (long)s.Length));
        }

        var loop = new TrainingLoop
        {
            Kind = "sft", JobId = jobId, Model = model, Options = options, Count = examples.Count,
            LengthOf = i => examples[i].Length, WeightOf = i => examples[i].Completion.Length,
            TrainMicro = (micro, normalizer) =>
            {
                using var scope = NewDisposeScope();
                var (nll, tokens) = Nll(micro);
                var loss = nll / normalizer;
                loss.backward();
                return new MicroResult(loss.ToDouble(), tokens, null);
            },
            Evaluate = val =>
            {
                double nll = 0, n = 0;
                foreach (var micro in val.OrderBy(i => examples[i].Length).ThenBy(i => i).Chunk(options.MicroBatchSize))
                {
                    using var scope = NewDisposeScope();
                    nll += Nll(micro).Nll.ToDouble();
                    n += micro.Sum(i => examples[i].Completion.Length);
                }
                var loss = nll / n;
                return (new Dictionary<string, double> { ["eval/loss"] = loss }, -loss);
            },
            BucketBatches = options.BucketBatches, Fingerprint = fingerprint, Store = store, Progress = progress,
        };
        loop.Run(cancel);
        return TrainingRun.From(loop);
    }

    /// <summary>Mean completion-token loss of <paramref name="examples"/> under <paramref name="model"/> (eval mode, no gradient).</summary>
    public static double HeldOutLoss(LlamaForCausalLM model, IReadOnlyList<TokenizedSequence> examples, int microBatchSize = 8)
    {
        var was = model.training;
        model.eval();
        try
        {
            using var _ = no_grad();
            double nll = 0, n = 0;
            foreach (var micro in examples.Chunk(microBatchSize))
            {
                using var scope = NewDisposeScope();
                using var batch = TokenLogProbs.Collate(micro, model.Device);
                nll += (-LogProbs.Compute(model, batch).PerToken.sum()).ToDouble();
                n += micro.Sum(s => s.Completion.Length);
            }
            return nll / n;
        }
        finally { model.train(was); }
    }
}
