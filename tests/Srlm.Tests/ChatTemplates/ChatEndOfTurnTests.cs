using Srlm.ServiceKit;
using ModelRequest = Srlm.Model.GenerationRequest;
using ServiceRequest = Srlm.ServiceKit.GenerationRequest;

namespace Srlm.Tests.ChatTemplates;

/// <summary>End to end: a checkpoint with a ChatML template is fine-tuned by the trainer's own SFT entry point (whose
/// answers end with the template's end-of-turn token), and the services' model provider then stops its greedy answer
/// at that token, so the answer comes back without the token and well short of the token limit.</summary>
[Collection(TrainingCollection.Name)]
public sealed class ChatEndOfTurnTests
{
    private const string Alphabet = "abcdefghijklmnopqrstuvwxyz .,?!";
    private const string ChatMl =
        "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

    [Fact]
    public async Task A_model_trained_through_its_chat_template_emits_the_end_of_turn_token_and_the_provider_stops_there()
    {
        Tiny.UseTestThreads();
        using var dir = new Tiny.TempDir();
        var parent = dir.Sub("m0");
        var tok = TokenizerBuilder.CharLevel(Alphabet, ["<|im_start|>", "<|im_end|>"]);
        var config = LlamaConfig.Tiny(tok.VocabSize, hidden: 64, layers: 2, heads: 4, kvHeads: 2) with { MaxPositionEmbeddings = 96 };
        using (var lm = new LanguageModel(LlamaForCausalLM.Create(config, 5), tok, PromptTemplate.Plain, new GenerationSettings()))
            lm.Save(parent);
        File.WriteAllText(Path.Combine(parent, ChatFormat.TemplateFile), ChatMl);

        // Two questions with short answers, repeated so a few dozen steps memorise them.
        var pairs = new[] { ("what is red?", "a colour."), ("say hi", "hi there!") };
        var examples = Enumerable.Range(0, 16).Select(i => new SftExample(pairs[i % 2].Item1, pairs[i % 2].Item2, $"mem:{i}")).ToList();
        await SftTrainer.RunAsync(new SftJob
        {
            JobId = "eot", ParentCheckpoint = parent, Examples = examples,
            Options = new SftOptions
            {
                LearningRate = 3e-3, MinLearningRate = 3e-3, WarmupSteps = 0, Dropout = 0, Epochs = 30,
                BatchSize = 8, MicroBatchSize = 8, WeightDecay = 0, Seed = 3,
            },
            StateDirectory = dir.Sub("state"), OutputDirectory = dir.Sub("m1"),
        });

        // The trained model, without any stop id, writes the answer and then the end-of-turn token itself.
        using (var m1 = LanguageModel.Load(dir.Sub("m1")))
        {
            Assert.Equal("<|im_end|>", m1.Template.Chat!.EndOfTurn);
            int eot = m1.Tokenizer.TokenToId("<|im_end|>")!.Value;
            var ids = m1.Tokenizer.Encode(m1.Template.Format("what is red?"), addBos: m1.Template.AddBos(m1.Tokenizer));
            var free = new TextGenerator(m1.Model, m1.Tokenizer).Generate([new ModelRequest(ids, [0UL])], SamplingOptions.Greedy(30)).Single();
            int at = Array.IndexOf(free.TokenIds, eot);
            Assert.True(at > 0, $"the trained model never wrote <|im_end|> in 30 tokens: '{m1.Tokenizer.Decode(free.TokenIds)}'");
            Assert.Equal("a colour.", m1.Tokenizer.Decode(free.TokenIds[..at]));
        }

        // The services' path: the checkpoint store and the provider every generator, judge and evaluator uses.
        var store = new DirectoryCheckpointStore(dir.Sub("store"));
        await store.PutAsync("run/m1", dir.Sub("m1"));
        using var provider = new CheckpointModelProvider(store);
        var model = await provider.GetAsync("run/m1", CancellationToken.None);
        var results = await model.GenerateAsync(
            [new ServiceRequest("what is red?", 1, 0, 1, 30), new ServiceRequest("say hi", 2, 0, 1, 30)], CancellationToken.None);
        Assert.Equal("a colour.", results[0].Text);
        Assert.Equal("hi there!", results[1].Text);
        // Stopped by the end-of-turn token (neither returned nor counted), not by the 30-token limit.
        Assert.Equal(model.CountCompletionTokens("a colour."), results[0].CompletionTokens);
        Assert.Equal(model.CountCompletionTokens("hi there!"), results[1].CompletionTokens);
        Assert.True(results[0].CompletionTokens < 30);
    }
}
