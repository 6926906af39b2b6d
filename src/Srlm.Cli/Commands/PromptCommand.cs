namespace Srlm.Cli.Commands;

/// <summary>srlm prompt: prints exactly the text a checkpoint's model receives (UTF-8, no BOM, nothing added),
/// rendered by the folder's chat template, or by its srlm.json layout when it has none. Reads only the tokenizer,
/// template and config files, never the weights.</summary>
public sealed class PromptCommand : ICommand
{
    public string Name => "prompt";
    public string Summary => "print the exact prompt text a checkpoint receives for --messages FILE, or for a judgement (--judge)";

    public Task<int> RunAsync(string[] args, CancellationToken cancel)
    {
        var a = new Args(args, "--no-generation-prompt", "--judge");
        var dir = a.Required("--model");
        var judge = a.Flag("--judge");
        var noGen = a.Flag("--no-generation-prompt");
        var messagesFile = a.Get("--messages");
        var instruction = a.Get("--instruction");
        var response = a.Get("--response");
        var specFile = a.Get("--spec");
        a.EnsureAllRead();
        if (a.Positional.Count > 0) throw new UsageException($"unexpected argument '{a.Positional[0]}'");
        if (!Directory.Exists(dir)) throw new UsageException($"--model {dir}: no such directory");

        List<ChatMessage> messages;
        if (judge)
        {
            if (messagesFile is not null) throw new UsageException("--judge takes --instruction and --response, not --messages");
            if (instruction is null || response is null) throw new UsageException("--judge needs --instruction TEXT and --response TEXT");
            string? judgeTemplate = null;
            if (specFile is not null)
            {
                RunSpec spec;
                try { spec = RunSpecJson.Load(specFile); }
                catch (RunSpecException e) { throw new UsageException(e.Message); }
                judgeTemplate = spec.Judge.Template;
                if (spec.Judge.TemplateFile is { } tf)
                {
                    var full = Path.IsPathRooted(tf) ? tf : Path.Combine(Path.GetDirectoryName(Path.GetFullPath(specFile))!, tf);
                    if (!File.Exists(full)) throw new UsageException($"spec.judge.template_file: file not found: {full}");
                    judgeTemplate = File.ReadAllText(full, Encoding.UTF8);
                }
            }
            messages = [ChatMessage.User(JudgePrompt.Format(judgeTemplate, instruction, response))];
        }
        else
        {
            if (specFile is not null || instruction is not null || response is not null) throw new UsageException("--spec, --instruction and --response go with --judge");
            if (messagesFile is null) throw new UsageException("missing required option --messages (or --judge)");
            messages = ReadMessages(messagesFile);
        }

        var text = Render(dir, messages, addGenerationPrompt: !noGen);
        // Console.Out on Linux is UTF-8 without a byte-order mark; nothing is added to the text.
        Console.Out.Write(text);
        Console.Out.Flush();
        return Task.FromResult(0);
    }

    /// <summary>The text for these messages in the folder: its chat template, else its srlm.json layout (one user message).</summary>
    public static string Render(string dir, IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        if (ChatFormat.Load(dir) is { } chat) return chat.Render(messages, addGenerationPrompt);
        var layout = PromptTemplate.Load(dir) ?? PromptTemplate.ForModel(
            LlamaConfig.Load(Path.Combine(dir, Checkpoint.ConfigFile)), TokenizerConfig.Load(Path.Combine(dir, Tokenizers.ConfigFile)));
        if (messages.Count != 1 || messages[0].Role != "user" || !addGenerationPrompt)
            throw new UsageException($"{dir} has no chat template; its srlm.json layout '{layout.Name}' takes exactly one user message with the generation prompt");
        return layout.Format(messages[0].Content);
    }

    private static List<ChatMessage> ReadMessages(string file)
    {
        if (!File.Exists(file)) throw new UsageException($"--messages {file}: no such file");
        JsonNode? root;
        try { root = JsonNode.Parse(File.ReadAllText(file, Encoding.UTF8)); }
        catch (JsonException e) { throw new UsageException($"--messages {file}: not valid JSON ({e.Message.Split('\n')[0]})"); }
        if (root is not JsonArray list || list.Count == 0) throw new UsageException($"--messages {file}: must be a non-empty JSON array of {{\"role\", \"content\"}} objects");
        var result = new List<ChatMessage>();
        for (var i = 0; i < list.Count; i++)
        {
            if (list[i] is not JsonObject o
                || o["role"] is not JsonValue r || r.GetValueKind() != JsonValueKind.String
                || o["content"] is not JsonValue c || c.GetValueKind() != JsonValueKind.String)
                throw new UsageException($"--messages {file}: item {i} must be an object with string fields \"role\" and \"content\"");
            result.Add(new ChatMessage(r.GetValue<string>(), c.GetValue<string>()));
        }
        return result;
    }
}
