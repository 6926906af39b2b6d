// Over 300 lines on purpose: the whole tokenizer.json format (normalizers, pre-tokenizers, BPE, byte fallback, decoding) in one reader, so what it accepts and what it refuses are in one place.
namespace Srlm.Model.Tokenization;

/// <summary>A Hugging Face tokenizer.json with a BPE model: normalizer, pre-tokenizer (ByteLevel, Metaspace,
/// Split, Whitespace, Digits, Sequence), byte fallback, and added tokens that are split out before BPE.
/// Anything else in the file is a CheckpointException naming it, not a silent approximation. Thread-safe.</summary>
public sealed class HfTokenizer : ITokenizer
{
    private readonly string _path;
    private readonly string _json;
    private readonly TokenizerConfig _config;
    private readonly Dictionary<string, int> _vocab;
    private readonly string[] _idToToken;
    private readonly Dictionary<(int, int), (int Rank, int Merged)> _merges;
    private readonly int? _unkId;
    private readonly bool _byteFallback, _fuseUnk, _ignoreMerges;
    private readonly int[] _byteTokenIds; // <0xXX> ids when byte fallback is on, else empty
    private readonly List<Func<string, string>> _normalizers = new();
    private readonly List<Func<List<Piece>, List<Piece>>> _preTokenizers = new();
    private readonly bool _byteLevel; // pieces are mapped to GPT-2 byte characters before BPE
    private readonly List<Func<List<string>, List<string>>> _decoders = new();
    private readonly Regex? _addedPattern;
    private readonly Dictionary<string, AddedToken> _added = new(StringComparer.Ordinal);
    private readonly HashSet<int> _special = new();
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, int[]> _wordCache = new(StringComparer.Ordinal); // Encode may be called from many threads

    private sealed record AddedToken(int Id, string Content, bool Special, bool LStrip, bool RStrip);
    private readonly record struct Piece(string Text, bool First);

    public int VocabSize { get; }
    public int? BosId { get; }
    public int? EosId { get; }
    public int PadId { get; }
    public bool AddBos { get; }

    private HfTokenizer(string path, string json, TokenizerConfig config)
    {
        _path = path; _json = json; _config = config;
        JsonObject root;
        try { root = JsonNode.Parse(json) as JsonObject ?? throw Bad("is not a JSON object"); }
        catch (JsonException e) { throw new CheckpointException(path, $"is not valid JSON ({LlamaConfig.OneLine(e.Message)})", e); }

        var model = root["model"] as JsonObject ?? throw Bad("has no 'model'");
        var type = model["type"]?.GetValue<string>() ?? (model["merges"] is not null ? "BPE" : null);
        if (type != "BPE") throw Bad($"model type '{type}' is not supported (only BPE)");
        if (model["continuing_subword_prefix"]?.GetValue<string>() is { Length: > 0 } csp) throw Bad($"continuing_subword_prefix '{csp}' is not supported");
        if (model["end_of_word_suffix"]?.GetValue<string>() is { Length: > 0 } eow) throw Bad($"end_of_word_suffix '{eow}' is not supported");

        _vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (tok, id) in model["vocab"] as JsonObject ?? throw Bad("model has no 'vocab'"))
            _vocab[tok] = id!.GetValue<int>();
        var addedList = root["added_tokens"] as JsonArray ?? new JsonArray();
        foreach (var a in addedList.OfType<JsonObject>())
        {
            var t = new AddedToken(a["id"]!.GetValue<int>(), a["content"]!.GetValue<string>(), a["special"]?.GetValue<bool>() ?? false,
                a["lstrip"]?.GetValue<bool>() ?? false, a["rstrip"]?.GetValue<bool>() ?? false);
            _added[t.Content] = t;
            if (t.Special) _special.Add(t.Id);
        }
        int maxId = Math.Max(_vocab.Count == 0 ? -1 : _vocab.Values.Max(), _added.Count == 0 ? -1 : _added.Values.Max(t => t.Id));
        VocabSize = maxId + 1;
        _idToToken = new string[VocabSize];
        foreach (var (tok, id) in _vocab) _idToToken[id] = tok;
        foreach (var t in _added.Values) _idToToken[t.Id] = t.Content;

