namespace Srlm.Tests.Services;

public class JudgePromptTests
{
    private static string SourceDir([System.Runtime.CompilerServices.CallerFilePath] string path = "") => Path.GetDirectoryName(path)!;

    [Fact]
    public void The_default_is_the_paper_template_its_five_criteria_in_the_papers_order_then_a_justification_and_Score()
    {
        var text = JudgePrompt.Format(null, "What is 2 + 3?", "5");
        Assert.Equal(text, JudgePrompt.Format(JudgePrompt.Paper, "What is 2 + 3?", "5"));
        Assert.Contains("Request: What is 2 + 3?\n<response>5</response>", text);
        // Figure 2 of Yuan et al. 2024: relevance, a substantial part, the core usefully, clear assistant answer, expert answer.
        var order = new[] { "Award 1 point if the reply is relevant", "Award a 2nd point if the reply addresses a substantial part",
            "Award a 3rd point if the reply answers the basic elements", "Award a 4th point if the reply is written clearly from an AI assistant's point of view",
            "Award a 5th point if the reply is tailored to the request", "in no more than 100 words", "Score: <total points>" };
        var at = order.Select(p => text.IndexOf(p, StringComparison.Ordinal)).ToArray();
        Assert.All(at, i => Assert.True(i >= 0));
        Assert.Equal(at.Order(), at);
        Assert.DoesNotContain("{instruction}", text);
        Assert.DoesNotContain("{response}", text);
    }

    [Fact]
    public void A_spec_may_name_the_paper_template_and_a_bad_template_is_still_refused()
    {
        var spec = Srlm.Contracts.Spec.RunSpecJson.Parse("""{ "models": { "m1": "m" }, "seed_data": { "ift": "i" }, "judge": { "template": "paper" } }""");
        Assert.Equal(JudgePrompt.PaperTemplate.Replace("{instruction}", "q").Replace("{response}", "r"), JudgePrompt.Format(spec.Judge.Template, "q", "r"));
        var e = Assert.Throws<Srlm.Contracts.Spec.RunSpecException>(() =>
            Srlm.Contracts.Spec.RunSpecJson.Parse("""{ "models": { "m1": "m" }, "seed_data": { "ift": "i" }, "judge": { "template": "papers" } }"""));
        Assert.Contains("spec.judge.template: must contain {instruction}", e.Message);
    }

    [Fact]
    public void The_judge_prompt_is_one_user_message_rendered_by_the_checkpoints_chat_template()
    {
        var dir = Path.Combine(Path.GetTempPath(), $"srlm-judge-chat-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            // SmolLM2-Instruct's template (tests/Srlm.Tests/ChatTemplates/corpus), with its default system turn.
            var template = File.ReadAllText(Path.Combine(SourceDir(), "..", "ChatTemplates", "corpus", "smollm2-instruct.jinja"));
            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), new System.Text.Json.Nodes.JsonObject
            {
                ["eos_token"] = "<|im_end|>", ["chat_template"] = template,
                ["added_tokens_decoder"] = new System.Text.Json.Nodes.JsonObject
                {
                    ["1"] = new System.Text.Json.Nodes.JsonObject { ["content"] = "<|im_start|>", ["special"] = true },
                    ["2"] = new System.Text.Json.Nodes.JsonObject { ["content"] = "<|im_end|>", ["special"] = true },
                },
            }.ToJsonString());
            var judge = JudgePrompt.Format(null, "Name a prime.", "7");
            var rendered = Srlm.Model.ChatTemplates.ChatFormat.Load(dir)!.Prompt(judge);
            Assert.Equal("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
                + "<|im_start|>user\n" + judge + "<|im_end|>\n<|im_start|>assistant\n", rendered);
        }
        finally { Directory.Delete(dir, recursive: true); }
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
