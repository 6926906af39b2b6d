namespace Srlm.Training;

/// <summary>Per-batch DPO statistics, named the way the metrics read them (trl's names).</summary>
public sealed record DpoBatchStats(
    double RewardsChosen, double RewardsRejected, double RewardsAccuracies, double RewardsMargins,
    double LogpsChosen, double LogpsRejected, int Pairs)
{
    /// <summary>Adds these means (weighted by pairs) into a metric dictionary under trl's keys.</summary>
    public static Dictionary<string, double> Average(IReadOnlyList<DpoBatchStats> parts, string prefix = "")
    {
        var n = parts.Sum(p => p.Pairs);
        double W(Func<DpoBatchStats, double> f) => n == 0 ? 0 : parts.Sum(p => f(p) * p.Pairs) / n;
        return new Dictionary<string, double>
        {
            [prefix + "rewards/chosen"] = W(p => p.RewardsChosen),
            [prefix + "rewards/rejected"] = W(p => p.RewardsRejected),
            [prefix + "rewards/accuracies"] = W(p => p.RewardsAccuracies),
            [prefix + "rewards/margins"] = W(p => p.RewardsMargins),
            [prefix + "logps/chosen"] = W(p => p.LogpsChosen),
            [prefix + "logps/rejected"] = W(p => p.LogpsRejected),
        };
    }
}

/// <summary>The DPO objective on summed completion log-probabilities.</summary>
public static class DpoLoss
{
    /// <summary>
    /// Per-pair DPO losses (B) for summed log-probs of the chosen and rejected completions under the
    /// policy (with gradient) and the reference (constants), and the batch's statistics read back. The caller
    /// reduces the losses (sum / effective batch).
    /// </summary>
    public static (Tensor Losses, DpoBatchStats Stats) Compute(
        Tensor policyChosen, Tensor policyRejected, Tensor referenceChosen, Tensor referenceRejected, double beta) =>
        (Losses(policyChosen, policyRejected, referenceChosen, referenceRejected, beta),
         Stats(policyChosen, policyRejected, referenceChosen, referenceRejected, beta));

    /// <summary>Per-pair DPO losses (B) on the inputs' device; nothing is read back.</summary>
    public static Tensor Losses(Tensor policyChosen, Tensor policyRejected, Tensor referenceChosen, Tensor referenceRejected, double beta)
    {
        if (beta <= 0) throw new ArgumentOutOfRangeException(nameof(beta), beta, "DPO beta must be > 0");
        using var scope = NewDisposeScope();
        // (B) each; reference values carry no gradient.
        var refChosen = referenceChosen.detach();
        var refRejected = referenceRejected.detach();
        // Rafailov et al. 2023, eq. 7: L = -log sigma(beta * [(log pi(yw|x) - log ref(yw|x)) - (log pi(yl|x) - log ref(yl|x))])
        var logits = (policyChosen - refChosen) - (policyRejected - refRejected);
        var losses = -MetaFallback.LogSigmoid(logits * beta);
        return losses.MoveToOuterDisposeScope();
    }

    /// <summary>The batch's rewards and log-prob means (trl's names), read back to the host.</summary>
    public static DpoBatchStats Stats(Tensor policyChosen, Tensor policyRejected, Tensor referenceChosen, Tensor referenceRejected, double beta)
    {
        if (beta <= 0) throw new ArgumentOutOfRangeException(nameof(beta), beta, "DPO beta must be > 0");
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var refChosen = referenceChosen.detach();
        var refRejected = referenceRejected.detach();
        var rewardsChosen = (policyChosen.detach() - refChosen) * beta;
        var rewardsRejected = (policyRejected.detach() - refRejected) * beta;
        return new DpoBatchStats(
            RewardsChosen: rewardsChosen.mean().ToDouble(),
            RewardsRejected: rewardsRejected.mean().ToDouble(),
            RewardsAccuracies: (rewardsChosen > rewardsRejected).to_type(ScalarType.Float64).mean().ToDouble(),
            RewardsMargins: (rewardsChosen - rewardsRejected).mean().ToDouble(),
            LogpsChosen: policyChosen.detach().mean().ToDouble(),
            LogpsRejected: policyRejected.detach().mean().ToDouble(),
            Pairs: (int)policyChosen.shape[0]);
    }
}
