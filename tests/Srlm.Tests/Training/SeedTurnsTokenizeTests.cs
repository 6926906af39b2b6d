namespace Srlm.Tests.Training;

/// <summary>The tokens SFT trains on for a multi-turn seed conversation: a checkpoint with a chat template gets the
/// conversation rendered turn by turn (then the answer and the end-of-turn token); the same checkpoint without
/// its template (our srlm.json layout) gets the flattened "System: / User: / Assistant:" instruction as before.</summary>
public sealed class SeedTurnsTokenizeTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("srlm-seedturns-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    [Fact]
    public void A_multi_turn_conversation_is_tokenized_turn_by_turn_under_a_chat_template_and_flattened_under_a_layout()
    {
        var tok = TokenizerBuilder.CharLevel(TestModels.Alphabet, ["<|im_start|>", "<|im_end|>"]);
        using (var lm = new LanguageModel(LlamaForCausalLM.Create(TestModels.Llama(vocab: 320), 3, 0.25), tok, PromptTemplate.Plain, new GenerationSettings()))
            lm.Save(_dir);
        var context = new ChatTurn[] { new(ChatTurn.System, "be terse"), new(ChatTurn.User, "hi"), new(ChatTurn.Assistant, "hello"), new(ChatTurn.User, "bye") };
        var example = new SftExample(SeedPrompt.Render(context), "ok", "ift.jsonl:1", context);

        using (var layout = LanguageModel.Load(_dir))
        {
            var seq = Assert.Single(SftTrainer.Tokenize(layout, [example], 4096));
            var flat = "### Instruction:\nSystem: be terse\n\nUser: hi\n\nAssistant: hello\n\nUser: bye\n\n### Response:\n";
            Assert.Equal(layout.Tokenizer.Encode(flat, addBos: layout.Tokenizer.AddBos).ToArray(), seq.Prompt);
        }

        File.WriteAllText(Path.Combine(_dir, ChatFormat.TemplateFile),
            "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}");
        using var chat = LanguageModel.Load(_dir);
        Assert.NotNull(chat.Template.Chat);
        var s = Assert.Single(SftTrainer.Tokenize(chat, [example], 4096));
        var turns = "<|im_start|>system\nbe terse<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello<|im_end|>\n<|im_start|>user\nbye<|im_end|>\n<|im_start|>assistant\n";
        Assert.Equal(chat.Tokenizer.Encode(turns, addBos: false).ToArray(), s.Prompt);
        Assert.Equal([.. chat.Tokenizer.Encode("ok"), chat.Tokenizer.TokenToId("<|im_end|>")!.Value], s.Completion);
        // Without a conversation (an EFT judge prompt) the prompt is one user message, as before.
        var judge = Assert.Single(SftTrainer.Tokenize(chat, [example with { Context = null }], 4096));
        Assert.Equal(chat.Tokenizer.Encode(chat.Template.Format(example.Prompt), addBos: false).ToArray(), judge.Prompt);
    }
}
