namespace Srlm.Tests.Model;

public class TokenizerTests
{
    private const string Corpus = "the cat sat on the mat. the dog sat on the log. cats and dogs, mats and logs! 123 456\n";

    /// <summary>A Llama-2 style tokenizer.json (SentencePiece BPE): Prepend/Replace normalizer, no pre-tokenizer,
    /// byte fallback, special tokens split out before BPE.</summary>
    public static string LlamaStyleJson()
    {
        var vocab = new JsonObject { ["<unk>"] = 0, ["<s>"] = 1, ["</s>"] = 2 };
        for (int b = 0; b < 256; b++) vocab[$"<0x{b:X2}>"] = 3 + b;
        string[] pieces = ["▁", "h", "e", "l", "o", "w", "r", "d", "He", "ll", "llo", "Hello", "▁w", "or", "▁wor", "ld", "▁world", "▁Hello", "H", "é"];
        foreach (var p in pieces) vocab[p] = vocab.Count;
        string[] merges = ["H e", "l l", "ll o", "He llo", "▁ w", "o r", "▁w or", "l d", "▁wor ld", "▁ Hello"];
        var root = new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = new JsonArray(
                new JsonObject { ["id"] = 0, ["content"] = "<unk>", ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false, ["normalized"] = false, ["special"] = true },
                new JsonObject { ["id"] = 1, ["content"] = "<s>", ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false, ["normalized"] = false, ["special"] = true },
                new JsonObject { ["id"] = 2, ["content"] = "</s>", ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false, ["normalized"] = false, ["special"] = true }),
            ["normalizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["normalizers"] = new JsonArray(
                    new JsonObject { ["type"] = "Prepend", ["prepend"] = "▁" },
                    new JsonObject { ["type"] = "Replace", ["pattern"] = new JsonObject { ["String"] = " " }, ["content"] = "▁" }),
            },
            ["pre_tokenizer"] = null,
            ["post_processor"] = new JsonObject
            {
                ["type"] = "TemplateProcessing",
                ["single"] = new JsonArray(new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = "<s>", ["type_id"] = 0 } },
                    new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "A", ["type_id"] = 0 } }),
                ["pair"] = new JsonArray(new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = "<s>", ["type_id"] = 0 } },
                    new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "A", ["type_id"] = 0 } },
                    new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "B", ["type_id"] = 1 } }),
                ["special_tokens"] = new JsonObject
                {
                    ["<s>"] = new JsonObject { ["id"] = "<s>", ["ids"] = new JsonArray(1), ["tokens"] = new JsonArray("<s>") },
                },
            },
            ["decoder"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["decoders"] = new JsonArray(
                    new JsonObject { ["type"] = "Replace", ["pattern"] = new JsonObject { ["String"] = "▁" }, ["content"] = " " },
                    new JsonObject { ["type"] = "ByteFallback" },
                    new JsonObject { ["type"] = "Fuse" },
                    new JsonObject { ["type"] = "Strip", ["content"] = " ", ["start"] = 1, ["stop"] = 0 }),
            },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = "<unk>", ["continuing_subword_prefix"] = null, ["end_of_word_suffix"] = null,
                ["fuse_unk"] = true, ["byte_fallback"] = true, ["ignore_merges"] = false,
                ["vocab"] = vocab, ["merges"] = new JsonArray(merges.Select(m => (JsonNode)m).ToArray()),
            },
        };
        return root.ToJsonString();
    }

    [Fact]
    public void Llama_style_tokenizer_json_merges_by_rank_splits_specials_and_falls_back_to_bytes()
    {
        var tok = HfTokenizer.FromJson(LlamaStyleJson());
        int Id(string t) => tok.TokenToId(t)!.Value;
        Assert.True(tok.AddBos);
        Assert.Equal(1, tok.BosId);
        Assert.Equal(2, tok.EosId);

        var ids = tok.Encode("Hello world", addBos: true);
        Assert.Equal(new[] { 1, Id("▁Hello"), Id("▁world") }, ids);
        Assert.Equal("Hello world", tok.Decode(ids));

        // "</s>" inside the text is one special id, never BPE'd; 'ß' is not in the vocab -> its two UTF-8 bytes.
        var withSpecial = tok.Encode("Hello</s>ß");
        Assert.Equal(new[] { Id("▁Hello"), 2, Id("▁"), Id("<0xC3>"), Id("<0x9F>") }, withSpecial);
        Assert.Equal("Helloß", tok.Decode(withSpecial).Replace(" ", ""));
        Assert.Equal("Hello</s> ß", tok.Decode(withSpecial, skipSpecial: false));
    }

    [Theory]
    [InlineData("the cat sat on the mat.")]
    [InlineData("Ünïcödé → 日本語 and an emoji 🙂, tabs\tand\nnewlines")]
    [InlineData("  leading and trailing spaces  ")]
    [InlineData("<s>specials</s> inside <pad> text")]
    public void Char_level_tokenizer_round_trips_any_text(string text)
    {
        var tok = TokenizerBuilder.CharLevel(Corpus);
        var ids = tok.Encode(text);
        Assert.Equal(text, tok.Decode(ids, skipSpecial: false));
        Assert.All(ids, id => Assert.InRange(id, 0, tok.VocabSize - 1));
    }

    [Theory]
    [InlineData("the cat sat on the mat.")]
    [InlineData("Ünïcödé → 日本語 and an emoji 🙂, tabs\tand\nnewlines")]
    [InlineData("  leading and trailing spaces  ")]
    public void Trained_byte_level_bpe_round_trips_and_compresses(string text)
    {
        var tok = TokenizerBuilder.TrainBpe(string.Concat(Enumerable.Repeat(Corpus, 20)), 320);
        var ids = tok.Encode(text);
        Assert.Equal(text, tok.Decode(ids));
        Assert.True(tok.VocabSize > 260 && tok.VocabSize <= 320, $"vocab {tok.VocabSize}");
        var common = tok.Encode("the cat sat on the mat.");
        Assert.True(common.Count < 12, $"'the cat sat on the mat.' took {common.Count} tokens; merges are not applied");
    }

    [Fact]
    public void Special_tokens_encode_to_one_id_and_are_skipped_on_decode()
    {
        var tok = TokenizerBuilder.TrainBpe(Corpus, 300, ["<|im_start|>", "<|im_end|>"]);
        var ids = tok.Encode("<|im_start|>the cat<|im_end|>", addBos: true, addEos: true);
        Assert.Equal(tok.BosId, ids[0]);
        Assert.Equal(tok.EosId, ids[^1]);
        Assert.Equal(tok.TokenToId("<|im_start|>"), ids[1]);
        Assert.Contains(tok.TokenToId("<|im_end|>")!.Value, ids);
        Assert.Equal("the cat", tok.Decode(ids));
        Assert.Equal("<s><|im_start|>the cat<|im_end|></s>", tok.Decode(ids, skipSpecial: false));
    }

    [Fact]
    public void A_saved_tokenizer_loads_back_from_the_folder_with_the_same_ids()
    {
        var dir = TestModels.TempDir("tok");
        var tok = TokenizerBuilder.TrainBpe(Corpus, 300);
        tok.Save(dir);
        var back = Tokenizers.Load(dir);
        const string text = "the dog sat on 42 logs 🙂";
        Assert.Equal(tok.Encode(text), back.Encode(text));
        Assert.Equal(tok.PadId, back.PadId);
        Assert.Equal(tok.BosId, back.BosId);
        Assert.True(back.AddBos);
    }

    [Fact]
    public void Unsupported_tokenizer_model_is_a_one_line_error_naming_the_file()
    {
        var dir = TestModels.TempDir("tokbad");
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}");
        var e = Assert.Throws<CheckpointException>(() => Tokenizers.Load(dir));
        Assert.Contains("tokenizer.json", e.Message);
        Assert.Contains("WordPiece", e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }

    [Fact]
    public void Prompt_templates_follow_the_model_family_and_can_be_overridden()
    {
        Assert.Equal("chatml", PromptTemplate.ForModel(TestModels.Qwen2Tied(), new TokenizerConfig()).Name);
        Assert.Equal("zephyr", PromptTemplate.ForModel(TestModels.Llama(), new TokenizerConfig { ChatTemplate = "{% for m in messages %}<|user|>\n{{ m }}" }).Name);
        Assert.Equal("llama2", PromptTemplate.ForModel(TestModels.Llama(), new TokenizerConfig { ChatTemplate = "[INST] {{ x }} [/INST]" }).Name);
        Assert.Equal("plain", PromptTemplate.ForModel(TestModels.Llama(), new TokenizerConfig()).Name);
        var custom = PromptTemplate.Custom("Q: {instruction}\nA:");
        Assert.Equal("Q: hi\nA:", custom.Format("hi"));
        var dir = TestModels.TempDir("tmpl");
        custom.Save(dir);
        Assert.Equal(custom, PromptTemplate.Load(dir));
        Assert.Throws<ArgumentException>(() => PromptTemplate.Custom("no placeholder"));
    }
}
