namespace Srlm.Tests.Cli;

/// <summary>The tokenizer of a `models.init` run is trained on the run's own text, its judge template included, so a
/// change to the built-in default template changes no run that names its own (it once changed samples/tiny's tokenizer).</summary>
public class ScratchModelTests
{
    private static RunSpec Spec(string judge) => RunSpecJson.Parse($$$"""
        {"schema_version":1,"name":"scratch","seed":3,"iterations":1,
         "models":{"init":{"hidden_size":32,"layers":1,"heads":2,"kv_heads":2,"max_position_embeddings":256}},
         "seed_data":{"ift":"ift.jsonl"},
         "judge":{{{judge}}}}
        """);

    [Fact]
    public void The_corpus_holds_the_judge_template_the_run_uses()
    {
        var folder = TestModels.TempDir("scratch");
        File.WriteAllText(Path.Combine(folder, "ift.jsonl"), "{\"instruction\":\"What is 2+3?\",\"answer\":\"5\"}\n");
        File.WriteAllText(Path.Combine(folder, "judge.txt"), "Zanzibar marmalade rubric {instruction} / {response}\n");
        string Resolve(string p) => Path.Combine(folder, p);
        var paperLine = JudgePrompt.PaperTemplate.Split('\n')[0];

        var fromFile = ScratchModel.Corpus(Spec("""{"template_file":"judge.txt"}"""), Resolve);
        Assert.Contains("Zanzibar marmalade rubric", fromFile, StringComparison.Ordinal);
        Assert.DoesNotContain(paperLine, fromFile, StringComparison.Ordinal);

        var inline = ScratchModel.Corpus(Spec("""{"template":"Quokka rubric {instruction} / {response}"}"""), Resolve);
        Assert.Contains("Quokka rubric", inline, StringComparison.Ordinal);
        Assert.DoesNotContain(paperLine, inline, StringComparison.Ordinal);

        Assert.Contains(paperLine, ScratchModel.Corpus(Spec("""{"template":"paper"}"""), Resolve), StringComparison.Ordinal);
        Assert.Contains(paperLine, ScratchModel.Corpus(Spec("{}"), Resolve), StringComparison.Ordinal);
    }
}