        _merges = new Dictionary<(int, int), (int, int)>();
        int rank = 0;
        foreach (var m in model["merges"] as JsonArray ?? new JsonArray())
        {
            string left, right;
            if (m is JsonArray pair) { left = pair[0]!.GetValue<string>(); right = pair[1]!.GetValue<string>(); }
            else
            {
                var s = m!.GetValue<string>();
                int sp = s.IndexOf(' ', 1);
                if (sp < 0) throw Bad($"merge '{s}' is not 'left right'");
                left = s[..sp]; right = s[(sp + 1)..];
            }
            if (_vocab.TryGetValue(left, out var l) && _vocab.TryGetValue(right, out var r) && _vocab.TryGetValue(left + right, out var merged))
                _merges.TryAdd((l, r), (rank, merged));
            rank++;
        }
        var unk = model["unk_token"]?.GetValue<string>();
        _unkId = unk is not null && _vocab.TryGetValue(unk, out var u) ? u : null;
        _byteFallback = model["byte_fallback"]?.GetValue<bool>() ?? false;
        _fuseUnk = model["fuse_unk"]?.GetValue<bool>() ?? false;
        _ignoreMerges = model["ignore_merges"]?.GetValue<bool>() ?? false;
        _byteTokenIds = [];
        if (_byteFallback)
        {
            _byteTokenIds = new int[256];
            for (int b = 0; b < 256; b++)
                _byteTokenIds[b] = _vocab.TryGetValue($"<0x{b:X2}>", out var id) ? id : -1;
        }

        if (root["normalizer"] is JsonObject norm) AddNormalizer(norm);
        if (root["pre_tokenizer"] is JsonObject pre) AddPreTokenizer(pre, ref _byteLevel);
        if (root["decoder"] is JsonObject dec) AddDecoder(dec);

        if (_added.Count > 0)
        {
            var alternatives = _added.Values.OrderByDescending(t => t.Content.Length).Select(t =>
                (t.LStrip ? @"\s*" : "") + "(?<t>" + Regex.Escape(t.Content) + ")" + (t.RStrip ? @"\s*" : ""));
            _addedPattern = new Regex(string.Join("|", alternatives), RegexOptions.CultureInvariant);
        }

