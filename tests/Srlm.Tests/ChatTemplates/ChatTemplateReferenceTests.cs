namespace Srlm.Tests.ChatTemplates;

/// <summary>Every template of the committed corpus of real chat templates (corpus/manifest.json names each one's
/// model, source and licence) renders byte for byte what Python's jinja2 renders when configured as
/// transformers' apply_chat_template configures it, for user-only, system+user and multi-turn conversations,
/// with and without the generation prompt, and refuses the same conversations with the same message.</summary>
public sealed class ChatTemplateReferenceTests
{
    private static readonly string CorpusDir = Path.Combine(JinjaReference.Dir(), "corpus");

    private static JsonObject Msg(string role, string content) => new() { ["role"] = role, ["content"] = content };

    /// <summary>The conversations: the usual shapes, content with quotes, newlines, non-ASCII and surrounding
    /// spaces (templates trim), and orders some templates refuse with raise_exception.</summary>
    public static readonly (string Name, JsonObject[] Messages)[] Conversations =
    [
        ("user-only", [Msg("user", "What is the capital of France?")]),
        ("system+user", [Msg("system", "You are a terse assistant."), Msg("user", "Name three primes.")]),
        ("multi-turn", [Msg("system", "Be kind."), Msg("user", "Hi"), Msg("assistant", "  Hello there!  "),
            Msg("user", "Tell me about \"quotes\", 'apostrophes' and {{ braces }}\nacross lines → 世界 🙂")]),
        ("multi-turn-no-system", [Msg("user", "Hi"), Msg("assistant", "Hello"), Msg("user", "Bye\n")]),
        ("ends-with-assistant", [Msg("user", "2+2?"), Msg("assistant", "4")]),
        ("assistant-first", [Msg("assistant", "I speak first"), Msg("user", "Hi")]),
        ("two-users-in-a-row", [Msg("user", "a"), Msg("user", "b")]),
    ];

    public static TheoryData<string> Templates()
    {
        var data = new TheoryData<string>();
        foreach (var t in Manifest()) data.Add(t!["file"]!.GetValue<string>());
        return data;
    }

    private static JsonArray Manifest() =>
        JsonNode.Parse(File.ReadAllText(Path.Combine(CorpusDir, "manifest.json")))!["templates"]!.AsArray();

    private static SpecialTokens TokensOf(string file)
    {
        var e = Manifest().Single(t => t!["file"]!.GetValue<string>() == file)!;
        return new SpecialTokens(e["bos_token"]?.GetValue<string>(), e["eos_token"]?.GetValue<string>(),
            e["unk_token"]?.GetValue<string>(), e["pad_token"]?.GetValue<string>());
    }

    [Fact]
    public void The_corpus_covers_the_families_the_issue_names_and_every_file_is_in_the_manifest()
    {
        var files = Directory.GetFiles(CorpusDir, "*.jinja").Select(f => Path.GetFileName(f)).Order().ToList();
        var listed = Manifest().Select(t => t!["file"]!.GetValue<string>()).Order().ToList();
        Assert.Equal(files, listed);
        foreach (var family in new[] { "chatml", "smollm2", "qwen2.5", "llama-3", "mistral", "phi-3", "gemma", "zephyr", "llama-2", "granite" })
            Assert.Contains(files, f => f.StartsWith(family, StringComparison.Ordinal));
        foreach (var t in Manifest())
        {
            Assert.False(string.IsNullOrWhiteSpace(t!["source"]?.GetValue<string>()), $"{t["file"]} has no source");
            Assert.False(string.IsNullOrWhiteSpace(t["licence"]?.GetValue<string>()), $"{t["file"]} has no licence");
        }
    }

    [Theory]
    [MemberData(nameof(Templates))]
    public void Renders_byte_for_byte_what_python_jinja2_renders(string file)
    {
        var source = File.ReadAllText(Path.Combine(CorpusDir, file));
        var template = ChatTemplate.Parse(source, file);
        var tokens = TokensOf(file);

        var cases = new List<(string, JsonObject)>();
        var labels = new List<string>();
        foreach (var (name, messages) in Conversations)
            foreach (var gen in new[] { true, false })
            {
                var context = new JsonObject
                {
                    ["messages"] = new JsonArray(messages.Select(m => (JsonNode)m.DeepClone()).ToArray()),
                    ["add_generation_prompt"] = gen,
                    ["tools"] = null,
                    ["documents"] = null,
                };
                if (tokens.Bos is not null) context["bos_token"] = tokens.Bos;
                if (tokens.Eos is not null) context["eos_token"] = tokens.Eos;
                if (tokens.Unk is not null) context["unk_token"] = tokens.Unk;
                if (tokens.Pad is not null) context["pad_token"] = tokens.Pad;
                cases.Add((source, context));
                labels.Add($"{file} / {name} / add_generation_prompt={gen}");
            }

        var expected = JinjaReference.Render(cases);
        var rendered = 0;
        var refused = 0;
        var failed = 0;
        for (var i = 0; i < cases.Count; i++)
        {
            var (name, messages) = Conversations[i / 2];
            var gen = i % 2 == 0;
            var msgs = messages.Select(m => new ChatMessage(m["role"]!.GetValue<string>(), m["content"]!.GetValue<string>())).ToList();
            var r = expected[i];
            if (r.Text is not null)
            {
                Assert.True(r.Error is null && r.Raised is null);
                var ours = template.Render(msgs, gen, tokens);
                Assert.True(r.Text == ours, $"{labels[i]}\nexpected: {Show(r.Text)}\nrendered: {Show(ours)}");
                rendered++;
            }
            else if (r.Raised is not null)
            {
                var e = Assert.Throws<ChatTemplateRaisedException>(() => template.Render(msgs, gen, tokens));
                Assert.Equal(r.Raised, e.TemplateMessage);
                Assert.DoesNotContain('\n', e.Message);
                refused++;
            }
            else
            {
                // The template itself fails on this conversation in jinja2 too (e.g. Gemma 3 reads a system
                // message's content as a list of parts): ours must fail as well, with a one-line error.
                var e = Assert.ThrowsAny<ChatTemplateException>(() => template.Render(msgs, gen, tokens));
                Assert.DoesNotContain('\n', e.Message);
                failed++;
            }
        }
        Assert.True(rendered >= 4, $"{file}: only {rendered} conversations rendered");
        _ = refused + failed;
    }

    [Fact]
    public void Templates_that_refuse_a_conversation_refuse_it_here_with_the_templates_message()
    {
        // Mistral v0.1 and Gemma 2 refuse conversations with raise_exception; our renderer must refuse the same ones.
        var mistral = ChatTemplate.Parse(File.ReadAllText(Path.Combine(CorpusDir, "mistral-7b-instruct-v0.1.jinja")), "mistral.jinja");
        var e = Assert.Throws<ChatTemplateRaisedException>(() =>
            mistral.Render([ChatMessage.Assistant("x"), ChatMessage.User("y")], true, new SpecialTokens("<s>", "</s>")));
        Assert.Equal("Conversation roles must alternate user/assistant/user/assistant/...", e.TemplateMessage);
        var gemma = ChatTemplate.Parse(File.ReadAllText(Path.Combine(CorpusDir, "gemma-2-it.jinja")), "gemma.jinja");
        var g = Assert.Throws<ChatTemplateRaisedException>(() =>
            gemma.Render([ChatMessage.System("s"), ChatMessage.User("u")], true, new SpecialTokens("<bos>", "<eos>")));
        Assert.Equal("System role not supported", g.TemplateMessage);
    }

    private static string Show(string s) => System.Text.Json.JsonSerializer.Serialize(s);
}
