namespace Srlm.Tests.Tasks;

public class CheckerTests
{
    private const string Letters = "Pick 5 letters from a c f k m p t in alphabetical order, from c to t.";
    private readonly LettersTask _letters = new();
    private readonly AdditionTask _addition = new();

    [Theory]
    [InlineData("cfkmt")]
    [InlineData("ckmpt")]
    [InlineData("cfkpt")]
    [InlineData("  cfmpt\n")]
    [InlineData("c f k m t")] // the written form: whitespace between letters does not count
    [InlineData("c k m p t")]
    public void Letters_checker_accepts_right_answers(string answer)
    {
        var g = _letters.CheckKnown(Letters, answer);
        Assert.True(g.Correct);
        Assert.Equal(5, g.Score);
        Assert.EndsWith("\nScore: 5", g.Judgement);
    }

    [Theory]
    [InlineData("cfkm", 3, "last m asked t no")]          // stops early: wrong last letter and length
    [InlineData("cfkmpt", 4, "length 6 asked 5 no")]      // runs on: one letter too many
    [InlineData("cfmkt", 4, "order breaks at k")]    // two letters swapped
    [InlineData("cfkqt", 4, "letter q not allowed")] // a letter that was not offered
    [InlineData("tfkmc", 2, "first t asked c no")]        // reversed ends
    [InlineData("CFKMT", 2, "letter C not allowed")] // capitals are not the offered letters
    [InlineData("c f t", 4, "length 3 asked 5 no")]
    [InlineData("I do not know", 0, "first I asked c no")]
    public void Letters_checker_rejects_wrong_answers_with_the_rubric_score(string answer, int score, string evidence)
    {
        var g = _letters.CheckKnown(Letters, answer);
        Assert.False(g.Correct);
        Assert.Equal(score, g.Score);
        Assert.Equal(score, g.Criteria.Count(c => c.Met));
        Assert.Contains(evidence, g.Judgement);
        Assert.EndsWith($"\nScore: {score}", g.Judgement);
    }

    [Fact]
    public void Letters_judgement_lists_each_criterion_with_a_running_total()
    {
        var g = _letters.CheckKnown(Letters, "cfkm");
        Assert.Equal("c1 f2 k3 m4: letters ok 1, first c asked c ok 2, last m asked t no 2, length 4 asked 5 no 2, order ok 3.\nScore: 3", g.Judgement);
    }

    [Theory]
    [InlineData("Pick five letters from a c f k m p t in alphabetical order, from c to t.")]
    [InlineData("Pick 5 letters from a c f k m p tt in alphabetical order, from c to t.")]
    [InlineData("What is 12 + 30?")]
    [InlineData("write a poem")]
    public void Letters_checker_returns_null_for_instructions_of_another_family(string instruction) =>
        Assert.Null(_letters.Check(instruction, "cfkmt"));

    [Fact]
    public void Letters_generator_makes_solvable_instructions_with_several_right_answers()
    {
        var rng = new TaskRng(7);
        for (int i = 0; i < 300; i++)
        {
            var ins = _letters.NewInstruction(rng);
            var answers = Enumerable.Range(0, 40).Select(_ => _letters.Solve(ins, rng)).ToHashSet();
            Assert.All(answers, a => Assert.True(_letters.CheckKnown(ins, a).Correct, $"{ins} -> {a}"));
            Assert.True(answers.Count >= 2, $"only one right answer found for: {ins}");
        }
    }

    [Fact]
    public void Answers_with_a_requested_score_grade_exactly_that_score()
    {
        var rng = new TaskRng(11);
        foreach (var family in TaskFamilies.All)
            for (int i = 0; i < 60; i++)
            {
                var ins = family.NewInstruction(rng);
                for (int s = 0; s <= 5; s++)
                {
                    var a = family.AnswerWithScore(ins, s, rng);
                    Assert.Equal(s, family.CheckKnown(ins, a).Score);
                }
            }
    }

    [Theory]
    [InlineData("81", 5)]
    [InlineData(" 81 ", 5)]
    [InlineData("82", 4)]
    [InlineData("77", 3)]
    [InlineData("70", 2)]
    [InlineData("30", 1)]
    [InlineData("eighty-one", 0)]
    [InlineData("81 apples", 0)]
    public void Addition_checker_grades_by_distance_from_the_sum(string answer, int score)
    {
        var g = _addition.CheckKnown("What is 23 + 58?", answer);
        Assert.Equal(score, g.Score);
        Assert.Equal(score == 5, g.Correct);
        Assert.EndsWith($"\nScore: {score}", g.Judgement);
    }

    [Fact]
    public void Addition_solver_is_right_and_foreign_instructions_are_not_graded()
    {
        Assert.Equal("81", _addition.Solve("What is 23 + 58?", new TaskRng(1)));
        Assert.Null(_addition.Check(Letters, "81"));
    }
}
