namespace Srlm.Model.Tokenization;

/// <summary>Builds tokenizers for models trained from scratch, as standard tokenizer.json files that the
/// Hugging Face tokenizers library loads. Special tokens come first: &lt;pad&gt;=0, &lt;s&gt;=1, &lt;/s&gt;=2, &lt;unk&gt;=3
/// (matching <see cref="LlamaConfig.Tiny"/>), then any extra special tokens.</summary>
public static class TokenizerBuilder
{
    public static readonly string[] DefaultSpecials = ["<pad>", "<s>", "</s>", "<unk>"];

    /// <summary>Character level: every character of <paramref name="text"/> is a token (most frequent first),
    /// plus the 256 byte tokens so any unseen character still encodes (byte fallback).</summary>
    public static HfTokenizer CharLevel(string text, IEnumerable<string>? extraSpecials = null)
    {
        var specials = DefaultSpecials.Concat(extraSpecials ?? []).Distinct().ToList();
        var vocab = new JsonObject();
        int id = 0;
        foreach (var s in specials) vocab[s] = id++;
        for (int b = 0; b < 256; b++) vocab[$"<0x{b:X2}>"] = id++;
        var chars = Chars(text).GroupBy(c => c).OrderByDescending(g => g.Count()).ThenBy(g => g.Key, StringComparer.Ordinal).Select(g => g.Key);
        foreach (var c in chars) if (!vocab.ContainsKey(c)) vocab[c] = id++;
        var model = new JsonObject
        {
            ["type"] = "BPE",
            ["dropout"] = null,
            ["unk_token"] = "<unk>",
            ["continuing_subword_prefix"] = null,
            ["end_of_word_suffix"] = null,
            ["fuse_unk"] = false,
            ["byte_fallback"] = true,
            ["ignore_merges"] = false,
            ["vocab"] = vocab,
            ["merges"] = new JsonArray(),
        };
        var decoder = new JsonObject
        {
            ["type"] = "Sequence",
            ["decoders"] = new JsonArray(new JsonObject { ["type"] = "ByteFallback" }, new JsonObject { ["type"] = "Fuse" }),
        };
        return Finish(specials, model, preTokenizer: null, decoder);
    }

    /// <summary>Byte-level BPE (GPT-2 style) trained on <paramref name="text"/> up to <paramref name="vocabSize"/>
    /// tokens, deterministic: ties between equally frequent pairs break by the pair's text.</summary>
    public static HfTokenizer TrainBpe(string text, int vocabSize, IEnumerable<string>? extraSpecials = null)
    {
        var specials = DefaultSpecials.Concat(extraSpecials ?? []).Distinct().ToList();
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var s in specials) vocab[s] = vocab.Count;
        for (int b = 0; b < 256; b++) vocab.TryAdd(ByteLevel.ByteToChar[b].ToString(), vocab.Count);
        if (vocabSize < vocab.Count) throw new ArgumentException($"vocab size {vocabSize} is smaller than the {vocab.Count} base tokens");

        // Words (pre-tokens) with their counts, as lists of symbols.
        var rx = new Regex(ByteLevel.Gpt2Pattern, RegexOptions.CultureInvariant);
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (Match m in rx.Matches(text))
        {
            var w = ByteLevel.Encode(m.Value);
            counts[w] = counts.GetValueOrDefault(w) + 1;
        }
        var words = counts.OrderBy(kv => kv.Key, StringComparer.Ordinal)
            .Select(kv => (Symbols: kv.Key.Select(c => c.ToString()).ToList(), Count: kv.Value)).ToList();
        var merges = new JsonArray();
        while (vocab.Count < vocabSize)
        {
            var pairs = new Dictionary<(string, string), long>();
            foreach (var (syms, count) in words)
                for (int i = 0; i + 1 < syms.Count; i++)
                    pairs[(syms[i], syms[i + 1])] = pairs.GetValueOrDefault((syms[i], syms[i + 1])) + count;
            if (pairs.Count == 0) break;
            var best = pairs.OrderByDescending(kv => kv.Value)
                .ThenBy(kv => kv.Key.Item1, StringComparer.Ordinal).ThenBy(kv => kv.Key.Item2, StringComparer.Ordinal).First();
            if (best.Value < 2) break;
            var (l, r) = best.Key;
            var merged = l + r;
            merges.Add(new JsonArray(l, r));
            vocab.TryAdd(merged, vocab.Count);
            foreach (var (syms, _) in words)
                for (int i = 0; i + 1 < syms.Count; i++)
                    if (syms[i] == l && syms[i + 1] == r) { syms[i] = merged; syms.RemoveAt(i + 1); }
        }
        var vocabJson = new JsonObject();
        foreach (var (t, i) in vocab.OrderBy(kv => kv.Value)) vocabJson[t] = i;
        var model = new JsonObject
        {
            ["type"] = "BPE",
            ["dropout"] = null,
            ["unk_token"] = null,
            ["continuing_subword_prefix"] = null,
            ["end_of_word_suffix"] = null,
            ["fuse_unk"] = false,
            ["byte_fallback"] = false,
            ["ignore_merges"] = false,
            ["vocab"] = vocabJson,
            ["merges"] = merges,
        };
        var pre = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true };
        var decoder = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = true, ["use_regex"] = true };
        return Finish(specials, model, pre, decoder);
    }

    private static HfTokenizer Finish(List<string> specials, JsonObject model, JsonObject? preTokenizer, JsonObject decoder)
    {
        var added = new JsonArray();
        for (int i = 0; i < specials.Count; i++)
            added.Add(new JsonObject
            {
                ["id"] = i, ["content"] = specials[i], ["single_word"] = false, ["lstrip"] = false,
                ["rstrip"] = false, ["normalized"] = false, ["special"] = true,
            });
        var root = new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = added,
            ["normalizer"] = null,
            ["pre_tokenizer"] = preTokenizer,
            ["post_processor"] = new JsonObject
            {
                ["type"] = "TemplateProcessing",
                ["single"] = new JsonArray(
                    new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = "<s>", ["type_id"] = 0 } },
                    new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "A", ["type_id"] = 0 } }),
                ["pair"] = new JsonArray(
                    new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = "<s>", ["type_id"] = 0 } },
                    new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "A", ["type_id"] = 0 } },
                    new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "B", ["type_id"] = 1 } }),
                ["special_tokens"] = new JsonObject
                {
                    ["<s>"] = new JsonObject { ["id"] = "<s>", ["ids"] = new JsonArray(1), ["tokens"] = new JsonArray("<s>") },
                },
            },
            ["decoder"] = decoder,
            ["model"] = model,
        };
        var json = root.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
        var config = new TokenizerConfig { BosToken = "<s>", EosToken = "</s>", PadToken = "<pad>", UnkToken = "<unk>", AddBosToken = true };
        return HfTokenizer.FromJson(json, config);
    }

    private static IEnumerable<string> Chars(string s)
    {
        for (int i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])) { yield return s.Substring(i, 2); i++; }
            else yield return s[i].ToString();
        }
    }
}
