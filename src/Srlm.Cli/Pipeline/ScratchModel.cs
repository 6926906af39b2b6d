using Srlm.Contracts.Judging;
using System.Text;
using System.Text.Json;
using Srlm.Contracts.Spec;
using Srlm.ServiceKit;
using Srlm.Model;
using Srlm.Model.Tokenization;
using TorchSharp;

namespace Srlm.Cli.Pipeline;

/// <summary>M0 of a `models.init` spec: a tokenizer built from the run's own seed text (IFT, EFT in the
/// judge's format, the prompt pool, the few-shot header; never the held-out files), a small Llama config
/// and weights drawn from the run seed. Written as a normal checkpoint folder, then uploaded like any M0.</summary>
public static class ScratchModel
{
    public static string Create(RunSpec spec, Func<string, string> resolve, string dir)
    {
        var init = spec.Models.Init ?? throw new InvalidOperationException("spec.models.init is not set");
        var text = new StringBuilder();
        void Jsonl(string? path, params string[] fields)
        {
            if (path is null) return;
            foreach (var line in File.ReadLines(resolve(path)))
            {
                if (string.IsNullOrWhiteSpace(line)) continue;
                using var doc = JsonDocument.Parse(line);
                foreach (var f in fields)
                    if (doc.RootElement.TryGetProperty(f, out var v)) text.Append(v.ValueKind == JsonValueKind.String ? v.GetString() : v.GetRawText()).Append('\n');
            }
        }
        Jsonl(spec.SeedData.Ift, "instruction", "answer");
        Jsonl(spec.SeedData.Eft, "instruction", "answer", "judgement");
        Jsonl(spec.Prompts.PoolFile, "instruction");
        text.Append(JudgePrompt.TemplateOf(spec.Judge.Template)).Append('\n').Append(Srlm.Generator.SelfInstruct.Header).Append("Task 0123456789: Score:\n");
        var template = PromptTemplate.ByName(init.Template);
        text.Append(template.Format("")).Append('\n');

        HfTokenizer tokenizer = init.Tokenizer == "bpe" ? TokenizerBuilder.TrainBpe(text.ToString(), init.VocabSize) : TokenizerBuilder.CharLevel(text.ToString());
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
}
