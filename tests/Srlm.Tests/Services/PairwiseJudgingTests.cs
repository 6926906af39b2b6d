namespace Srlm.Tests.Services;

/// <summary>evaluation.judge_mode "pairwise": reading `Winner:` verdicts and the order-swap rule.</summary>
public sealed class PairwiseJudgingTests
{
    [Theory]
    [InlineData("Reply A covers more.\nWinner: A", PairwiseVerdict.A)]
    [InlineData("Winner: B", PairwiseVerdict.B)]
    [InlineData("winner: b.", PairwiseVerdict.B)]
    [InlineData("Neither is better.\nWinner: tie", PairwiseVerdict.Tie)]
    [InlineData("**Winner:** Tie", PairwiseVerdict.Tie)]
    [InlineData("Winner: [A]", PairwiseVerdict.A)]
    // The last label decides: a justification may quote another verdict.
    [InlineData("One might say Winner: A, but B is exact.\nWinner: B", PairwiseVerdict.B)]
    public void A_readable_verdict_is_A_B_or_tie(string text, PairwiseVerdict expected)
    {
        var (verdict, error) = PairwiseJudging.Parse(text);
        Assert.Null(error);
        Assert.Equal(expected, verdict);
    }

    [Theory]
    [InlineData("", "empty output")]
    [InlineData("A is better.", "no `Winner:` label")]
    [InlineData("Winner: both", "not followed by A, B or tie")]
    [InlineData("Winner: A\nOn reflection, Winner: neither", "not followed by A, B or tie")]
    [InlineData("Winner: Assistant A", "not followed by A, B or tie")]
    [InlineData("Winner:", "not followed by A, B or tie")]
    public void An_unreadable_verdict_is_never_a_guess(string text, string reason)
    {
        var (verdict, error) = PairwiseJudging.Parse(text);
        Assert.Null(verdict);
        Assert.Contains(reason, error);
    }

    [Theory]
    [InlineData(PairwiseVerdict.A, PairwiseVerdict.B, PairwiseOutcome.Win)]   // both orders pick the checkpoint
    [InlineData(PairwiseVerdict.B, PairwiseVerdict.A, PairwiseOutcome.Loss)]  // both orders pick the baseline
    [InlineData(PairwiseVerdict.A, PairwiseVerdict.A, PairwiseOutcome.Tie)]   // a judge that picks the first answer
    [InlineData(PairwiseVerdict.B, PairwiseVerdict.B, PairwiseOutcome.Tie)]   // ... or the second
    [InlineData(PairwiseVerdict.Tie, PairwiseVerdict.B, PairwiseOutcome.Tie)]
    [InlineData(PairwiseVerdict.A, PairwiseVerdict.Tie, PairwiseOutcome.Tie)]
    [InlineData(PairwiseVerdict.Tie, PairwiseVerdict.Tie, PairwiseOutcome.Tie)]
    [InlineData(null, PairwiseVerdict.B, PairwiseOutcome.Unjudged)]
    [InlineData(PairwiseVerdict.A, null, PairwiseOutcome.Unjudged)]
    public void A_win_needs_both_orders_to_agree(PairwiseVerdict? checkpointFirst, PairwiseVerdict? baselineFirst, PairwiseOutcome expected) =>
        Assert.Equal(expected, PairwiseJudging.Combine(checkpointFirst, baselineFirst));

    [Fact]
    public void The_prompt_fills_both_answers_in_one_pass()
    {
        var prompt = PairwiseJudging.Format("Say {response_b}", "first {instruction}", "second");
        Assert.Contains("Request: Say {response_b}\n<reply_a>first {instruction}</reply_a>\n<reply_b>second</reply_b>", prompt);
        Assert.EndsWith("\"Winner: A\", \"Winner: B\" or \"Winner: tie\".", prompt);
    }
}
