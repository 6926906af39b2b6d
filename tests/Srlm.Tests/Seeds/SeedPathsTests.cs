using Srlm.ServiceKit;

namespace Srlm.Tests.Seeds;

/// <summary>One seed file gives the same training text on every path: `srlm train sft` (from the files) and the trainer
/// service (from the blobs `srlm start`/`srlm run` uploaded with the run, read back through the spec cache).</summary>
public sealed class SeedPathsTests() : StoreFolderTest("srlm-seedpaths-")
{
    private const string Eft = """
        {"instruction":"2+2?","answer":"4","judgement":"Correct and brief.","score":5}
        {"instruction":"2+2?","answer":"5","judgement":"Score: 1. Wrong sum.","score":1}
        {"instruction":"3+3?","answer":"6","judgement":"Right.\nScore: 5  \n"}
        {"instruction":"3+3?","answer":"six","judgement":"**Score:** 4/5","score":4,"id":"e4","category":"math"}
        """;

    public static TheoryData<string, string, string[]> Formats => new()
    {
        { "instruction/answer", """
            {"instruction":"Say hi","answer":"Hi!"}
            {"instruction":"2+2?","answer":" 4\n","id":"x1","source":"hand"}
            """, ["Say hi", "2+2?"] },
        { "alpaca", """
            {"instruction":"Translate to English.","input":"Bonjour","output":"Hello"}
            {"instruction":"Name a colour.","input":"","output":"Red","text":"pre-rendered"}
            """, ["Translate to English.\n\nBonjour", "Name a colour."] },
        { "messages", """
            {"messages":[{"role":"user","content":"2+2?"},{"role":"assistant","content":"4"}]}
            {"messages":[{"role":"system","content":"Be terse."},{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello"},{"role":"user","content":"3+3?"},{"role":"assistant","content":"6"}]}
            """, ["2+2?", "System: Be terse.\n\nUser: Hi\n\nAssistant: Hello\n\nUser: 3+3?"] },
    };

    /// <summary>The SFT examples of <paramref name="ift"/> (with the EFT file and a judge template written beside it)
    /// on both paths: <c>srlm train</c>'s reading, and the trainer service's after the run spec naming
    /// <paramref name="checkpointFolder"/> as M1 is uploaded as run <paramref name="runId"/>.</summary>
    private async Task<(IReadOnlyList<Srlm.Training.SftExample> Cli, IReadOnlyList<TextExample> Service)> BothPathsAsync(string ift, string checkpointFolder, string runId)
    {
        var eft = Write("eft.jsonl", Eft);
        var judge = Write("judge.txt", "Rate it.\nQ: {instruction}\nA: {response}\nEnd with Score: <0-5>.\n");
        var spec = RunSpecJson.Parse($$"""
            { "schema_version": 1, "name": "paths", "models": { "m1": "{{Path.GetFileName(checkpointFolder)}}" },
              "seed_data": { "ift": "ift.jsonl", "eft": "eft.jsonl" }, "judge": { "template_file": "judge.txt" } }
            """);
        var uploaded = await RunUpload.UploadAsync(Stores.Artifacts, Stores.Checkpoints, spec, Folder, runId, default);
        var service = await SeedInputs.SftAsync(new RunSpecCache(Stores.Artifacts), uploaded.StoredSpec, default);
        return (TrainCommand.SeedExamplesOf(ift, eft, judge, "--eft"), service);
    }

    [Theory]
    [MemberData(nameof(Formats))]
    public async Task Each_format_gives_byte_identical_training_text_through_srlm_train_and_the_trainer_service(string format, string iftText, string[] prompts)
    {
        var ift = Write("ift.jsonl", iftText);
        var (cli, service) = await BothPathsAsync(ift, OpsFixtures.CheckpointFolder(Folder, "weights"), "paths-1");

        Assert.Equal(cli.Select(e => (e.Prompt, e.Completion)), service.Select(e => (e.Prompt, e.Completion)));
        Assert.Equal(prompts.Length + 4, cli.Count);
        Assert.Equal(prompts, cli.Take(prompts.Length).Select(e => e.Prompt));
        Assert.Equal(["Correct and brief.\nScore: 5", "Score: 1. Wrong sum.", "Right.\nScore: 5", "**Score:** 4/5"], cli.Skip(prompts.Length).Select(e => e.Completion));
        Assert.Equal("Rate it.\nQ: 2+2?\nA: 4\nEnd with Score: <0-5>.\n", cli[prompts.Length].Prompt);
        var eft = Path.Combine(Folder, "eft.jsonl"); // written by BothPathsAsync
        Assert.Equal([$"{ift}:1", $"{ift}:2", $"{eft}:1", $"{eft}:2", $"{eft}:3", $"{eft}:4"], cli.Select(e => e.Source));
        Assert.Equal(format, Assert.Single(Srlm.Contracts.Seeds.SeedReader.ReadIft(ift).Formats).Key);
    }

