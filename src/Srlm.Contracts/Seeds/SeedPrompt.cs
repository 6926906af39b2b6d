using System.Text;

namespace Srlm.Contracts.Seeds;

/// <summary>The one place a seed conversation becomes prompt text. Today a checkpoint's prompt template takes one
/// instruction (srlm.json's "{instruction}" layouts), so a conversation is flattened into that instruction: a single
/// user message is its content, byte for byte; a longer conversation (a system message, earlier turns) is written
/// as labelled turns ("System: …", "User: …", "Assistant: …", separated by a blank line) ending with the last user
/// message. When prompts become chat messages rendered by the checkpoint's own chat template (issue 19), this is the
/// function that hands the messages over instead: every path (srlm train, the trainer service, the run upload, the
/// scratch tokenizer) gets its prompt text here.</summary>
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
