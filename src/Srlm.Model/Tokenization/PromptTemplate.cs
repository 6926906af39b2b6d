using Srlm.Model.ChatTemplates;

namespace Srlm.Model.Tokenization;

/// <summary>How an instruction becomes a prompt. A checkpoint with a chat template (chat_template.jinja or
/// tokenizer_config.json's chat_template) renders the instruction as one user message with the generation prompt,
/// exactly as transformers' apply_chat_template does, and the rendered text is tokenized without adding BOS (the
/// template writes it where it wants one). A folder without a chat template uses one of our layouts holding
/// "{instruction}", stored in srlm.json, with BOS added by the tokenizer as before.</summary>
public sealed record PromptTemplate(string Name, string Template)
{
    /// <summary>The checkpoint's chat template; null for our srlm.json layouts.</summary>
    public ChatFormat? Chat { get; init; }

    public static PromptTemplate FromChat(ChatFormat chat) => new("chat_template", "") { Chat = chat };

    /// <summary>Whether the tokenizer adds BOS in front of a formatted prompt: never for a chat template.</summary>
    public bool AddBos(ITokenizer tokenizer) => Chat is null && tokenizer.AddBos;

    /// <summary>Token ids that end an answer besides the model's EOS: the chat template's end-of-turn token and
    /// generation_config.json's eos_token_id. Empty for our layouts (they stop at EOS and stop strings).</summary>
    public IReadOnlyList<int> StopTokenIds(ITokenizer tokenizer)
    {
        if (Chat is null) return [];
        var ids = new List<int>(Chat.GenerationEosIds);
        if (Chat.EndOfTurn is { } eot && tokenizer.TokenToId(eot) is { } id) ids.Add(id);
        return ids.Distinct().ToList();
    }

    public const string Placeholder = "{instruction}";
    public const string File = "srlm.json";

    public static readonly PromptTemplate Llama2 = new("llama2", "[INST] {instruction} [/INST]");
    public static readonly PromptTemplate ChatMl = new("chatml", "<|im_start|>user\n{instruction}<|im_end|>\n<|im_start|>assistant\n");
    public static readonly PromptTemplate Zephyr = new("zephyr", "<|user|>\n{instruction}</s>\n<|assistant|>\n");
    public static readonly PromptTemplate Plain = new("plain", "### Instruction:\n{instruction}\n\n### Response:\n");

    public static IReadOnlyList<PromptTemplate> Known { get; } = [Llama2, ChatMl, Zephyr, Plain];

    /// <summary>The stop strings that end an answer in this template (besides EOS).</summary>
    public IReadOnlyList<string> StopStrings => Chat is not null ? [] : Name switch
    {
        "chatml" => ["<|im_end|>"],
        "zephyr" => ["</s>", "<|user|>"],
        "llama2" => ["[INST]"],
        "plain" => ["### Instruction:"],
        _ => [],
    };

    public string Format(string instruction) =>
        Chat is not null ? Chat.Prompt(instruction) : Template.Replace(Placeholder, instruction, StringComparison.Ordinal);

    public static PromptTemplate Custom(string template)
    {
        if (!template.Contains(Placeholder, StringComparison.Ordinal))
            throw new ArgumentException($"prompt template must contain {Placeholder}");
        return Known.FirstOrDefault(k => k.Template == template) ?? new PromptTemplate("custom", template);
    }

    public static PromptTemplate ByName(string name) =>
        Known.FirstOrDefault(k => k.Name == name) ?? throw new ArgumentException($"unknown prompt template '{name}' (known: {string.Join(", ", Known.Select(k => k.Name))})");

    /// <summary>Guesses the family from the tokenizer's chat template and the config: chatml for Qwen2/SmolLM,
    /// zephyr for TinyLlama chat, llama2 for [INST], plain for our own small models.</summary>
    public static PromptTemplate ForModel(LlamaConfig config, TokenizerConfig tokenizerConfig, ITokenizer? tokenizer = null)
    {
        var chat = tokenizerConfig.ChatTemplate ?? "";
        if (chat.Contains("<|im_start|>", StringComparison.Ordinal)) return ChatMl;
        if (chat.Contains("<|user|>", StringComparison.Ordinal)) return Zephyr;
        if (chat.Contains("[INST]", StringComparison.Ordinal)) return Llama2;
        if (config.ModelType == "qwen2" || tokenizer?.TokenToId("<|im_start|>") is not null) return ChatMl;
        return Plain;
    }

    /// <summary>The template a checkpoint folder's prompts are rendered with: its chat template (chat_template.jinja or
    /// tokenizer_config.json's), else srlm.json's layout, else the family guessed from the config.</summary>
    public static PromptTemplate ForFolder(string dir, LlamaConfig config, ITokenizer tokenizer) =>
        ChatFormat.Load(dir) is { } chat ? FromChat(chat)
            : Load(dir) ?? ForModel(config, TokenizerConfig.Load(Path.Combine(dir, Tokenizers.ConfigFile)), tokenizer);

    /// <summary>Reads srlm.json's template from a checkpoint folder; null when absent.</summary>
    public static PromptTemplate? Load(string dir)
    {
        var path = Path.Combine(dir, File);
        if (!System.IO.File.Exists(path)) return null;
        try
        {
            var o = JsonNode.Parse(System.IO.File.ReadAllText(path)) as JsonObject;
            var t = o?["prompt_template"] as JsonObject;
            if (t is null) return null;
            var name = t["name"]?.GetValue<string>() ?? "custom";
            var template = t["template"]?.GetValue<string>() ?? throw new CheckpointException(path, "prompt_template has no 'template'");
            if (!template.Contains(Placeholder, StringComparison.Ordinal)) throw new CheckpointException(path, $"prompt_template must contain {Placeholder}");
            return new PromptTemplate(name, template);
        }
        catch (JsonException e) { throw new CheckpointException(path, $"is not valid JSON ({LlamaConfig.OneLine(e.Message)})", e); }
    }

    public void Save(string dir)
    {
        if (Chat is not null)
        {
            // The child checkpoint keeps its parent's template as a file (transformers reads it before tokenizer_config.json).
            System.IO.File.WriteAllText(Path.Combine(dir, ChatFormat.TemplateFile), Chat.Template.Source);
            return;
        }
        var path = Path.Combine(dir, File);
        JsonObject o;
        try { o = System.IO.File.Exists(path) ? JsonNode.Parse(System.IO.File.ReadAllText(path)) as JsonObject ?? new JsonObject() : new JsonObject(); }
        catch (JsonException) { o = new JsonObject(); }
        o["prompt_template"] = new JsonObject { ["name"] = Name, ["template"] = Template };
        System.IO.File.WriteAllText(path, o.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }
}
