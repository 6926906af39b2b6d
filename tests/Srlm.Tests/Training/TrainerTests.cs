namespace Srlm.Tests.Training;

[Collection(TrainingCollection.Name)]
public class TrainerTests
{
    private static readonly SftOptions Sft = new()
    {
        LearningRate = 1e-2, MinLearningRate = 1e-3, WarmupSteps = 2, BatchSize = 8, MicroBatchSize = 4,
        Epochs = 6, Dropout = 0, SaveStateEverySteps = 0, Seed = 3,
    };

    private static readonly DpoOptions Dpo = new()
    {
        LearningRate = 2e-3, MinLearningRate = 2e-4, WarmupSteps = 2, BatchSize = 8, MicroBatchSize = 4,
        Epochs = 4, SaveStateEverySteps = 0, Seed = 5, Beta = 0.1,
    };

    [Fact]
    public void Nll_weight_adds_the_chosen_answers_per_token_nll_to_the_dpo_loss_and_keeps_its_likelihood_up()
    {
        using var dir = new Tiny.TempDir();
        var one = Tiny.PreferenceTask(1, 9);
        var single = Dpo with { BatchSize = 1, MicroBatchSize = 1, MaxSteps = 1, LogEverySteps = 1, WarmupSteps = 0 };
        List<IReadOnlyDictionary<string, double>> Rows(DpoOptions o, string name, IReadOnlyList<TokenizedPair> data)
        {
            using var model = Tiny.Model();
            var rows = new List<TrainingProgress>();
            DpoTrainer.Train(model, data, o, new TrainingStateStore(dir.Sub(name)), "t", "f", progress: new SyncProgress(rows));
            return rows.Where(r => r.Kind == "train").Select(r => r.Metrics).ToList();
        }
        var plain = Rows(single, "plain", one)[0];
        var withNll = Rows(single with { NllWeight = 0.5 }, "nll", one)[0];
        // Step 1's loss is measured before the update, on identical weights: the difference is exactly alpha * NLL / tokens.
        double expected = plain["loss"] + 0.5 * (-plain["logps/chosen"] / one[0].Chosen.Length);
        Assert.Equal(expected, withNll["loss"], 4);
        Assert.Equal(plain["logps/chosen"], withNll["logps/chosen"], 5);

        var data = Tiny.PreferenceTask(32, 4);
        var lastPlain = Rows(Dpo with { Epochs = 3 }, "plain-long", data)[^1];
        var lastNll = Rows(Dpo with { Epochs = 3, NllWeight = 1.0 }, "nll-long", data)[^1];
        Assert.True(lastNll["logps/chosen"] > lastPlain["logps/chosen"], $"chosen log-prob with NLL {lastNll["logps/chosen"]:F3}, plain {lastPlain["logps/chosen"]:F3}");
    }

