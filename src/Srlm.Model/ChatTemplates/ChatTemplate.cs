namespace Srlm.Model.ChatTemplates;

/// <summary>One chat turn: role ("system", "user", "assistant", ...) and its text.</summary>
public sealed record ChatMessage(string Role, string Content)
{
    public static ChatMessage System(string content) => new("system", content);
    public static ChatMessage User(string content) => new("user", content);
    public static ChatMessage Assistant(string content) => new("assistant", content);
}

/// <summary>The special tokens a template sees as variables (<c>bos_token</c>, ...); null ones are undefined.</summary>
public sealed record SpecialTokens(string? Bos = null, string? Eos = null, string? Unk = null, string? Pad = null);

/// <summary>A template error: a construct the interpreter refuses, a syntax error or a failure while rendering.
/// The message is one line: <c>file:line:col: what</c>.</summary>
public class ChatTemplateException : Exception
{
    public string? File { get; }
    public SourcePos? Pos { get; }
    public string Reason { get; }

    public ChatTemplateException(string file, SourcePos pos, string reason) : base($"{file}:{pos.Line}:{pos.Col}: {reason}")
    {
        File = file;
        Pos = pos;
        Reason = reason;
    }

    public ChatTemplateException(string message) : base(message) { Reason = message; }
}

/// <summary>The template itself refused the conversation with <c>raise_exception(message)</c>.</summary>
public sealed class ChatTemplateRaisedException(string templateMessage) : ChatTemplateException($"the chat template refused the conversation: {templateMessage}")
{
    public string TemplateMessage { get; } = templateMessage;
}

/// <summary>A chat template (Jinja, as in a Hugging Face checkpoint's <c>chat_template.jinja</c> or
/// <c>tokenizer_config.json</c>) rendered the way transformers' <c>apply_chat_template</c> renders it:
/// jinja2's ImmutableSandboxedEnvironment with <c>trim_blocks</c>, <c>lstrip_blocks</c>, loop controls,
/// <c>raise_exception</c>, <c>strftime_now</c> and a <c>tojson</c> that keeps non-ASCII. Parsing refuses every
/// construct the interpreter lacks, naming it and its <c>file:line:col</c>; nothing is rendered approximately.</summary>
public sealed class ChatTemplate
{
    private readonly List<Node> _body;

    public string Source { get; }
    public string FileName { get; }

    private ChatTemplate(string source, string fileName, List<Node> body)
    {
        Source = source;
        FileName = fileName;
        _body = body;
    }

    /// <summary>Parses a template; throws <see cref="ChatTemplateException"/> naming the first refused construct.</summary>
    public static ChatTemplate Parse(string source, string fileName = "chat_template.jinja") =>
        new(source, fileName, Parser.Parse(Lexer.Normalize(source), fileName));

    /// <summary>The prompt text for a conversation, as apply_chat_template(messages, tokenize=False,
    /// add_generation_prompt=...) returns it (tools and documents none).</summary>
    public string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt, SpecialTokens? tokens = null)
    {
        var list = new PyList(messages.Select(m =>
        {
            var d = new PyDict { ["role"] = m.Role, ["content"] = m.Content };
            return (object?)d;
        }));
        var vars = new Dictionary<string, object?>(StringComparer.Ordinal)
        {
            ["messages"] = list,
            ["tools"] = null,
            ["documents"] = null,
            ["add_generation_prompt"] = addGenerationPrompt,
        };
        AddTokens(vars, tokens);
        return RenderVariables(vars);
    }

    /// <summary>Renders with arbitrary variables (strings, numbers, booleans, null, lists, string-keyed
    /// dictionaries, JSON nodes). Variables not given are undefined.</summary>
    public string Render(IReadOnlyDictionary<string, object?> variables, SpecialTokens? tokens = null)
    {
        var vars = variables.ToDictionary(kv => kv.Key, kv => Py.FromNet(kv.Value), StringComparer.Ordinal);
        AddTokens(vars, tokens);
        return RenderVariables(vars);
    }

    private static void AddTokens(Dictionary<string, object?> vars, SpecialTokens? t)
    {
        if (t is null) return;
        if (t.Bos is not null) vars.TryAdd("bos_token", t.Bos);
        if (t.Eos is not null) vars.TryAdd("eos_token", t.Eos);
        if (t.Unk is not null) vars.TryAdd("unk_token", t.Unk);
        if (t.Pad is not null) vars.TryAdd("pad_token", t.Pad);
    }

    private string RenderVariables(Dictionary<string, object?> vars)
    {
        var root = new Scope(null);
        foreach (var (k, v) in vars) root.Set(k, v);
        var scope = new Scope(root);
        try { return new Interpreter(FileName).Render(_body, scope); }
        catch (OverflowException) { throw new ChatTemplateException($"{FileName}: integer overflow while rendering"); }
    }
}
