namespace Srlm.Model.ChatTemplates;

/// <summary>A checkpoint folder's chat template with what rendering needs beside it: the special tokens the
/// template sees as variables, the end-of-turn token it writes after an assistant message, and the EOS ids of
/// generation_config.json. Reads only the folder's tokenizer, template and generation files, never the weights.
/// <code>var chat = ChatFormat.Load(dir); var text = chat?.Render(messages, addGenerationPrompt: true);</code></summary>
public sealed class ChatFormat
{
    public const string TemplateFile = "chat_template.jinja";
    private const string Probe = "srlmprobe7f3a";

    public ChatTemplate Template { get; }
    public SpecialTokens Tokens { get; }
    /// <summary>The special token written right after an assistant message's content (e.g. &lt;|im_end|&gt;,
    /// &lt;|eot_id|&gt;, &lt;end_of_turn&gt;); null when the template writes none.</summary>
    public string? EndOfTurn { get; }
    /// <summary>generation_config.json's eos_token_id (an int or a list); empty when absent.</summary>
    public IReadOnlyList<int> GenerationEosIds { get; }

    private ChatFormat(ChatTemplate template, SpecialTokens tokens, IReadOnlyList<string> specialStrings, IReadOnlyList<int> eosIds)
    {
        Template = template;
        Tokens = tokens;
        GenerationEosIds = eosIds;
        EndOfTurn = FindEndOfTurn(template, tokens, specialStrings);
    }

    /// <summary>The text the model receives for a conversation.</summary>
    public string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true) =>
        Template.Render(messages, addGenerationPrompt, Tokens);

    /// <summary>One user message followed by the generation prompt: the prompt of every single-turn request.</summary>
    public string Prompt(string userMessage) => Render([ChatMessage.User(userMessage)], addGenerationPrompt: true);

    /// <summary>The folder's template: <paramref name="overrideFile"/> when given (a spec's models.chat_template),
    /// else chat_template.jinja, else tokenizer_config.json's chat_template (a string, or a list of named templates
    /// of which 'default' is used). Null when the folder has none. A template with a construct the interpreter
    /// lacks throws <see cref="ChatTemplateException"/> naming it and its file:line:col.</summary>
    public static ChatFormat? Load(string dir, string? overrideFile = null)
    {
        var configPath = Path.Combine(dir, "tokenizer_config.json");
        var config = ReadJson(configPath);
        string? source = null;
        string name = "";
        if (overrideFile is not null)
        {
            if (!File.Exists(overrideFile)) throw new CheckpointException(overrideFile, "chat template file is missing");
            source = File.ReadAllText(overrideFile);
            name = overrideFile;
        }
        else if (File.Exists(Path.Combine(dir, TemplateFile)))
        {
            name = Path.Combine(dir, TemplateFile);
            source = File.ReadAllText(name);
        }
        else if (config?["chat_template"] is { } ct)
        {
            name = configPath + "#chat_template";
            if (ct.GetValueKind() == JsonValueKind.String) source = ct.GetValue<string>();
            else if (ct is JsonArray list)
            {
                foreach (var item in list)
                    if (item?["name"]?.GetValue<string>() == "default") source = item["template"]?.GetValue<string>();
                if (source is null) throw new CheckpointException(configPath, "chat_template is a list of named templates without one named 'default'");
                name = configPath + "#chat_template[default]";
            }
            else if (ct.GetValueKind() != JsonValueKind.Null) throw new CheckpointException(configPath, "chat_template must be a string or a list of named templates");
        }
        if (source is null) return null;
        return FromSource(source, name, dir);
    }

    /// <summary>A template text with the special tokens and EOS ids of the checkpoint folder <paramref name="dir"/>.</summary>
    public static ChatFormat FromSource(string source, string fileName, string dir)
    {
        var template = ChatTemplate.Parse(source, fileName);
        var config = ReadJson(Path.Combine(dir, "tokenizer_config.json"));
        var map = ReadJson(Path.Combine(dir, "special_tokens_map.json"));
        string? Token(string key) => TokenText(config?[key]) ?? TokenText(map?[key]);
        var tokens = new SpecialTokens(Token("bos_token"), Token("eos_token"), Token("unk_token"), Token("pad_token"));

        var specials = new List<string>();
        foreach (var t in new[] { tokens.Bos, tokens.Eos, tokens.Unk, tokens.Pad }) if (t is not null) specials.Add(t);
        if (config?["added_tokens_decoder"] is JsonObject decoder)
            foreach (var (_, v) in decoder) if (v?["content"]?.GetValue<string>() is { } c) specials.Add(c);
        if (ReadJson(Path.Combine(dir, "tokenizer.json"))?["added_tokens"] is JsonArray added)
            foreach (var v in added) if (v?["content"]?.GetValue<string>() is { } c) specials.Add(c);
        if (map?["additional_special_tokens"] is JsonArray extra)
            foreach (var v in extra) if (TokenText(v) is { } c) specials.Add(c);

        var eos = new List<int>();
        var gen = ReadJson(Path.Combine(dir, "generation_config.json"));
        switch (gen?["eos_token_id"])
        {
            case JsonArray a: foreach (var v in a) if (v?.GetValueKind() == JsonValueKind.Number) eos.Add(v.GetValue<int>()); break;
            case JsonValue v when v.GetValueKind() == JsonValueKind.Number: eos.Add(v.GetValue<int>()); break;
        }
        return new ChatFormat(template, tokens, specials.Distinct().ToList(), eos);
    }

    private static string? TokenText(JsonNode? n) => n switch
    {
        null => null,
        JsonObject o => o["content"]?.GetValueKind() == JsonValueKind.String ? o["content"]!.GetValue<string>() : null,
        _ => n.GetValueKind() == JsonValueKind.String ? n.GetValue<string>() : null,
    };

    private static JsonObject? ReadJson(string path)
    {
        if (!File.Exists(path)) return null;
        try { return JsonNode.Parse(File.ReadAllText(path)) as JsonObject; }
        catch (JsonException e) { throw new CheckpointException(path, $"is not valid JSON ({LlamaConfig.OneLine(e.Message)})", e); }
    }

    /// <summary>Renders a probe answer and takes the special token the template writes right after it (after
    /// optional whitespace): the token a model trained on this template emits to end its turn.</summary>
    private static string? FindEndOfTurn(ChatTemplate template, SpecialTokens tokens, IReadOnlyList<string> specials)
    {
        string text;
        try { text = template.Render([ChatMessage.User("Hi"), ChatMessage.Assistant(Probe)], addGenerationPrompt: false, tokens); }
        catch (ChatTemplateException) { return null; }
        var at = text.IndexOf(Probe, StringComparison.Ordinal);
        if (at < 0) return null;
        var after = text[(at + Probe.Length)..].TrimStart(' ', '\n', '\t', '\r');
        return specials.Where(s => s.Length > 0 && after.StartsWith(s, StringComparison.Ordinal)).OrderByDescending(s => s.Length).FirstOrDefault();
    }
}
