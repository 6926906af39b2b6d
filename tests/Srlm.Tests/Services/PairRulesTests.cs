namespace Srlm.Tests.Services;

public class PairRulesTests
{
    private static readonly PairRulesSpec Plain = new();
    private static readonly PairRulesSpec LengthControlled = new() { LengthControl = new() { Enabled = true, Margin = 0.5 } };

    private static JudgedCandidate C(int index, double? score, int tokens = 10) => new($"p/c{index}", index, score, tokens);

    [Fact]
    public void Chosen_is_the_highest_mean_and_rejected_the_lowest()
    {
        var d = PairRules.Decide([C(0, 3), C(1, 4.5), C(2, 1), C(3, 2)], 20, 512, Plain);
        Assert.True(d.IsPair);
        Assert.Equal("p/c1", d.Chosen!.CandidateId);
        Assert.Equal("p/c2", d.Rejected!.CandidateId);
    }

    [Fact]
    public void Equal_best_and_worst_scores_drop_the_prompt_as_a_tie()
    {
        var d = PairRules.Decide([C(0, 4), C(1, 4), C(2, null), C(3, 4)], 20, 512, Plain);
        Assert.Equal(DropReason.DroppedTies, d.Dropped);
        Assert.Equal("dropped_ties", PairDecision.CounterName(d.Dropped!.Value));
    }

    [Fact]
    public void A_gap_below_min_margin_is_a_tie_and_a_gap_at_it_is_a_pair()
    {
        var near = new[] { C(0, 4 + 2 / 3.0), C(1, 4), C(2, 4.3333333333333333), C(3, 4) };
        Assert.True(PairRules.Decide(near, 20, 512, Plain).IsPair); // the paper's rule: any gap pairs
        Assert.Equal(DropReason.DroppedTies, PairRules.Decide(near, 20, 512, Plain with { MinMargin = 1 }).Dropped);
        var wide = new[] { C(0, 5), C(1, 4), C(2, 4.5), C(3, 4.3333333333333333) };
        var d = PairRules.Decide(wide, 20, 512, Plain with { MinMargin = 1 });
        Assert.True(d.IsPair);
        Assert.Equal(("p/c0", "p/c1"), (d.Chosen!.CandidateId, d.Rejected!.CandidateId));
    }

    [Fact]
    public void Fewer_valid_scores_than_the_minimum_drop_the_prompt_as_other()
    {
        var d = PairRules.Decide([C(0, 5), C(1, null), C(2, null), C(3, null)], 20, 512, Plain);
        Assert.Equal(DropReason.DroppedOther, d.Dropped);
        var strict = PairRules.Decide([C(0, 5), C(1, 1), C(2, null), C(3, null)], 20, 512, Plain with { MinValidScores = 3 });
        Assert.Equal(DropReason.DroppedOther, strict.Dropped);
    }

    [Fact]
    public void A_pair_longer_than_the_context_is_dropped_as_too_long()
    {
        var d = PairRules.Decide([C(0, 5, tokens: 10), C(1, 1, tokens: 90)], 20, 100, Plain);
        Assert.Equal(DropReason.TooLong, d.Dropped);
        var fits = PairRules.Decide([C(0, 5, tokens: 10), C(1, 1, tokens: 80)], 20, 100, Plain);
        Assert.True(fits.IsPair);
    }

    [Fact]
    public void Equal_scores_are_broken_by_candidate_index_whatever_the_input_order()
    {
        var a = PairRules.Decide([C(2, 5), C(0, 5), C(3, 1), C(1, 1)], 20, 512, Plain);
        Assert.Equal("p/c0", a.Chosen!.CandidateId);
        Assert.Equal("p/c1", a.Rejected!.CandidateId);
    }

    [Fact]
    public void Length_control_prefers_the_shorter_near_best_and_the_longer_near_worst()
    {
        var cands = new[] { C(0, 5, tokens: 80), C(1, 4.67, tokens: 20), C(2, 1, tokens: 10), C(3, 1.33, tokens: 60) };
        var plain = PairRules.Decide(cands, 20, 512, Plain);
        Assert.Equal(("p/c0", "p/c2"), (plain.Chosen!.CandidateId, plain.Rejected!.CandidateId));
        var controlled = PairRules.Decide(cands, 20, 512, LengthControlled);
        Assert.Equal(("p/c1", "p/c3"), (controlled.Chosen!.CandidateId, controlled.Rejected!.CandidateId));
    }

    [Fact]
    public void Length_control_never_chooses_an_answer_scored_at_or_below_the_rejected_one()
    {
        // Spread 0.33 is inside the margin: the shortest near-best would be the worst candidate.
        var cands = new[] { C(0, 3.33, tokens: 50), C(1, 3, tokens: 5) };
        var d = PairRules.Decide(cands, 20, 512, LengthControlled);
        Assert.True(d.IsPair);
        Assert.Equal("p/c0", d.Chosen!.CandidateId);
        Assert.Equal("p/c1", d.Rejected!.CandidateId);
        Assert.True(d.Chosen.Score > d.Rejected.Score);
    }

    private static JudgedCandidate Cut(int index, double? score, int tokens = 10) => new($"p/c{index}", index, score, tokens, Cut: true);

    [Fact]
    public void A_cut_candidate_is_never_chosen_with_drop_it_takes_no_part()
    {
        // The best score belongs to a cut answer: "drop" pairs the best and worst of the uncut ones.
        var d = PairRules.Decide([Cut(0, 5), C(1, 4), C(2, 1), Cut(3, 0)], 20, 512, Plain);
        Assert.True(d.IsPair);
        Assert.Equal(("p/c1", "p/c2"), (d.Chosen!.CandidateId, d.Rejected!.CandidateId));
    }

    [Fact]
    public void With_lowest_a_cut_candidate_may_be_rejected_but_never_chosen()
    {
        var lowest = Plain with { Truncated = PairRulesSpec.TruncatedLowest };
        var d = PairRules.Decide([Cut(0, 5), C(1, 4), C(2, 2), Cut(3, 0)], 20, 512, lowest);
        Assert.Equal(("p/c1", "p/c3"), (d.Chosen!.CandidateId, d.Rejected!.CandidateId));
        // Length control also picks the chosen side from uncut answers only.
        var lc = LengthControlled with { Truncated = PairRulesSpec.TruncatedLowest };
        var e = PairRules.Decide([Cut(0, 5, 3), C(1, 4.8, 30), C(2, 1, 5), Cut(3, 1, 40)], 20, 512, lc);
        Assert.Equal(("p/c1", "p/c3"), (e.Chosen!.CandidateId, e.Rejected!.CandidateId));
    }

    [Fact]
    public void Too_few_uncut_candidates_is_its_own_drop_reason()
    {
        var d = PairRules.Decide([Cut(0, 5), C(1, 4), Cut(2, 1), Cut(3, 0)], 20, 512, Plain);
        Assert.Equal(DropReason.DroppedTruncated, d.Dropped);
        Assert.Equal("dropped_truncated", PairDecision.CounterName(d.Dropped!.Value));
        // With "lowest" every answer cut leaves nothing to choose.
        Assert.Equal(DropReason.DroppedTruncated,
            PairRules.Decide([Cut(0, 5), Cut(1, 1)], 20, 512, Plain with { Truncated = PairRulesSpec.TruncatedLowest }).Dropped);
        // Too few valid scores at all stays dropped_other.
        Assert.Equal(DropReason.DroppedOther, PairRules.Decide([Cut(0, 5), C(1, null), C(2, null)], 20, 512, Plain).Dropped);
    }
}
