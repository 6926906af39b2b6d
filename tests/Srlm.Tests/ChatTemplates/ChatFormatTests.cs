namespace Srlm.Tests.ChatTemplates;

/// <summary>A checkpoint folder's chat template: where it is read from, the special tokens it sees, the
/// end-of-turn token and EOS ids generation stops at, prompts without a doubled BOS, and `srlm prompt`.</summary>
[Collection("console")]
public sealed class ChatFormatTests : IDisposable
{
    private static readonly string CorpusDir = Path.Combine(JinjaReference.Dir(), "corpus");
    private readonly string _dir = TestModels.TempDir("chatformat");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string Corpus(string file) => File.ReadAllText(Path.Combine(CorpusDir, file));

    private void WriteConfig(JsonNode? chatTemplate, string? bos, string eos, params string[] added)
    {
        var decoder = new JsonObject();
        for (var i = 0; i < added.Length; i++) decoder[(1000 + i).ToString()] = new JsonObject { ["content"] = added[i], ["special"] = true };
        var o = new JsonObject { ["eos_token"] = new JsonObject { ["content"] = eos }, ["added_tokens_decoder"] = decoder };
        if (bos is not null) o["bos_token"] = bos;
        if (chatTemplate is not null) o["chat_template"] = chatTemplate;
        File.WriteAllText(Path.Combine(_dir, "tokenizer_config.json"), o.ToJsonString());
    }

    [Theory]
    [InlineData("qwen2.5-instruct.jinja", null, "<|im_end|>", "<|im_end|>", "<|im_start|>,<|im_end|>,<|endoftext|>")]
    [InlineData("llama-3.1-instruct.jinja", "<|begin_of_text|>", "<|eot_id|>", "<|eot_id|>", "<|begin_of_text|>,<|start_header_id|>,<|end_header_id|>,<|eot_id|>")]
    [InlineData("gemma-2-it.jinja", "<bos>", "<eos>", "<end_of_turn>", "<bos>,<eos>,<start_of_turn>,<end_of_turn>")]
    [InlineData("phi-3-mini-instruct.jinja", "<s>", "<|endoftext|>", "<|end|>", "<|user|>,<|assistant|>,<|system|>,<|end|>")]
    [InlineData("mistral-7b-instruct-v0.1.jinja", "<s>", "</s>", "</s>", "<s>,</s>")]
    [InlineData("zephyr-7b-beta.jinja", "<s>", "</s>", "</s>", "<s>,</s>,<unk>")]
    [InlineData("llama-2-chat.jinja", "<s>", "</s>", "</s>", "<s>,</s>,<unk>")]
    [InlineData("granite-3.0-instruct.jinja", "<|end_of_text|>", "<|end_of_text|>", "<|end_of_text|>", "<|start_of_role|>,<|end_of_role|>,<|end_of_text|>")]
    public void The_end_of_turn_token_is_the_special_token_written_after_an_assistant_answer(string file, string? bos, string eos, string expected, string added)
    {
        WriteConfig(Corpus(file), bos, eos, added.Split(','));
        var chat = ChatFormat.Load(_dir)!;
        Assert.Equal(expected, chat.EndOfTurn);
        Assert.Equal(bos, chat.Tokens.Bos);
        Assert.Equal(eos, chat.Tokens.Eos);
    }

    [Fact]
    public void The_template_is_read_from_chat_template_jinja_first_then_tokenizer_config_then_its_default_entry()
    {
        Assert.Null(ChatFormat.Load(_dir));
        WriteConfig(new JsonArray(new JsonObject { ["name"] = "tool_use", ["template"] = "TOOLS" }, new JsonObject { ["name"] = "default", ["template"] = "DEFAULT {{ messages[0].content }}" }), null, "</s>");
        Assert.Equal("DEFAULT hi", ChatFormat.Load(_dir)!.Prompt("hi"));
        WriteConfig("STRING {{ messages[0].content }}", null, "</s>");
        Assert.Equal("STRING hi", ChatFormat.Load(_dir)!.Prompt("hi"));
        File.WriteAllText(Path.Combine(_dir, ChatFormat.TemplateFile), "FILE {{ messages[0].content }}\n");
        Assert.Equal("FILE hi", ChatFormat.Load(_dir)!.Prompt("hi"));
        var over = Path.Combine(_dir, "override.jinja");
        File.WriteAllText(over, "OVERRIDE {{ messages[0].content }}");
        Assert.Equal("OVERRIDE hi", ChatFormat.Load(_dir, over)!.Prompt("hi"));
    }

    [Fact]
    public void Special_tokens_come_from_special_tokens_map_when_tokenizer_config_lacks_them_and_eos_ids_from_generation_config()
    {
        File.WriteAllText(Path.Combine(_dir, "tokenizer_config.json"), new JsonObject { ["chat_template"] = "{{ bos_token }}|{{ eos_token }}|{{ pad_token }}" }.ToJsonString());
        File.WriteAllText(Path.Combine(_dir, "special_tokens_map.json"), """{"bos_token": {"content": "<B>"}, "eos_token": "<E>", "pad_token": "<P>"}""");
        File.WriteAllText(Path.Combine(_dir, "generation_config.json"), """{"eos_token_id": [7, 9]}""");
        var chat = ChatFormat.Load(_dir)!;
        Assert.Equal("<B>|<E>|<P>", chat.Prompt("x"));
        Assert.Equal([7, 9], chat.GenerationEosIds);
        File.WriteAllText(Path.Combine(_dir, "generation_config.json"), """{"eos_token_id": 4}""");
        Assert.Equal([4], ChatFormat.Load(_dir)!.GenerationEosIds);
    }

