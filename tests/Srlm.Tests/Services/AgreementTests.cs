namespace Srlm.Tests.Services;

public class AgreementTests
{
    [Fact]
    public void Pairwise_accuracy_counts_only_pairs_of_different_true_quality_and_ties_or_missing_predictions_as_wrong()
    {
        var items = new List<(string, double, double?)>
        {
            ("a", 5, 4.0), ("a", 1, 2.0), ("a", 3, 3.0),   // pairs: (5,1) right, (5,3) right, (1,3) right
            ("b", 4, 2.0), ("b", 2, 2.0),                   // (4,2) tie in prediction: wrong
            ("c", 3, null), ("c", 1, 1.0),                  // missing prediction: wrong
            ("d", 2, 5.0), ("d", 2, 1.0),                   // equal true quality: not a pair
        };
        Assert.Equal(3.0 / 5.0, Agreement.PairwiseAccuracy(items), 9);
    }

    [Fact]
    public void Spearman_and_kendall_are_one_for_the_same_order_and_minus_one_for_the_reverse()
    {
        double[] truth = [1, 2, 3, 4, 5];
        Assert.Equal(1.0, Agreement.Spearman(truth, [10, 20, 30, 40, 50]), 9);
        Assert.Equal(-1.0, Agreement.Spearman(truth, [5, 4, 3, 2, 1]), 9);
        Assert.Equal(1.0, Agreement.KendallTauB(truth, [0.1, 0.2, 0.3, 0.4, 0.5]), 9);
        Assert.Equal(-1.0, Agreement.KendallTauB(truth, [9, 8, 7, 6, 5]), 9);
    }

    [Fact]
    public void Kendall_tau_b_corrects_for_ties()
    {
        // x = 1,2,3 ; y = 1,1,2 : concordant 2, discordant 0, ties only in y 1 -> 2 / sqrt(3 * 2).
        Assert.Equal(2 / Math.Sqrt(6), Agreement.KendallTauB([1, 2, 3], [1, 1, 2]), 9);
        // Spearman with average ranks: ranks y = 1.5,1.5,3 against 1,2,3.
        Assert.Equal(0.8660254037844386, Agreement.Spearman([1, 2, 3], [1, 1, 2]), 9);
    }

    [Fact]
    public void Undefined_agreement_is_nan_not_a_number_made_up()
    {
        Assert.True(double.IsNaN(Agreement.Spearman([1], [1])));
        Assert.True(double.IsNaN(Agreement.KendallTauB([1, 1], [2, 2])));
        Assert.True(double.IsNaN(Agreement.PairwiseAccuracy([("a", 1, 1.0), ("a", 1, 2.0)])));
    }
}
