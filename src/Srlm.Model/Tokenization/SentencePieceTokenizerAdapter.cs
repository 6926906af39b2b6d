using Microsoft.ML.Tokenizers;

namespace Srlm.Model.Tokenization;

/// <summary>A SentencePiece tokenizer.model (Llama 2, TinyLlama, Mistral v0.1), read by Microsoft.ML.Tokenizers.</summary>
public sealed class SentencePieceTokenizerAdapter : ITokenizer
{
    private readonly byte[] _model;
    private readonly TokenizerConfig _config;
    private readonly SentencePieceTokenizer _sp;
    private readonly Dictionary<int, string> _idToToken;
    private readonly HashSet<int> _special;

    public int VocabSize { get; }
    public int? BosId { get; }
    public int? EosId { get; }
    public int PadId { get; }
    public bool AddBos { get; }

    private SentencePieceTokenizerAdapter(byte[] model, TokenizerConfig config, string path)
    {
        _model = model; _config = config;
        try
        {
            using var ms = new MemoryStream(model);
            _sp = SentencePieceTokenizer.Create(ms, addBeginningOfSentence: false, addEndOfSentence: false);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new CheckpointException(path, $"is not a readable SentencePiece model ({LlamaConfig.OneLine(e.Message)})", e);
        }
        _idToToken = _sp.Vocabulary.ToDictionary(kv => kv.Value, kv => kv.Key);
        VocabSize = _idToToken.Count == 0 ? 0 : _idToToken.Keys.Max() + 1;
        BosId = _sp.BeginningOfSentenceId >= 0 ? _sp.BeginningOfSentenceId : null;
        EosId = _sp.EndOfSentenceId >= 0 ? _sp.EndOfSentenceId : null;
        int? Id(string? t) => t is not null && _sp.Vocabulary.TryGetValue(t, out var id) ? id : null;
        PadId = Id(config.PadToken) ?? EosId ?? 0;
        AddBos = config.AddBosToken ?? true;
        _special = new HashSet<int>(new[] { BosId, EosId, Id(config.PadToken), Id(config.UnkToken) ?? Id("<unk>") }.Where(x => x is not null).Select(x => x!.Value));
    }

    public static SentencePieceTokenizerAdapter Load(string path, TokenizerConfig? config = null)
    {
        if (!File.Exists(path)) throw new CheckpointException(path, "missing tokenizer");
        return new SentencePieceTokenizerAdapter(File.ReadAllBytes(path), config ?? new TokenizerConfig(), path);
    }

    // Microsoft.ML.Tokenizers returns no ids at all for an empty text, even when asked for BOS/EOS; SentencePiece gives [BOS].
    public IReadOnlyList<int> Encode(string text, bool addBos = false, bool addEos = false) => text.Length > 0
        ? _sp.EncodeToIds(text, addBos && BosId is not null, addEos && EosId is not null)
        : [.. addBos && BosId is { } b ? [b] : Array.Empty<int>(), .. addEos && EosId is { } e ? [e] : Array.Empty<int>()];

    public string Decode(IEnumerable<int> ids, bool skipSpecial = true) =>
        _sp.Decode(skipSpecial ? ids.Where(i => !_special.Contains(i)) : ids, considerSpecialTokens: !skipSpecial);

    public bool IsSpecial(int id) => _special.Contains(id);
    public string? IdToToken(int id) => _idToToken.TryGetValue(id, out var t) ? t : null;
    public int? TokenToId(string token) => _sp.Vocabulary.TryGetValue(token, out var id) ? id : null;

    public void Save(string dir)
    {
        Directory.CreateDirectory(dir);
        File.WriteAllBytes(Path.Combine(dir, Tokenizers.SentencePieceFile), _model);
        var cfg = _config with
        {
            BosToken = _config.BosToken ?? (BosId is { } b ? IdToToken(b) : null),
            EosToken = _config.EosToken ?? (EosId is { } e ? IdToToken(e) : null),
            AddBosToken = AddBos,
        };
        cfg.Save(Path.Combine(dir, Tokenizers.ConfigFile), "LlamaTokenizer");
    }
}