    [Fact]
    public void A_folder_template_with_a_construct_the_interpreter_lacks_is_refused_when_loaded_naming_file_line_and_column()
    {
        var path = Path.Combine(_dir, ChatFormat.TemplateFile);
        File.WriteAllText(path, "{% for m in messages %}\n  {% filter upper %}{{ m.content }}{% endfilter %}\n{% endfor %}");
        var e = Assert.Throws<ChatTemplateException>(() => ChatFormat.Load(_dir));
        Assert.Equal($"{path}:2:6: the 'filter' statement is not supported", e.Message);
    }

    [Fact]
    public void A_checkpoint_with_a_chat_template_gets_prompts_with_one_BOS_and_stops_at_its_end_of_turn_token()
    {
        var tok = TokenizerBuilder.CharLevel(TestModels.Alphabet, ["<|im_start|>", "<|im_end|>"]);
        using (var lm = new LanguageModel(LlamaForCausalLM.Create(TestModels.Llama(vocab: 320), 3, 0.25), tok, PromptTemplate.Plain, new GenerationSettings()))
            lm.Save(_dir);
        Assert.True(File.Exists(Path.Combine(_dir, "srlm.json")));
        // The template writes BOS itself, as Llama 3's and Mistral's do.
        File.WriteAllText(Path.Combine(_dir, ChatFormat.TemplateFile),
            "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}");
        using var loaded = LanguageModel.Load(_dir);
        Assert.NotNull(loaded.Template.Chat);
        Assert.Equal("<s><|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", loaded.Template.Format("hi"));

        // The encoding every prompt site uses (trainer, generator, judge, evaluation): no BOS added by the tokenizer.
        var ids = loaded.Tokenizer.Encode(loaded.Template.Format("hi"), addBos: loaded.Template.AddBos(loaded.Tokenizer)).ToArray();
        Assert.True(loaded.Tokenizer.AddBos);
        var bos = loaded.Tokenizer.BosId!.Value;
        Assert.Equal(bos, ids[0]);
        Assert.Equal(1, ids.Count(i => i == bos));
        Assert.Contains(loaded.Tokenizer.TokenToId("<|im_end|>")!.Value, loaded.Template.StopTokenIds(loaded.Tokenizer));

        // The stop ids end generation like EOS does: greedy decoding stops at once when its first token is one.
        var request = new GenerationRequest(ids, [0UL]);
        var generator = new TextGenerator(loaded.Model, loaded.Tokenizer);
        var free = generator.Generate([request], SamplingOptions.Greedy(4)).Single();
        Assert.Equal(4, free.TokenIds.Length);
        var stopped = generator.Generate([request], SamplingOptions.Greedy(4) with { StopTokenIds = [free.TokenIds[0]] }).Single();
        Assert.Empty(stopped.TokenIds);
        Assert.Equal(FinishReason.Eos, stopped.FinishReason);

        // A child checkpoint keeps the template.
        var child = Path.Combine(_dir, "child");
        Directory.CreateDirectory(child);
        loaded.Save(child);
        Assert.Equal(loaded.Template.Chat!.Template.Source, File.ReadAllText(Path.Combine(child, ChatFormat.TemplateFile)));
    }

    [Fact]
    public async Task Srlm_prompt_prints_exactly_the_rendered_text_and_a_template_error_in_one_line()
    {
        WriteConfig(Corpus("mistral-7b-instruct-v0.1.jinja"), "<s>", "</s>");
        var messages = Path.Combine(_dir, "m.json");
        File.WriteAllText(messages, """[{"role": "user", "content": "Hi → 世界"}, {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye"}]""");
        var (code, stdout, _) = await CliConsole.RunAsync("prompt", "--model", _dir, "--messages", messages);
        Assert.Equal(0, code);
        var expected = ChatFormat.Load(_dir)!.Render(
            [ChatMessage.User("Hi → 世界"), ChatMessage.Assistant("Hello"), ChatMessage.User("Bye")], addGenerationPrompt: true);
        Assert.Equal(expected, stdout);
        Assert.Equal("<s>[INST] Hi → 世界 [/INST]Hello</s> [INST] Bye [/INST]", stdout);

        File.WriteAllText(messages, """[{"role": "assistant", "content": "first"}]""");
        var (bad, outBad, err) = await CliConsole.RunAsync("prompt", "--model", _dir, "--messages", messages, "--no-generation-prompt");
        Assert.NotEqual(0, bad);
        Assert.Equal("", outBad);
        Assert.Equal("srlm prompt: the chat template refused the conversation: Conversation roles must alternate user/assistant/user/assistant/...", err.TrimEnd('\n'));

        var (j, judgeOut, _) = await CliConsole.RunAsync("prompt", "--model", _dir, "--judge", "--instruction", "Add 2 and 2.", "--response", "4");
        Assert.Equal(0, j);
        Assert.StartsWith("<s>[INST] ", judgeOut);
        Assert.Contains("Add 2 and 2.", judgeOut);
        Assert.EndsWith(" [/INST]", judgeOut);
    }
}