    private static double MeanNll(LlamaForCausalLM model, IReadOnlyList<TokenizedSequence> seqs)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        model.eval();
        using var batch = TokenLogProbs.Collate(seqs, model.Device);
        var summed = LogProbs.Compute(model, batch).Sum.data<float>().ToArray();
        model.train();
        return seqs.Select((q, i) => -summed[i] / q.Completion.Length).Average();
    }

    [Fact]
    public void Replay_adds_each_replayed_examples_per_token_nll_keeps_that_data_learned_and_resumes_bit_identically()
    {
        using var dir = new Tiny.TempDir();
        var one = Tiny.PreferenceTask(1, 9);
        var replayOne = Tiny.SuccessorTask(1, 5);
        var single = Dpo with { BatchSize = 1, MicroBatchSize = 1, MaxSteps = 1, LogEverySteps = 1, WarmupSteps = 0 };
        IReadOnlyDictionary<string, double> FirstRow(DpoOptions o, string name, IReadOnlyList<TokenizedSequence>? replay)
        {
            using var model = Tiny.Model();
            var rows = new List<TrainingProgress>();
            DpoTrainer.Train(model, one, o, new TrainingStateStore(dir.Sub(name)), "t", "f", progress: new SyncProgress(rows), replay: replay);
            return rows.First(r => r.Kind == "train").Metrics;
        }
        double replayNll;
        using (var fresh = Tiny.Model()) replayNll = MeanNll(fresh, replayOne);
        var plain = FirstRow(single, "plain", null);
        var withReplay = FirstRow(single with { ReplayPerPair = 1, ReplayWeight = 0.5 }, "replay", replayOne);
        // Step 1's loss is measured on identical weights: the difference is exactly weight * the replayed example's NLL per token.
        Assert.Equal(plain["loss"] + 0.5 * replayNll, withReplay["loss"], 4);
        Assert.Throws<ArgumentException>(() => FirstRow(single with { ReplayPerPair = 1 }, "none", []));

        // Over a longer run, the replayed data (an SFT task the pairs never show) ends far better learned than without replay.
        var pairs = Tiny.PreferenceTask(32, 4);
        var replay = Tiny.SuccessorTask(64, 6);
        var options = Dpo with { Epochs = 3, ReplayPerPair = 2, SaveStateEverySteps = 2 };
        using var without = Tiny.Model();
        DpoTrainer.Train(without, pairs, options with { ReplayPerPair = 0 }, new TrainingStateStore(dir.Sub("without")), "t", "f");
        using var with = Tiny.Model();
        DpoTrainer.Train(with, pairs, options, new TrainingStateStore(dir.Sub("with")), "t", "f", replay: replay);
        double nllWithout = MeanNll(without, replay), nllWith = MeanNll(with, replay);
        Assert.True(nllWith < 0.8 * nllWithout, $"replayed data NLL/token with replay {nllWith:F3}, without {nllWithout:F3}");

        // Cancelled at step 3 and resumed: the same pairs and the same replayed examples, bit for bit.
        using var cts = new CancellationTokenSource();
        using (var first = Tiny.Model())
        {
            var stopAt3 = new SyncProgress([], p => { if (p.Step == 3) cts.Cancel(); });
            Assert.ThrowsAny<OperationCanceledException>(() =>
                DpoTrainer.Train(first, pairs, options, new TrainingStateStore(dir.Sub("resumed")), "t", "f", progress: stopAt3, cancel: cts.Token, replay: replay));
        }
        using var resumed = Tiny.Model(seed: 99);
        Assert.True(DpoTrainer.Train(resumed, pairs, options, new TrainingStateStore(dir.Sub("resumed")), "t", "f", replay: replay).Resumed);
        Tiny.AssertBitIdentical(Tiny.Weights(with), Tiny.Weights(resumed));
    }

    [Fact]
    public void Collate_masks_the_prompt_and_the_padding()
    {
        using var batch = TokenLogProbs.Collate([new([1, 5, 6], [7, 2]), new([1, 9], [2])], CPU);
        Assert.Equal(new long[] { 1, 5, 6, 7, 2, 1, 9, 2, 0, 0 }, batch.InputIds.data<long>().ToArray());
        Assert.Equal(new long[] { 5, 6, 7, 2, 9, 2, 0, 0 }, batch.Labels.contiguous().data<long>().ToArray());
        // labels 7 and 2 of row 0 are completion; label 2 of row 1 is completion.
        Assert.Equal(new float[] { 0, 0, 1, 1, 0, 1, 0, 0 }, batch.CompletionMask.data<float>().ToArray());
        Assert.Equal(new long[] { 2, 3, 5 }, batch.CompletionRows.data<long>().ToArray()); // the mask's ones, in order
    }

    [Theory]
    [InlineData("sft")]
    [InlineData("dpo")]
    public void One_step_at_a_large_learning_rate_changes_every_parameter(string trainer)
    {
        using var dir = new Tiny.TempDir();
        using var model = Tiny.Model();
        var before = Tiny.Weights(model);
        var state = new TrainingStateStore(dir.Sub("state"));
        if (trainer == "sft")
            SftTrainer.Train(model, Tiny.SuccessorTask(8, 1), Sft with { LearningRate = 1e-2, MinLearningRate = 1e-2, WarmupSteps = 0, MaxSteps = 1 }, state, "t", "f");
        else
            DpoTrainer.Train(model, Tiny.PreferenceTask(8, 1), Dpo with { LearningRate = 1e-2, MinLearningRate = 1e-2, WarmupSteps = 0, MaxSteps = 1 }, state, "t", "f");
        var after = Tiny.Weights(model);
        foreach (var (name, w) in before)
            Assert.True(!w.SequenceEqual(after[name]), $"{trainer}: {name} did not change");
    }

    [Fact]
    public void Sft_lowers_held_out_loss()
    {
        using var dir = new Tiny.TempDir();
        using var model = Tiny.Model();
        var heldOut = Tiny.SuccessorTask(32, 99);
        var before = SftTrainer.HeldOutLoss(model, heldOut);
        var rows = new List<TrainingProgress>();
        var run = SftTrainer.Train(model, Tiny.SuccessorTask(64, 1), Sft with { Epochs = 4, ValidationFraction = 0.125, ValidateEverySteps = 10 },
            new TrainingStateStore(dir.Sub("state")), "t", "f", new SyncProgress(rows));
        var after = SftTrainer.HeldOutLoss(model, heldOut);
        Assert.True(after < before * 0.75, $"held-out loss {before:F3} -> {after:F3}");
        Assert.Equal(56, run.TrainExamples);
        Assert.Equal(8, run.ValidationExamples);
        var eval = rows.Where(r => r.Kind == "eval").ToList();
        Assert.True(eval.Count >= 2);
        Assert.True(eval[^1].Metrics["eval/loss"] < eval[0].Metrics["eval/loss"]);
        var train = rows.First(r => r.Kind == "train").Metrics;
        foreach (var key in new[] { "loss", "learning_rate", "grad_norm", "tokens_per_s", "epoch" }) Assert.True(train.ContainsKey(key), key);
    }

    [Fact]
    public void Dpo_drives_reward_accuracy_above_0_9_and_the_margin_up()
    {
        using var dir = new Tiny.TempDir();
        using var model = Tiny.Model();
        var rows = new List<TrainingProgress>();
        DpoTrainer.Train(model, Tiny.PreferenceTask(64, 1), Dpo, new TrainingStateStore(dir.Sub("state")), "t", "f", progress: new SyncProgress(rows));
        var train = rows.Where(r => r.Kind == "train").Select(r => r.Metrics).ToList();
        var first = train[0]; var last = train[^1];
        Assert.True(last["rewards/accuracies"] > 0.9, $"accuracy {last["rewards/accuracies"]}");
        Assert.True(last["rewards/margins"] > first["rewards/margins"] + 0.5, $"margin {first["rewards/margins"]} -> {last["rewards/margins"]}");
        Assert.True(last["loss"] < first["loss"]);
        foreach (var key in new[] { "rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected" }) Assert.True(last.ContainsKey(key), key);
    }

    [Fact]
    public void Precomputed_reference_logps_give_the_same_loss_as_a_live_reference()
    {
        using var dir = new Tiny.TempDir();
        var pairs = Tiny.PreferenceTask(16, 2);
        var options = Dpo with { MaxSteps = 3, LogEverySteps = 1 };
        using var pre = Tiny.Model();
        var preRows = new List<TrainingProgress>();
        DpoTrainer.Train(pre, pairs, options, new TrainingStateStore(dir.Sub("a")), "t", "f", progress: new SyncProgress(preRows));

        using var live = Tiny.Model();
        using var reference = Tiny.Model();
        var liveRows = new List<TrainingProgress>();
        DpoTrainer.Train(live, pairs, options with { Reference = ReferenceMode.Live }, new TrainingStateStore(dir.Sub("b")), "t", "f",
            liveReference: reference, progress: new SyncProgress(liveRows));

        Assert.Equal(3, preRows.Count);
        for (int i = 0; i < 3; i++)
            foreach (var key in new[] { "loss", "rewards/chosen", "rewards/margins" })
                Assert.Equal(liveRows[i].Metrics[key], preRows[i].Metrics[key], 6);
        // The first step's loss is log 2 with either: the policy starts at the reference.
        Assert.Equal(Math.Log(2), preRows[0].Metrics["loss"], 6);
    }

    [Fact]
    public void Same_seed_and_data_give_bit_identical_weights_with_dropout()
    {
        Dictionary<string, float[]> Run(string state)
        {
            using var model = Tiny.Model(dropout: 0.1);
            SftTrainer.Train(model, Tiny.SuccessorTask(32, 1), Sft with { Epochs = 2, Dropout = 0.1 }, new TrainingStateStore(state), "t", "f");
            return Tiny.Weights(model);
        }
        using var dir = new Tiny.TempDir();
        var a = Run(dir.Sub("a"));
        var b = Run(dir.Sub("b"));
        Tiny.AssertBitIdentical(a, b);
        // A different seed must give different weights (else the check above proves nothing about the seed).
        using var other = Tiny.Model(dropout: 0.1);
        SftTrainer.Train(other, Tiny.SuccessorTask(32, 1), Sft with { Epochs = 2, Dropout = 0.1, Seed = 4 }, new TrainingStateStore(dir.Sub("c")), "t", "f");
        Assert.NotEqual(a["lm_head.weight"], Tiny.Weights(other)["lm_head.weight"]);
    }

    [Fact]
    public void Cancelled_then_resumed_in_process_gives_bit_identical_weights()
    {
        using var dir = new Tiny.TempDir();
        var data = Tiny.PreferenceTask(32, 3);
        var options = Dpo with { Epochs = 2, SaveStateEverySteps = 2, Dropout = 0.1 };
        using var straight = Tiny.Model(dropout: 0.1);
        DpoTrainer.Train(straight, data, options, new TrainingStateStore(dir.Sub("a")), "t", "f");

        using var cts = new CancellationTokenSource();
        using (var first = Tiny.Model(dropout: 0.1))
        {
            var stopAt3 = new SyncProgress([], p => { if (p.Step == 3) cts.Cancel(); });
            Assert.ThrowsAny<OperationCanceledException>(() =>
                DpoTrainer.Train(first, data, options, new TrainingStateStore(dir.Sub("b")), "t", "f", progress: stopAt3, cancel: cts.Token));
        }
        Assert.Equal(3, new TrainingStateStore(dir.Sub("b")).TryLoadLatest()!.Step);
        using var resumed = Tiny.Model(seed: 1234, dropout: 0.1); // different starting weights: the state must overwrite them
        var run = DpoTrainer.Train(resumed, data, options, new TrainingStateStore(dir.Sub("b")), "t", "f");
        Assert.True(run.Resumed);
        Tiny.AssertBitIdentical(Tiny.Weights(straight), Tiny.Weights(resumed));
    }

    [Fact]
    public void State_of_another_job_is_refused()
    {
        using var dir = new Tiny.TempDir();
        using var model = Tiny.Model();
        var store = new TrainingStateStore(dir.Sub("s"));
        SftTrainer.Train(model, Tiny.SuccessorTask(8, 1), Sft with { MaxSteps = 1 }, store, "t", "job-a");
        var e = Assert.Throws<InvalidOperationException>(() => SftTrainer.Train(model, Tiny.SuccessorTask(8, 1), Sft with { MaxSteps = 1 }, store, "t", "job-b"));
        Assert.Contains("belongs to another job", e.Message);
    }
}

/// <summary>IProgress that records synchronously (Progress&lt;T&gt; posts to the thread pool).</summary>
internal sealed class SyncProgress(List<TrainingProgress> rows, Action<TrainingProgress>? also = null) : IProgress<TrainingProgress>
{
    public void Report(TrainingProgress value) { rows.Add(value); also?.Invoke(value); }
}
