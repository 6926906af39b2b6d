namespace Srlm.Contracts.Seeds;

/// <summary>The one place a seed conversation becomes one instruction text, for checkpoints whose prompt template takes
/// one instruction (srlm.json's "{instruction}" layouts): a single user message is its content, byte for byte; a longer
/// conversation (a system message, earlier turns) is written as labelled turns ("System: …", "User: …",
/// "Assistant: …", separated by a blank line) ending with the last user message. A checkpoint with a chat template
/// does not use this text for seed examples: the conversation itself travels with the example (SeedExample.Context)
/// and the template renders it turn by turn (Srlm.Training's PromptText).</summary>
public static class SeedPrompt
{
    public static string Render(IReadOnlyList<ChatTurn> context)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (context.Count == 0) throw new ArgumentException("a conversation needs at least one message", nameof(context));
        if (context.Count == 1) return context[0].Content;
        var text = new StringBuilder();
        for (int i = 0; i < context.Count; i++)
        {
            if (i > 0) text.Append("\n\n");
            text.Append(Label(context[i].Role)).Append(": ").Append(context[i].Content);
        }
        return text.ToString();
    }

    private static string Label(string role) => role switch
    {
        ChatTurn.System => "System",
        ChatTurn.User => "User",
        ChatTurn.Assistant => "Assistant",
        _ => throw new ArgumentException($"unknown role '{role}'"),
    };
}
