namespace Srlm.Tests.Services;

public class ScoreParserTests
{
    [Theory]
    [InlineData("Relevant and correct.\nScore: 4", 4)]
    [InlineData("score:0", 0)]
    [InlineData("**Score:** 5", 5)]
    [InlineData("Score: 3/5", 3)]
    [InlineData("Score: 2.0", 2)]
    [InlineData("It earns points.\nScore: 3.\n", 3)]
    public void A_well_formed_score_is_read(string text, int expected)
    {
        var parsed = ScoreParser.Parse(text);
        Assert.True(parsed.IsValid, parsed.Error);
        Assert.Equal(expected, parsed.Score);
    }

    [Fact]
    public void The_last_score_wins()
    {
        var parsed = ScoreParser.Parse("An earlier draft said Score: 1, but on reflection\nScore: 4");
        Assert.Equal(4, parsed.Score);
    }

    [Fact]
    public void A_last_label_without_a_number_is_unparseable_even_after_a_valid_one()
    {
        var parsed = ScoreParser.Parse("Score: 4\nThen the output was cut off. Score:");
        Assert.False(parsed.IsValid);
        Assert.Null(parsed.Score);
    }

    [Theory]
    [InlineData("Score: 6")]
    [InlineData("Score: -1")]
    [InlineData("Score: 45")]
    [InlineData("Score: 3.5")]
    [InlineData("Score: 4/10")]
    public void Out_of_range_or_fractional_scores_are_unparseable(string text)
    {
        var parsed = ScoreParser.Parse(text);
        Assert.False(parsed.IsValid);
        Assert.NotNull(parsed.Error);
    }

    [Theory]
    [InlineData("")]
    [InlineData("   ")]
    [InlineData(null)]
    [InlineData("the answer is great, 5 points")]
    [InlineData("Score: four")]
    [InlineData("Sc0re: 4")]
    public void Garbage_is_unparseable_and_never_a_number(string? text)
    {
        var parsed = ScoreParser.Parse(text);
        Assert.False(parsed.IsValid);
        Assert.Null(parsed.Score);
    }

    [Fact]
    public void Max_score_bounds_the_range()
    {
        Assert.Equal(10, ScoreParser.Parse("Score: 10", maxScore: 10).Score);
        Assert.False(ScoreParser.Parse("Score: 10", maxScore: 5).IsValid);
    }

    [Fact]
    public void Mean_uses_only_valid_samples_and_is_null_when_none_are_valid()
    {
        var samples = new[] { ScoreParser.Parse("Score: 2"), ScoreParser.Parse("nonsense"), ScoreParser.Parse("Score: 5") };
        Assert.Equal(3.5, ScoreParser.Mean(samples));
        Assert.Null(ScoreParser.Mean([ScoreParser.Parse("x"), ScoreParser.Parse("Score: 9")]));
    }
}
