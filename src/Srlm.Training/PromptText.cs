using Srlm.Model.ChatTemplates;

namespace Srlm.Training;

/// <summary>The prompt text a training example puts before its completion. A checkpoint with a chat template renders
/// the example's seed conversation (a system message, earlier user/assistant turns, the last user message) turn by
/// turn with the generation prompt after the last user message, as transformers'
/// apply_chat_template(messages[:-1], add_generation_prompt=True) does; the answer follows. Our "{instruction}"
/// layouts, and examples without a conversation (EFT judge prompts, DPO pairs), use the flattened prompt text
/// (<see cref="SeedPrompt.Render"/>) in the template, byte for byte as before.</summary>
public static class PromptText
{
    public static string Of(PromptTemplate template, SftExample e) => Of(template, e.Prompt, e.Context);

    public static string Of(PromptTemplate template, string prompt, IReadOnlyList<ChatTurn>? context)
    {
        ArgumentNullException.ThrowIfNull(template);
        if (template.Chat is null || context is null || context.Count == 0) return template.Format(prompt);
        return template.Chat.Render(context.Select(t => new ChatMessage(t.Role, t.Content)).ToList(), addGenerationPrompt: true);
    }
}
