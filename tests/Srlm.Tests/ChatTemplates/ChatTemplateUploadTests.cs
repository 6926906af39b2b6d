namespace Srlm.Tests.ChatTemplates;

/// <summary>spec.models.chat_template: uploaded into the starting checkpoint as chat_template.jinja (so every
/// checkpoint of the run renders with it), and a template the interpreter cannot render is refused at submission.</summary>
public sealed class ChatTemplateUploadTests() : StoreFolderTest("srlm-chat-upload-")
{
    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();
        var m1 = Path.GetFullPath(Path.Combine(JinjaReference.Dir(), "..", "..", "..", "samples", "smoke", "m1"));
        Directory.CreateDirectory(Path.Combine(Folder, "m1"));
        foreach (var f in Directory.GetFiles(m1)) File.Copy(f, Path.Combine(Folder, "m1", Path.GetFileName(f)));
        File.WriteAllText(Path.Combine(Folder, "ift.jsonl"), "{\"instruction\":\"1+1\",\"answer\":\"2\"}\n");
    }

    private static RunSpec Spec(string template) => RunSpecJson.Parse(
        $$"""{ "schema_version": 1, "name": "chat", "iterations": 1, "prompts": { "sampling": { "max_new_tokens": 16 } }, "responses": { "sampling": { "max_new_tokens": 16 } }, "judge": { "template": "Judge {instruction} {response}", "sampling": { "max_new_tokens": 16 } }, "models": { "m1": "m1", "chat_template": "{{template}}" }, "seed_data": { "ift": "ift.jsonl" } }""");

    [Fact]
    public async Task The_spec_template_is_written_into_the_uploaded_checkpoint_and_replaces_the_folders_layout()
    {
        const string text = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";
        File.WriteAllText(Path.Combine(Folder, "t.jinja"), text);
        var up = await RunUpload.UploadAsync(Stores.Artifacts, Stores.Checkpoints, Spec("t.jinja"), Folder, "chat-1", default);
        Assert.Null(up.StoredSpec.Models.ChatTemplate);
        var dir = await Stores.Checkpoints.MaterializeAsync(up.StartCheckpointId);
        Assert.Equal(text, File.ReadAllText(Path.Combine(dir, ChatFormat.TemplateFile)));
        Assert.Equal("<|user|>2+2?<|assistant|>", ChatFormat.Load(dir)!.Prompt("2+2?"));
        Assert.False(File.Exists(Path.Combine(Folder, "m1", ChatFormat.TemplateFile)), "the user's folder is not changed");
    }

    [Fact]
    public async Task A_template_with_a_construct_the_interpreter_lacks_is_refused_at_submission_and_no_run_is_stored()
    {
        var file = Path.Combine(Folder, "bad.jinja");
        File.WriteAllText(file, "{% for m in messages %}\n{% filter upper %}{{ m.content }}{% endfilter %}{% endfor %}");
        var e = await Assert.ThrowsAsync<UsageException>(() => RunUpload.UploadAsync(Stores.Artifacts, Stores.Checkpoints, Spec("bad.jinja"), Folder, "chat-2", default));
        Assert.Equal($"spec.models.chat_template: {file}:2:4: the 'filter' statement is not supported", e.Message);
        Assert.Null(await Stores.Artifacts.GetRunAsync("chat-2"));
    }
}
