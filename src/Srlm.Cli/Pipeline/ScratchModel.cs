using TorchSharp;

namespace Srlm.Cli.Pipeline;

/// <summary>M0 of a `models.init` spec: a tokenizer built from the run's own text (IFT, EFT in the judge's format,
/// the prompt pool, the run's judge template, the few-shot header; never the held-out files), a small Llama config
/// and weights drawn from the run seed. Written as a normal checkpoint folder, then uploaded like any M0.</summary>
public static class ScratchModel
{
    public static string Create(RunSpec spec, Func<string, string> resolve, string dir)
    {
        var init = spec.Models.Init ?? throw new InvalidOperationException("spec.models.init is not set");
        var text = Corpus(spec, resolve);
        var template = PromptTemplate.ByName(init.Template);
        HfTokenizer tokenizer = init.Tokenizer == "bpe" ? TokenizerBuilder.TrainBpe(text, init.VocabSize) : TokenizerBuilder.CharLevel(text);
        var config = LlamaConfig.Tiny(tokenizer.VocabSize, init.HiddenSize, init.Layers, init.Heads, init.KvHeads, init.IntermediateSize) with
        {
            MaxPositionEmbeddings = init.MaxPositionEmbeddings,
            BosTokenId = tokenizer.BosId, EosTokenId = tokenizer.EosId, EosTokenIds = tokenizer.EosId is { } e ? [e] : [], PadTokenId = tokenizer.PadId,
        };
        torch.manual_seed(spec.Seed);
        var model = new LlamaForCausalLM(config);
        using var lm = new LanguageModel(model, tokenizer, template, new GenerationSettings());
        lm.Save(dir);
        return dir;
    }

    /// <summary>The text the tokenizer is trained on.</summary>
    public static string Corpus(RunSpec spec, Func<string, string> resolve)
    {
        var init = spec.Models.Init ?? throw new InvalidOperationException("spec.models.init is not set");
        var text = new StringBuilder();
        // The seed files as the seed reader reads them (the upload has already refused bad ones): the prompt text and
        // answer of each IFT record, the instruction, answer and trained judgement (Completion) of each EFT record, each pool instruction.
        if (spec.SeedData.Ift is { } ift)
            foreach (var r in SeedReader.ReadIft(resolve(ift)).OrThrow()) text.Append(r.Prompt).Append('\n').Append(r.Answer).Append('\n');
        if (spec.SeedData.Eft is { } eft)
            foreach (var r in SeedReader.ReadEft(resolve(eft), spec.Judge.MaxScore).OrThrow())
                text.Append(r.Instruction).Append('\n').Append(r.Answer).Append('\n').Append(r.Completion).Append('\n');
        if (spec.Prompts.PoolFile is { } pool)
            foreach (var r in SeedReader.ReadPrompts(resolve(pool)).OrThrow()) text.Append(r.Instruction).Append('\n');
        text.Append(JudgePrompt.TemplateOf(JudgeTemplate(spec, resolve))).Append('\n').Append(Srlm.Generator.SelfInstruct.Header).Append("Task 0123456789: Score:\n");
        text.Append(PromptTemplate.ByName(init.Template).Format("")).Append('\n');
        return text.ToString();
    }

    /// <summary>The judge template the run will use: judge.template_file's text (the upload inlines it into
    /// judge.template only after M0 is built), else judge.template (a template or a built-in name), else null (the
    /// built-in default).</summary>
    private static string? JudgeTemplate(RunSpec spec, Func<string, string> resolve) =>
        spec.Judge.TemplateFile is { } file ? File.ReadAllText(resolve(file), Encoding.UTF8) : spec.Judge.Template;
}