    [Fact]
    public async Task A_multi_turn_messages_line_is_rendered_turn_by_turn_by_a_chat_template_identically_on_both_paths_as_jinja2_renders_it()
    {
        // A checkpoint with a real chat template (Qwen2.5-Instruct's, from the committed corpus): the conversation of a
        // messages line must reach the template as turns, not as the "System: / User:" text our layouts get.
        var corpus = Path.Combine(Path.GetDirectoryName(Srlm.Tests.ChatTemplates.JinjaReference.Dir())!, "ChatTemplates", "corpus");
        var source = File.ReadAllText(Path.Combine(corpus, "qwen2.5-instruct.jinja"));
        var folder = OpsFixtures.CheckpointFolder(Folder, "weights");
        File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"), new JsonObject
        {
            ["chat_template"] = source, ["eos_token"] = "<|im_end|>", ["pad_token"] = "<|endoftext|>",
        }.ToJsonString());
        var chat = Srlm.Model.ChatTemplates.ChatFormat.Load(folder)!;
        var template = Srlm.Model.Tokenization.PromptTemplate.FromChat(chat);

        var ift = Write("ift.jsonl", """
            {"messages":[{"role":"system","content":"Be terse."},{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello"},{"role":"user","content":"3+3?"},{"role":"assistant","content":"6"}]}
            {"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"  Hello there!  "},{"role":"user","content":"Bye\n"},{"role":"assistant","content":"Bye."}]}
            {"instruction":"2+2?","answer":"4"}
            """);
        var (cli, service) = await BothPathsAsync(ift, folder, "paths-chat");

        // The text the trainer tokenizes (SftTrainer.Tokenize → JobRunner.EncodePrompt → PromptText.Of) on each path.
        var cliText = cli.Select(e => (Srlm.Training.PromptText.Of(template, e), e.Completion)).ToList();
        var serviceText = service.Select((e, i) => (Srlm.Training.PromptText.Of(template, new Srlm.Training.SftExample(e.Prompt, e.Completion, $"job#{i}", e.Context)), e.Completion)).ToList();
        Assert.Equal(cliText, serviceText);
        Assert.Equal(7, cliText.Count);

        const string DefaultSystem = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n";
        Assert.Equal("<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n"
            + "<|im_start|>user\n3+3?<|im_end|>\n<|im_start|>assistant\n", cliText[0].Item1);
        Assert.Equal(DefaultSystem + "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n  Hello there!  <|im_end|>\n"
            + "<|im_start|>user\nBye\n<|im_end|>\n<|im_start|>assistant\n", cliText[1].Item1);
        Assert.Equal(DefaultSystem + "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n", cliText[2].Item1);
        Assert.Equal(["6", "Bye.", "4"], cliText.Take(3).Select(t => t.Completion));
        // An EFT judge prompt is one user message, as before.
        Assert.Equal(chat.Prompt("Rate it.\nQ: 2+2?\nA: 4\nEnd with Score: <0-5>.\n"), cliText[3].Item1);

