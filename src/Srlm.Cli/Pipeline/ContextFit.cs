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
    /// <summary>A checkpoint folder's context, tokenizer and prompt rendering; null when the folder cannot be read (the
    /// model loader reports why, with the file at fault) or its RoPE scaling is "dynamic".</summary>
    private sealed record Model(int Context, ITokenizer Tokenizer, PromptTemplate Template, string Field)
    {
        public static Model? Read(string dir, string field)
        {
            try
            {
                var config = LlamaConfig.Load(Path.Combine(dir, Checkpoint.ConfigFile));
                if (config.RopeScaling.Kind == "dynamic") return null;
                var tokenizer = Tokenizers.Load(dir);
                return new Model(config.MaxPositionEmbeddings, tokenizer, PromptTemplate.ForFolder(dir, config, tokenizer), field);
            }
            catch (CheckpointException) { return null; }
        }

        public int Prompt(string instruction) => Tokenizer.Encode(Template.Format(instruction), addBos: Template.AddBos(Tokenizer)).Count;
        public int Raw(string text) => Tokenizer.Encode(text).Count;

        public void Fit(int prompt, int limit, string field, string what)
        {
            if (prompt + limit <= Context) return;
            throw new UsageException($"spec.{field}: {limit} new tokens after {what} of up to {prompt} tokens need {prompt + limit} positions, " +
                $"more than the {Context} of {Field} (config.json max_position_embeddings); lower the limit or shorten the prompts");
        }
    }

    private static List<string> Instructions(string? file, Func<string, string> resolve, Func<string, IEnumerable<string>> read) =>
        file is null || SpecRefs.IsBlob(file) || !File.Exists(resolve(file)) ? [] : read(resolve(file)).ToList();

    /// <summary>A generated prompt is at most this many tokens: its generation limit, and the filter's characters.</summary>
    private static int GeneratedTokens(RunSpec spec) => Math.Min(spec.Prompts.Sampling.MaxNewTokens, spec.Prompts.Filter.MaxChars);

    /// <summary>The self-instruct few-shot text of the longest seed instructions, and generated examples as long as
    /// they can be, plus prompts.sampling.max_new_tokens, on the model that writes the prompts.</summary>
    private static void FewShot(RunSpec spec, Model m, Func<string, string> resolve)
    {
        var seeds = Instructions(spec.SeedData.Ift, resolve, f => SeedReader.ReadIft(f).Records.Select(r => r.Instruction))
            .OrderByDescending(s => s.Length).Take(spec.Prompts.FewShot.SeedExamples).ToList();
        var text = SelfInstruct.BuildFewShot(seeds, [], spec.Prompts.FewShot with { GeneratedExamples = 0 }, seed: 0);
        // Raw text for our layouts, the user message of a chat template (as the prompt consumer sends it).
        int frame = m.Template.Chat is null ? m.Tokenizer.Encode(text, addBos: m.Tokenizer.AddBos).Count : m.Prompt(text);
        int generated = spec.Prompts.FewShot.GeneratedExamples * (GeneratedTokens(spec) + 4); // "Task n: " and the newline
        m.Fit(frame + generated, spec.Prompts.Sampling.MaxNewTokens, "prompts.sampling.max_new_tokens", "the self-instruct few-shot prompt");
    }

    /// <summary>The fixed prompt model (models.prompt_model, a folder) writes every self-instructed prompt.</summary>
    public static void CheckPromptModel(RunSpec spec, string modelDir, string modelField, Func<string, string> resolve)
    {
        if (spec.Iterations == 0 || spec.Prompts.Source != PromptSources.SelfInstruct || Model.Read(modelDir, modelField) is not { } m) return;
        FewShot(spec, m, resolve);
    }

    /// <summary>The starting model (M1, base or init) generates candidates, judges them, writes prompts unless a
    /// prompt model does, and answers the held-out instructions.</summary>
    public static void Check(RunSpec spec, string? judgeTemplate, string modelDir, string modelField, Func<string, string> resolve)
    {
        if (Model.Read(modelDir, modelField) is not { } m) return;
        int Prompt(string instruction) => m.Prompt(instruction);
        int Raw(string text) => m.Raw(text);
        void Fit(int prompt, int limit, string field, string what) => m.Fit(prompt, limit, field, what);

        // The instruction a candidate answers: from the pool, or written by the model itself.
        bool selfInstruct = spec.Prompts.Source == PromptSources.SelfInstruct;
        int generatedTokens = GeneratedTokens(spec);
        int instructionRaw, instructionPrompt;
        string instructionWhat;
        if (selfInstruct)
        {
            (instructionRaw, instructionPrompt) = (generatedTokens, Prompt("") + generatedTokens);
            instructionWhat = "a self-instructed prompt";
        }
        else
        {
            var pool = Instructions(spec.Prompts.PoolFile, resolve, f => SeedReader.ReadPrompts(f).Records.Select(p => p.Instruction));
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

            if (selfInstruct && spec.Models.PromptModel is null) FewShot(spec, m, resolve);
        }

        if (spec.Evaluation is { } eval)
        {
            var heldOut = Instructions(eval.HeldOut, resolve, f => SeedReader.ReadPrompts(f).Records.Select(p => p.Instruction));
            if (heldOut.Count > 0)
            {
                Fit(heldOut.Max(Prompt), eval.MaxNewTokens, "evaluation.max_new_tokens", "a prompt of evaluation.held_out");
                // The run's own model judges the win rate when no judge_model is given.
                if (eval.JudgeModel is null) EvaluationJudge(spec, judgeTemplate, m, heldOut);
            }
        }
    }

    /// <summary>The fixed judge of the win rate (evaluation.judge_model, a folder).</summary>
    public static void CheckEvaluationJudge(RunSpec spec, string? judgeTemplate, string modelDir, string modelField, Func<string, string> resolve)
    {
        if (spec.Evaluation is not { } eval || Model.Read(modelDir, modelField) is not { } m) return;
        var heldOut = Instructions(eval.HeldOut, resolve, f => SeedReader.ReadPrompts(f).Records.Select(p => p.Instruction));
        if (heldOut.Count > 0) EvaluationJudge(spec, judgeTemplate, m, heldOut);
    }

    /// <summary>The win rate's judge prompt: a held-out instruction and one answer (pointwise) or two (pairwise) of
    /// evaluation.max_new_tokens, plus judge.sampling.max_new_tokens.</summary>
    private static void EvaluationJudge(RunSpec spec, string? judgeTemplate, Model m, List<string> heldOut)
    {
        var eval = spec.Evaluation!;
        if (eval.Evaluator != EvaluationSpec.JudgeWinRate) return;
        bool pairwise = eval.JudgeMode == EvaluationSpec.Pairwise;
        int frame = m.Prompt(pairwise ? PairwiseJudging.Format("", "", "") : JudgePrompt.Format(judgeTemplate, "", ""));
        int answers = (pairwise ? 2 : 1) * eval.MaxNewTokens;
        m.Fit(frame + heldOut.Max(m.Raw) + answers, spec.Judge.Sampling.MaxNewTokens, "judge.sampling.max_new_tokens",
            "an evaluation judge prompt (a held-out instruction and answers of evaluation.max_new_tokens)");
    }
}
