namespace Srlm.Tests.Training;

[Collection(TrainingCollection.Name)]
public class DpoLossTests
{
    [Fact]
    public void Loss_metrics_and_gradient_equal_values_computed_by_hand()
    {
        const double beta = 0.5;
        using var pc = tensor(new[] { -1.0, -2.0 }, ScalarType.Float64).requires_grad_();
        using var pr = tensor(new[] { -1.5, -1.0 }, ScalarType.Float64).requires_grad_();
        using var rc = tensor(new[] { -1.2, -2.0 }, ScalarType.Float64).requires_grad_();
        using var rr = tensor(new[] { -1.2, -1.5 }, ScalarType.Float64).requires_grad_();

        var (losses, stats) = DpoLoss.Compute(pc, pr, rc, rr, beta);
        using var _ = losses;
        using var total = losses.sum();
        total.backward();

        // Pair 0: (pc - rc) - (pr - rr) = 0.2 - (-0.3) = 0.5; beta * 0.5 = 0.25; loss = log(1 + e^-0.25) = 0.57593942...
        // Pair 1: (0) - (0.5) = -0.5; beta * -0.5 = -0.25; loss = log(1 + e^0.25) = 0.82593942...
        var l = losses.data<double>().ToArray();
        Assert.Equal(0.5759394198, l[0], 9);
        Assert.Equal(0.8259394198, l[1], 9);
        Assert.Equal(Math.Log(1 + Math.Exp(-0.25)), l[0], 12);
        Assert.Equal(Math.Log(1 + Math.Exp(0.25)), l[1], 12);

        // dL/dpc = -beta * sigmoid(-beta z), dL/dpr = +beta * sigmoid(-beta z).
        // Pair 0: sigmoid(-0.25) = 0.43782350 -> 0.21891175; pair 1: sigmoid(0.25) = 0.56217650 -> 0.28108825.
        var gc = pc.grad!.data<double>().ToArray();
        var gr = pr.grad!.data<double>().ToArray();
        Assert.Equal(-0.2189117496, gc[0], 9);
        Assert.Equal(-0.2810882504, gc[1], 9);
        Assert.Equal(0.2189117496, gr[0], 9);
        Assert.Equal(0.2810882504, gr[1], 9);
        // The reference is a constant: no gradient reaches it.
        Assert.True(rc.grad is null || rc.grad.abs().sum().ToDouble() == 0);
        Assert.True(rr.grad is null || rr.grad.abs().sum().ToDouble() == 0);

        // rewards = beta * (policy - reference): chosen [0.1, 0], rejected [-0.15, 0.25].
        Assert.Equal(0.05, stats.RewardsChosen, 12);
        Assert.Equal(0.05, stats.RewardsRejected, 12);
        Assert.Equal(0.5, stats.RewardsAccuracies, 12);
        Assert.Equal(0.0, stats.RewardsMargins, 12);
        Assert.Equal(-1.5, stats.LogpsChosen, 12);
        Assert.Equal(-1.25, stats.LogpsRejected, 12);
        Assert.Equal(2, stats.Pairs);
    }

    [Fact]
    public void Metrics_average_weighted_by_pairs_under_trl_names()
    {
        var a = new DpoBatchStats(1, 0, 1, 1, -1, -2, 1);
        var b = new DpoBatchStats(0, 0, 0, 0, -4, -5, 3);
        var m = DpoBatchStats.Average([a, b], "eval/");
        Assert.Equal(0.25, m["eval/rewards/chosen"]);
        Assert.Equal(0.25, m["eval/rewards/accuracies"]);
        Assert.Equal(-3.25, m["eval/logps/chosen"]);
        Assert.Equal(-4.25, m["eval/logps/rejected"]);
    }

    [Fact]
    public void Beta_must_be_positive()
    {
        using var t = zeros(1);
        Assert.Throws<ArgumentOutOfRangeException>(() => DpoLoss.Compute(t, t, t, t, 0));
    }
}

public class LearningRateScheduleTests
{
    [Fact]
    public void Warms_up_linearly_then_decays_by_cosine_to_the_floor()
    {
        var s = new LearningRateSchedule(Peak: 1e-3, Floor: 1e-4, WarmupSteps: 4, TotalSteps: 14);
        Assert.Equal(0.25e-3, s.At(0), 15);
        Assert.Equal(0.5e-3, s.At(1), 15);
        Assert.Equal(1e-3, s.At(3), 15);
        Assert.Equal(1e-3, s.At(4), 15);                           // decay starts at the peak
        Assert.Equal(1e-4 + 0.9e-3 * 0.5 * (1 + Math.Cos(Math.PI * 4 / 9.0)), s.At(8), 15);
        Assert.Equal(1e-4, s.At(13), 15);                          // the last step is at the floor
        for (int i = 5; i < 14; i++) Assert.True(s.At(i) < s.At(i - 1));
    }
}