        int? Id(string? token) => token is not null && TokenToId(token) is { } id ? id : null;
        var (bosFromPost, addBosFromPost) = PostProcessorBos(root["post_processor"]);
        BosId = Id(config.BosToken) ?? Id(bosFromPost) ?? Id("<s>") ?? Id("<|begin_of_text|>") ?? Id("<|endoftext|>");
        EosId = Id(config.EosToken) ?? Id("</s>") ?? Id("<|im_end|>") ?? Id("<|end_of_text|>") ?? Id("<|endoftext|>");
        PadId = Id(config.PadToken) ?? Id("<pad>") ?? EosId ?? 0;
        AddBos = config.AddBosToken ?? addBosFromPost;
    }

    private CheckpointException Bad(string problem) => new(_path, problem);

    public static HfTokenizer Load(string path, TokenizerConfig? config = null)
    {
        if (!File.Exists(path)) throw new CheckpointException(path, "missing tokenizer");
        try { return new HfTokenizer(path, File.ReadAllText(path), config ?? new TokenizerConfig()); }
        catch (Exception e) when (e is InvalidOperationException or FormatException or NullReferenceException or KeyNotFoundException or ArgumentException)
        {
            throw new CheckpointException(path, $"unsupported or malformed tokenizer ({LlamaConfig.OneLine(e.Message)})", e);
        }
    }

    public static HfTokenizer FromJson(string json, TokenizerConfig? config = null, string path = "tokenizer.json") =>
        new(path, json, config ?? new TokenizerConfig());

    private static (string? Bos, bool AddBos) PostProcessorBos(JsonNode? post)
    {
        if (post is not JsonObject o) return (null, false);
        var type = o["type"]?.GetValue<string>();
        if (type == "Sequence")
        {
            foreach (var p in o["processors"] as JsonArray ?? new JsonArray())
            {
                var r = PostProcessorBos(p);
                if (r.AddBos) return r;
            }
            return (null, false);
        }
        if (type != "TemplateProcessing") return (null, false);
        var first = (o["single"] as JsonArray)?.FirstOrDefault() as JsonObject;
        var special = first?["SpecialToken"]?["id"]?.GetValue<string>();
        return special is null ? (null, false) : (special, true);
    }

    // ---------------------------------------------------------------- normalizers
    private void AddNormalizer(JsonObject n)
    {
        var type = n["type"]?.GetValue<string>();
        switch (type)
        {
            case "Sequence":
                foreach (var c in n["normalizers"] as JsonArray ?? new JsonArray()) AddNormalizer((JsonObject)c!);
                break;
            case "Prepend":
            {
                var p = n["prepend"]!.GetValue<string>();
                _normalizers.Add(s => s.Length == 0 ? s : p + s);
                break;
            }
            case "Replace":
            {
                var (regex, literal) = Pattern(n["pattern"]);
                var content = n["content"]!.GetValue<string>();
                _normalizers.Add(regex is not null ? s => regex.Replace(s, content.Replace("$", "$$")) : s => s.Replace(literal!, content, StringComparison.Ordinal));
                break;
            }
            case "NFC": _normalizers.Add(s => s.Normalize(NormalizationForm.FormC)); break;
            case "NFD": _normalizers.Add(s => s.Normalize(NormalizationForm.FormD)); break;
            case "NFKC": _normalizers.Add(s => s.Normalize(NormalizationForm.FormKC)); break;
            case "NFKD": _normalizers.Add(s => s.Normalize(NormalizationForm.FormKD)); break;
            case "Lowercase": _normalizers.Add(s => s.ToLowerInvariant()); break;
            case "Strip":
            {
                bool left = n["strip_left"]?.GetValue<bool>() ?? true, right = n["strip_right"]?.GetValue<bool>() ?? true;
                _normalizers.Add(s => left && right ? s.Trim() : left ? s.TrimStart() : right ? s.TrimEnd() : s);
                break;
            }
            default: throw Bad($"normalizer '{type}' is not supported");
        }
    }

    private (Regex? Regex, string? Literal) Pattern(JsonNode? p)
    {
        if (p?["Regex"]?.GetValue<string>() is { } re) return (new Regex(re, RegexOptions.CultureInvariant), null);
        if (p?["String"]?.GetValue<string>() is { } s) return (null, s);
        throw Bad($"pattern {p?.ToJsonString()} is neither String nor Regex");
    }

    // ---------------------------------------------------------------- pre-tokenizers
    private void AddPreTokenizer(JsonObject p, ref bool byteLevel)
    {
        var type = p["type"]?.GetValue<string>();
        switch (type)
        {
            case "Sequence":
                foreach (var c in p["pretokenizers"] as JsonArray ?? new JsonArray()) AddPreTokenizer((JsonObject)c!, ref byteLevel);
                break;
            case "ByteLevel":
            {
                byteLevel = true;
                bool prefix = p["add_prefix_space"]?.GetValue<bool>() ?? false;
                bool useRegex = p["use_regex"]?.GetValue<bool>() ?? true;
                if (prefix) _preTokenizers.Add(ps => ps.Select(x => x.First && !x.Text.StartsWith(' ') ? x with { Text = " " + x.Text } : x).ToList());
                if (useRegex)
                {
                    var rx = new Regex(ByteLevel.Gpt2Pattern, RegexOptions.CultureInvariant);
                    _preTokenizers.Add(ps => Split(ps, rx, "Isolated"));
                }
                break;
            }
            case "Split":
            {
                var (regex, literal) = Pattern(p["pattern"]);
                var rx = regex ?? new Regex(Regex.Escape(literal!), RegexOptions.CultureInvariant);
                var behavior = p["behavior"]?.GetValue<string>() ?? "Isolated";
                bool invert = p["invert"]?.GetValue<bool>() ?? false;
                if (invert && behavior != "Isolated") throw Bad($"Split with invert and behavior '{behavior}' is not supported");
                if (behavior is not ("Isolated" or "Removed" or "MergedWithPrevious" or "MergedWithNext"))
                    throw Bad($"Split behavior '{behavior}' is not supported");
                _preTokenizers.Add(ps => Split(ps, rx, behavior));
                break;
            }
            case "Metaspace":
            {
                var rep = p["replacement"]?.GetValue<string>() ?? "\u2581";
                var scheme = p["prepend_scheme"]?.GetValue<string>() ?? ((p["add_prefix_space"]?.GetValue<bool>() ?? true) ? "always" : "never");
                bool split = p["split"]?.GetValue<bool>() ?? true;
                _preTokenizers.Add(ps => ps.Select(x =>
                {
                    var t = x.Text.Replace(" ", rep, StringComparison.Ordinal);
                    if ((scheme == "always" || (scheme == "first" && x.First)) && !t.StartsWith(rep, StringComparison.Ordinal)) t = rep + t;
                    return x with { Text = t };
                }).ToList());
                if (split)
                {
                    var rx = new Regex(Regex.Escape(rep), RegexOptions.CultureInvariant);
                    _preTokenizers.Add(ps => Split(ps, rx, "MergedWithNext"));
                }
                break;
            }
            case "Whitespace":
            {
                var rx = new Regex(@"\w+|[^\w\s]+", RegexOptions.CultureInvariant);
                _preTokenizers.Add(ps => ps.SelectMany(x => rx.Matches(x.Text).Select((m, i) => new Piece(m.Value, x.First && i == 0))).ToList());
                break;
            }
            case "WhitespaceSplit":
            {
                var rx = new Regex(@"\S+", RegexOptions.CultureInvariant);
                _preTokenizers.Add(ps => ps.SelectMany(x => rx.Matches(x.Text).Select((m, i) => new Piece(m.Value, x.First && i == 0))).ToList());
                break;
            }
            case "Digits":
            {
                bool single = p["individual_digits"]?.GetValue<bool>() ?? false;
                var rx = new Regex(single ? @"\p{Nd}" : @"\p{Nd}+", RegexOptions.CultureInvariant);
                _preTokenizers.Add(ps => Split(ps, rx, "Isolated"));
                break;
            }
            case "Punctuation":
            {
                var rx = new Regex(@"\p{P}", RegexOptions.CultureInvariant);
                _preTokenizers.Add(ps => Split(ps, rx, "Isolated"));
                break;
            }
            default: throw Bad($"pre_tokenizer '{type}' is not supported");
        }
    }

    private static List<Piece> Split(List<Piece> pieces, Regex rx, string behavior)
    {
        var result = new List<Piece>(pieces.Count * 2);
        foreach (var piece in pieces)
        {
            var text = piece.Text;
            var parts = new List<string>();
            int pos = 0;
            string? pendingPrefix = null;
            foreach (Match m in rx.Matches(text))
            {
                if (m.Length == 0) continue;
                var before = text[pos..m.Index];
                switch (behavior)
                {
                    case "Isolated":
                        if (before.Length > 0) parts.Add(before);
                        parts.Add(m.Value);
                        break;
                    case "Removed":
                        if (before.Length > 0) parts.Add(before);
                        break;
                    case "MergedWithPrevious":
                        parts.Add(before + m.Value);
                        break;
                    case "MergedWithNext":
                        if (pendingPrefix is not null) parts.Add(pendingPrefix + before);
                        else if (before.Length > 0) parts.Add(before);
                        pendingPrefix = m.Value;
                        break;
                }
                pos = m.Index + m.Length;
            }
            var rest = text[pos..];
            if (pendingPrefix is not null) parts.Add(pendingPrefix + rest);
            else if (rest.Length > 0) parts.Add(rest);
            for (int i = 0; i < parts.Count; i++) result.Add(new Piece(parts[i], piece.First && i == 0));
        }
        return result;
    }

    // ---------------------------------------------------------------- decoders
    private void AddDecoder(JsonObject d)
    {
        var type = d["type"]?.GetValue<string>();
        switch (type)
        {
            case "Sequence":
                foreach (var c in d["decoders"] as JsonArray ?? new JsonArray()) AddDecoder((JsonObject)c!);
                break;
            case "ByteLevel":
                _decoders.Add(tokens =>
                {
                    var bytes = new List<byte>();
                    foreach (var t in tokens)
                        foreach (var ch in t)
                            if (ByteLevel.CharToByte.TryGetValue(ch, out var b)) bytes.Add(b);
                            else bytes.AddRange(Encoding.UTF8.GetBytes(ch.ToString()));
                    return [Encoding.UTF8.GetString(bytes.ToArray())];
                });
                break;
            case "Replace":
            {
                var (regex, literal) = Pattern(d["pattern"]);
                var content = d["content"]!.GetValue<string>();
                _decoders.Add(tokens => tokens.Select(t => regex is not null ? regex.Replace(t, content.Replace("$", "$$")) : t.Replace(literal!, content, StringComparison.Ordinal)).ToList());
                break;
            }
            case "ByteFallback":
                _decoders.Add(ByteFallbackDecode);
                break;
            case "Fuse":
                _decoders.Add(tokens => [string.Concat(tokens)]);
                break;
            case "Strip":
            {
                var content = d["content"]?.GetValue<string>() ?? " ";
                int start = d["start"]?.GetValue<int>() ?? 0, stop = d["stop"]?.GetValue<int>() ?? 0;
                _decoders.Add(tokens => tokens.Select((t, i) =>
                {
                    int s = 0, e = t.Length;
                    for (int k = 0; k < start && s < e && t.AsSpan(s).StartsWith(content); k++) s += content.Length;
                    for (int k = 0; k < stop && e > s && t.AsSpan(s, e - s).EndsWith(content); k++) e -= content.Length;
                    return t[s..e];
                }).ToList());
                break;
            }
            case "Metaspace":
            {
                var rep = d["replacement"]?.GetValue<string>() ?? "\u2581";
                var scheme = d["prepend_scheme"]?.GetValue<string>() ?? ((d["add_prefix_space"]?.GetValue<bool>() ?? true) ? "always" : "never");
                _decoders.Add(tokens => tokens.Select((t, i) =>
                {
                    var s = t.Replace(rep, " ", StringComparison.Ordinal);
                    return i == 0 && scheme != "never" && s.StartsWith(' ') ? s[1..] : s;
                }).ToList());
                break;
            }
            default: throw Bad($"decoder '{type}' is not supported");
        }
    }

    private static List<string> ByteFallbackDecode(List<string> tokens)
    {
        var result = new List<string>(tokens.Count);
        var pending = new List<byte>();
        void Flush()
        {
            if (pending.Count == 0) return;
            result.Add(Encoding.UTF8.GetString(pending.ToArray()));
            pending.Clear();
        }
        foreach (var t in tokens)
        {
            if (t.Length == 6 && t.StartsWith("<0x", StringComparison.Ordinal) && t[5] == '>'
                && byte.TryParse(t.AsSpan(3, 2), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var b))
                pending.Add(b);
            else { Flush(); result.Add(t); }
        }
        Flush();
        return result;
    }

    // ---------------------------------------------------------------- encode / decode
    public IReadOnlyList<int> Encode(string text, bool addBos = false, bool addEos = false)
    {
        var ids = new List<int>();
        if (addBos && BosId is { } bos) ids.Add(bos);
        int pos = 0;
        bool first = true;
        if (_addedPattern is not null)
        {
            foreach (Match m in _addedPattern.Matches(text))
            {
                if (m.Index > pos) { EncodeSegment(text[pos..m.Index], first, ids); }
                ids.Add(_added[m.Groups["t"].Value].Id);
                first = false;
                pos = m.Index + m.Length;
            }
        }
        if (pos < text.Length) EncodeSegment(text[pos..], first, ids);
        if (addEos && EosId is { } eos) ids.Add(eos);
        return ids;
    }

    private void EncodeSegment(string text, bool first, List<int> ids)
    {
        foreach (var n in _normalizers) text = n(text);
        var pieces = new List<Piece> { new(text, first) };
        foreach (var p in _preTokenizers) pieces = p(pieces);
        foreach (var piece in pieces)
        {
            if (piece.Text.Length == 0) continue;
            var word = _byteLevel ? ByteLevel.Encode(piece.Text) : piece.Text;
            ids.AddRange(EncodeWord(word));
        }
    }

    private int[] EncodeWord(string word)
    {
        if (_wordCache.TryGetValue(word, out var cached)) return cached;
        if (_ignoreMerges && _vocab.TryGetValue(word, out var whole)) return Remember(word, [whole]);

        // Symbols: vocab ids, or -1 for a character the vocab lacks (kept with its text for byte fallback).
        var syms = new List<int>();
        var texts = new List<string>();
        foreach (var ch in EnumerateChars(word))
        {
            syms.Add(_vocab.TryGetValue(ch, out var id) ? id : -1);
            texts.Add(ch);
        }
        while (syms.Count > 1)
        {
            int best = -1, bestRank = int.MaxValue, bestMerged = -1;
            for (int i = 0; i + 1 < syms.Count; i++)
            {
                if (syms[i] < 0 || syms[i + 1] < 0) continue;
                if (_merges.TryGetValue((syms[i], syms[i + 1]), out var m) && m.Rank < bestRank)
                { best = i; bestRank = m.Rank; bestMerged = m.Merged; }
            }
            if (best < 0) break;
            syms[best] = bestMerged;
            texts[best] += texts[best + 1];
            syms.RemoveAt(best + 1);
            texts.RemoveAt(best + 1);
        }
        var result = new List<int>(syms.Count);
        bool lastUnk = false;
        for (int i = 0; i < syms.Count; i++)
        {
            if (syms[i] >= 0) { result.Add(syms[i]); lastUnk = false; continue; }
            if (_byteFallback && Encoding.UTF8.GetBytes(texts[i]) is var bytes && bytes.All(b => _byteTokenIds[b] >= 0))
            {
                foreach (var b in bytes) result.Add(_byteTokenIds[b]);
                lastUnk = false;
                continue;
            }
            if (_unkId is not { } unk) throw new InvalidOperationException($"{_path}: character '{texts[i]}' is not in the vocabulary and there is no unk_token");
            if (!(_fuseUnk && lastUnk)) result.Add(unk);
            lastUnk = true;
        }
        return Remember(word, result.ToArray());
    }

    private static IEnumerable<string> EnumerateChars(string s)
    {
        for (int i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])) { yield return s.Substring(i, 2); i++; }
            else yield return s[i].ToString();
        }
    }

    private int[] Remember(string word, int[] ids)
    {
        if (_wordCache.Count > 100_000) _wordCache.Clear();
        _wordCache[word] = ids;
        return ids;
    }

    public string Decode(IEnumerable<int> ids, bool skipSpecial = true)
    {
        var tokens = new List<string>();
        foreach (var id in ids)
        {
            if (id < 0 || id >= _idToToken.Length || _idToToken[id] is null) continue;
            if (skipSpecial && _special.Contains(id)) continue;
            tokens.Add(_idToToken[id]);
        }
        if (_decoders.Count == 0) return string.Concat(tokens);
        var list = tokens;
        foreach (var d in _decoders) list = d(list);
        return string.Concat(list);
    }

    public bool IsSpecial(int id) => _special.Contains(id);
    public string? IdToToken(int id) => id >= 0 && id < _idToToken.Length ? _idToToken[id] : null;
    public int? TokenToId(string token) => _added.TryGetValue(token, out var a) ? a.Id : _vocab.TryGetValue(token, out var id) ? id : null;

    public void Save(string dir)
    {
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, Tokenizers.JsonFile), _json);
        var cfg = _config with
        {
            BosToken = _config.BosToken ?? (BosId is { } b ? IdToToken(b) : null),
            EosToken = _config.EosToken ?? (EosId is { } e ? IdToToken(e) : null),
            PadToken = _config.PadToken ?? IdToToken(PadId),
            AddBosToken = AddBos,
        };
        cfg.Save(Path.Combine(dir, Tokenizers.ConfigFile), "PreTrainedTokenizerFast");
    }
}
