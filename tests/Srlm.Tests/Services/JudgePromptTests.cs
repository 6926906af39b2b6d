using Srlm.Contracts.Judging;

namespace Srlm.Tests.Services;

public class JudgePromptTests
{
    [Fact]
    public void Default_template_holds_the_additive_rubric_and_ends_with_the_score_format()
    {
        var text = JudgePrompt.Format(null, "What is 2 + 3?", "5");
        Assert.Contains("Request: What is 2 + 3?", text);
        Assert.Contains("<reply>5</reply>", text);
        Assert.Contains("5th point", text);
        Assert.EndsWith("\"Score: <points>\".", text);
        Assert.DoesNotContain("{instruction}", text);
        Assert.DoesNotContain("{response}", text);
    }

    [Fact]
    public void Placeholders_inside_the_instruction_or_response_are_left_alone()
    {
        var text = JudgePrompt.Format("Q: {instruction}\nA: {response}\n", "say {response}", " {instruction}");
        Assert.Equal("Q: say {response}\nA:  {instruction}\n", text);
    }

    [Fact]
    public void An_empty_spec_template_means_the_default()
    {
        Assert.Equal(JudgePrompt.Format(null, "a", "b"), JudgePrompt.Format("", "a", "b"));
    }
}
