namespace Srlm.Model.Tokenization;

/// <summary>Text to token ids and back, whatever the file format behind it.</summary>
public interface ITokenizer
{
    int VocabSize { get; }
    int? BosId { get; }
    int? EosId { get; }
    /// <summary>The id used for left padding; falls back to EOS (then 0) when the tokenizer names none.</summary>
    int PadId { get; }
    /// <summary>Whether the model expects BOS in front of a prompt (HF post-processor / add_bos_token).</summary>
    bool AddBos { get; }

    IReadOnlyList<int> Encode(string text, bool addBos = false, bool addEos = false);
    string Decode(IEnumerable<int> ids, bool skipSpecial = true);
    bool IsSpecial(int id);
    string? IdToToken(int id);
    int? TokenToId(string token);

    /// <summary>Writes the tokenizer's files (tokenizer.json or tokenizer.model, tokenizer_config.json) into dir.</summary>
    void Save(string dir);
}

public static class Tokenizers
{
    public const string JsonFile = "tokenizer.json";
    public const string SentencePieceFile = "tokenizer.model";
    public const string ConfigFile = "tokenizer_config.json";

    /// <summary>Loads tokenizer.json (preferred) or tokenizer.model from a checkpoint folder.</summary>
    public static ITokenizer Load(string dir)
    {
        var json = Path.Combine(dir, JsonFile);
        var sp = Path.Combine(dir, SentencePieceFile);
        var cfg = TokenizerConfig.Load(Path.Combine(dir, ConfigFile));
        if (File.Exists(json)) return HfTokenizer.Load(json, cfg);
        if (File.Exists(sp)) return SentencePieceTokenizerAdapter.Load(sp, cfg);
        throw new CheckpointException(json, $"missing tokenizer (neither {JsonFile} nor {SentencePieceFile} in {dir})");
    }
}

/// <summary>The parts of tokenizer_config.json we use.</summary>
public sealed record TokenizerConfig
{
    public string? BosToken { get; init; }
    public string? EosToken { get; init; }
    public string? PadToken { get; init; }
    public string? UnkToken { get; init; }
    public bool? AddBosToken { get; init; }
    public string? ChatTemplate { get; init; }
    public JsonObject? Raw { get; init; }

    public static TokenizerConfig Load(string path)
    {
        if (!File.Exists(path)) return new TokenizerConfig();
        try
        {
            var o = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new CheckpointException(path, "is not a JSON object");
            static string? Tok(JsonNode? n) => n switch
            {
                null => null,
                JsonObject obj => obj["content"]?.GetValue<string>(),
                _ => n.GetValueKind() == JsonValueKind.String ? n.GetValue<string>() : null,
            };
            return new TokenizerConfig
            {
                BosToken = Tok(o["bos_token"]),
                EosToken = Tok(o["eos_token"]),
                PadToken = Tok(o["pad_token"]),
                UnkToken = Tok(o["unk_token"]),
                AddBosToken = o["add_bos_token"]?.GetValueKind() is JsonValueKind.True or JsonValueKind.False ? o["add_bos_token"]!.GetValue<bool>() : null,
                ChatTemplate = o["chat_template"]?.GetValueKind() == JsonValueKind.String ? o["chat_template"]!.GetValue<string>() : null,
                Raw = o,
            };
        }
        catch (JsonException e) { throw new CheckpointException(path, $"is not valid JSON ({LlamaConfig.OneLine(e.Message)})", e); }
    }

    public void Save(string path, string tokenizerClass)
    {
        var o = Raw?.DeepClone() as JsonObject ?? new JsonObject();
        o["tokenizer_class"] = tokenizerClass;
        if (BosToken is not null) o["bos_token"] = BosToken;
        if (EosToken is not null) o["eos_token"] = EosToken;
        if (PadToken is not null) o["pad_token"] = PadToken;
        if (UnkToken is not null) o["unk_token"] = UnkToken;
        if (AddBosToken is { } b) o["add_bos_token"] = b;
        o["add_eos_token"] = false;
        if (o["model_max_length"] is null) o["model_max_length"] = 2048;
        File.WriteAllText(path, o.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }
}