        // The same as transformers' apply_chat_template(messages[:-1], add_generation_prompt=True) (python3-jinja2,
        // configured as transformers configures it).
        if (!File.Exists("/usr/bin/python3")) { Console.WriteLine("skipped the jinja2 comparison: /usr/bin/python3 is missing"); return; }
        var records = Srlm.Contracts.Seeds.SeedReader.ReadIft(ift).OrThrow();
        var cases = records.Select(r => (source, new JsonObject
        {
            ["messages"] = new JsonArray(r.Context.Select(t => (JsonNode)new JsonObject { ["role"] = t.Role, ["content"] = t.Content }).ToArray()),
            ["add_generation_prompt"] = true, ["tools"] = null, ["documents"] = null,
            ["eos_token"] = "<|im_end|>", ["pad_token"] = "<|endoftext|>",
        })).ToList();
        var reference = Srlm.Tests.ChatTemplates.JinjaReference.Render(cases);
        Assert.Equal(reference.Select(r => r.Text), cliText.Take(3).Select(t => (string?)t.Item1));
    }

    [Fact]
    public void Without_a_chat_template_a_multi_turn_conversation_keeps_the_flattened_text_in_the_layout()
    {
        var context = new Srlm.Contracts.Seeds.ChatTurn[]
        {
            new("system", "Be terse."), new("user", "Hi"), new("assistant", "Hello"), new("user", "3+3?"),
        };
        var flat = Srlm.Contracts.Seeds.SeedPrompt.Render(context);
        var e = new Srlm.Training.SftExample(flat, "6", "x:1", context);
        Assert.Equal("### Instruction:\nSystem: Be terse.\n\nUser: Hi\n\nAssistant: Hello\n\nUser: 3+3?\n\n### Response:\n",
            Srlm.Training.PromptText.Of(Srlm.Model.Tokenization.PromptTemplate.Plain, e));
        Assert.Equal("<|im_start|>user\nSystem: Be terse.\n\nUser: Hi\n\nAssistant: Hello\n\nUser: 3+3?<|im_end|>\n<|im_start|>assistant\n",
            Srlm.Training.PromptText.Of(Srlm.Model.Tokenization.PromptTemplate.ChatMl, e));
    }

    [Fact]
    public async Task A_file_with_a_line_that_would_lose_content_is_refused_before_the_run_exists()
    {
        var ift = Write("ift.jsonl", "{\"instruction\":\"Sum.\",\"answer\":\"5\"}\n{\"instruction\":\"Sum.\",\"input\":\"2 3\",\"answer\":\"5\"}\n");
        var m1 = Path.GetFileName(OpsFixtures.CheckpointFolder(Folder, "weights"));
        var spec = RunSpecJson.Parse($$"""{ "schema_version": 1, "name": "paths", "models": { "m1": "{{m1}}" }, "seed_data": { "ift": "ift.jsonl" } }""");
        var e = await Assert.ThrowsAsync<Srlm.Cli.UsageException>(() => RunUpload.UploadAsync(Stores.Artifacts, Stores.Checkpoints, spec, Folder, "paths-2", default));
        Assert.Equal($"{ift}:2: field \"input\" would be dropped: the instruction/answer format has no place for it (an Alpaca line names its answer \"output\")", e.Message);
        Assert.Null(await Stores.Artifacts.GetRunAsync("paths-2"));
    }

    [Fact]
    public async Task The_trainer_service_refuses_a_stored_file_with_the_same_one_line_problem_naming_the_spec_field()
    {
        // A store written by another tool (srlm start would have refused the file): the trainer names the spec field.
        var blob = await Stores.Artifacts.PutBlobAsync("{\"instruction\":\"a\",\"answer\":\"b\"}\n{\"instruction\":\"Sum.\",\"context\":\"2 3\",\"answer\":\"5\"}\n"u8.ToArray(), "ift.jsonl");
        var spec = RunSpecJson.Parse($$"""{ "schema_version": 1, "name": "paths", "models": { "m1": "checkpoint:x" }, "seed_data": { "ift": "blob:{{blob.Sha256}}" } }""");
        var e = await Assert.ThrowsAsync<Srlm.Messaging.Bus.PermanentMessageException>(() => SeedInputs.SftAsync(new RunSpecCache(Stores.Artifacts), spec, default));
        Assert.Equal("spec.seed_data.ift:2: field \"context\" would be dropped: the instruction/answer format has no place for it", e.Message);
    }

    private string Write(string name, string text)
    {
        var path = Path.Combine(Folder, name);
        File.WriteAllText(path, text.ReplaceLineEndings("\n").TrimEnd('\n') + "\n");
        return path;
    }
}
