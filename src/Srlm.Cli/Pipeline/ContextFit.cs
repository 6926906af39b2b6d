using Srlm.Contracts.Judging;
using Srlm.Contracts.Seeds;
using Srlm.Contracts.Spec;
using Srlm.Generator;
using Srlm.Model;
using Srlm.Model.Tokenization;

namespace Srlm.Cli.Pipeline;

/// <summary>Refuses, when a run is submitted, a spec whose longest prompt of a stage plus that stage's token limit
/// cannot fit the starting model's context. At run time such a prompt would be cut from the left to make room
/// (CheckpointModelProvider), silently; here the submitter gets one line naming the limit at fault.
///
/// The longest prompt of each stage, rendered as the services render it (the checkpoint's chat template or layout):
/// candidates: the longest pool instruction, or for self-instruct a generated prompt as long as it can be
/// (prompts.sampling.max_new_tokens tokens, at most prompts.filter.max_chars characters); the judge: the judge
/// template around that instruction and an answer of responses.sampling.max_new_tokens tokens; self-instruct: the
/// few-shot text of the longest seed instructions plus generated examples as long as they can be; evaluation: the
/// longest held-out instruction, and when the run's own model judges the win rate, its judge prompt around it.
/// A model with "dynamic" RoPE scaling stretches past max_position_embeddings and is not checked, nor is a folder whose
/// config or tokenizer the model loader would refuse (it says why when a worker loads it).</summary>
public static class ContextFit
{
    public static void Check(RunSpec spec, string? judgeTemplate, string modelDir, string modelField, Func<string, string> resolve)
    {
        LlamaConfig config;
        ITokenizer tokenizer;
        PromptTemplate template;
        try
        {
            config = LlamaConfig.Load(Path.Combine(modelDir, Checkpoint.ConfigFile));
            tokenizer = Tokenizers.Load(modelDir);
            template = PromptTemplate.ForFolder(modelDir, config, tokenizer);
        }
        catch (CheckpointException)
        {
            return; // a folder the model loader cannot read is reported by the loader, with the file at fault
        }
        if (config.RopeScaling.Kind == "dynamic") return;
        int context = config.MaxPositionEmbeddings;

        int Prompt(string instruction) => tokenizer.Encode(template.Format(instruction), addBos: template.AddBos(tokenizer)).Count;
        int Raw(string text) => tokenizer.Encode(text).Count;
        List<string> Instructions(string? file, Func<string, IEnumerable<string>> read) =>
            file is null || SpecRefs.IsBlob(file) || !File.Exists(resolve(file)) ? [] : read(resolve(file)).ToList();

        void Fit(int prompt, int limit, string field, string what)
        {
            if (prompt + limit <= context) return;
            throw new UsageException($"spec.{field}: {limit} new tokens after {what} of up to {prompt} tokens need {prompt + limit} positions, " +
                $"more than the {context} of {modelField} (config.json max_position_embeddings); lower the limit or shorten the prompts");
        }

        // The instruction a candidate answers: from the pool, or written by the model itself.
        bool selfInstruct = spec.Prompts.Source == PromptSources.SelfInstruct;
        int generatedTokens = Math.Min(spec.Prompts.Sampling.MaxNewTokens, spec.Prompts.Filter.MaxChars);
        int instructionRaw, instructionPrompt;
        string instructionWhat;
        if (selfInstruct)
        {
            (instructionRaw, instructionPrompt) = (generatedTokens, Prompt("") + generatedTokens);
            instructionWhat = "a self-instructed prompt";
        }
        else
        {
            var pool = Instructions(spec.Prompts.PoolFile, f => SeedReader.ReadPrompts(f).Records.Select(p => p.Instruction));
            instructionRaw = pool.Count == 0 ? 0 : pool.Max(Raw);
            instructionPrompt = pool.Count == 0 ? Prompt("") : pool.Max(Prompt);
            instructionWhat = "a prompt of prompts.pool_file";
        }

        int responses = spec.Responses.Sampling.MaxNewTokens;
        int judgeFrame = Prompt(JudgePrompt.Format(judgeTemplate, "", ""));
        // A run of no iteration (an SFT-only run) writes no prompt, candidate or judgement.
        if (spec.Iterations > 0)
        {
            Fit(instructionPrompt, responses, "responses.sampling.max_new_tokens", instructionWhat);

            Fit(judgeFrame + instructionRaw + responses, spec.Judge.Sampling.MaxNewTokens, "judge.sampling.max_new_tokens",
                $"a judge prompt ({instructionWhat} and an answer of responses.sampling.max_new_tokens)");

            if (selfInstruct && spec.Models.PromptModel is null)
            {
                var seeds = Instructions(spec.SeedData.Ift, f => SeedReader.ReadIft(f).Records.Select(r => r.Instruction))
                    .OrderByDescending(s => s.Length).Take(spec.Prompts.FewShot.SeedExamples).ToList();
                var fewShot = SelfInstruct.BuildFewShot(seeds, [], spec.Prompts.FewShot with { GeneratedExamples = 0 }, seed: 0);
                // Raw text for our layouts, the user message of a chat template (as the prompt consumer sends it).
                int frame = template.Chat is null ? tokenizer.Encode(fewShot, addBos: tokenizer.AddBos).Count : Prompt(fewShot);
                int generated = spec.Prompts.FewShot.GeneratedExamples * (generatedTokens + 4); // "Task n: " and the newline
                Fit(frame + generated, spec.Prompts.Sampling.MaxNewTokens, "prompts.sampling.max_new_tokens", "the self-instruct few-shot prompt");
            }
        }

        if (spec.Evaluation is { } eval)
        {
            var heldOut = Instructions(eval.HeldOut, f => SeedReader.ReadPrompts(f).Records.Select(p => p.Instruction));
            if (heldOut.Count > 0)
            {
                Fit(heldOut.Max(Prompt), eval.MaxNewTokens, "evaluation.max_new_tokens", "a prompt of evaluation.held_out");
                // The run's own model judges the win rate when no judge_model is given.
                if (eval.Evaluator == EvaluationSpec.JudgeWinRate && eval.JudgeModel is null)
                {
                    int raw = heldOut.Max(Raw);
                    bool pairwise = eval.JudgeMode == EvaluationSpec.Pairwise;
                    int frame = pairwise ? Prompt(PairwiseJudging.Format("", "", "")) : judgeFrame;
                    int answers = (pairwise ? 2 : 1) * eval.MaxNewTokens;
                    Fit(frame + raw + answers, spec.Judge.Sampling.MaxNewTokens, "judge.sampling.max_new_tokens",
                        "an evaluation judge prompt (a held-out instruction and answers of evaluation.max_new_tokens)");
                }
            }
        }
    }
}
