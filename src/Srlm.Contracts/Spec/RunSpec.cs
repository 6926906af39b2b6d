// Over 300 lines on purpose: the whole run spec, one record per section in the order docs/run-spec.md describes them.
namespace Srlm.Contracts.Spec;

// The run spec: everything about a run's behaviour (docs/run-spec.md). Infrastructure (bus, store,
// checkpoint store, threads) comes from the environment instead. The spec is stored with the run and
// every replica reads it from the store, so two replicas can never behave differently on one run.
// JSON uses snake_case names (RunSpecJson); every field has a default except the ones a run cannot
// guess (a starting model and the seed files). Versioned by SchemaVersion; a change adds fields.

/// <summary>A whole run: models, seed data, loop sizes, sampling, judge, pair rules, training, evaluation.</summary>
public sealed record RunSpec
{
    /// <summary>The schema this spec was written for; a newer binary reads older versions, never newer ones.</summary>
    public int SchemaVersion { get; init; } = RunSpecJson.CurrentSchemaVersion;

    /// <summary>A short human name for the run (shown by `srlm runs` and in reports).</summary>
    public string Name { get; init; } = "run";

    /// <summary>The run seed: every random draw of the run is derived from it (Ids.Seed).</summary>
    public long Seed { get; init; } = 1;

    public ModelsSpec Models { get; init; } = new();

    public SeedDataSpec SeedData { get; init; } = new();

    /// <summary>Self-rewarding iterations T: the run produces M2..M_{T+1} from M1. 0 = SFT only (M0 -> M1).</summary>
    public int Iterations { get; init; } = 2;

    public PromptsSpec Prompts { get; init; } = new();

    public ResponsesSpec Responses { get; init; } = new();

    public JudgeSpec Judge { get; init; } = new();

    public PairRulesSpec Pairs { get; init; } = new();

    public TrainingSpec Training { get; init; } = new();

    /// <summary>Held-out evaluation of every checkpoint; null = no evaluation.</summary>
    public EvaluationSpec? Evaluation { get; init; }

    /// <summary>A matched-compute control chain C1 = M1, C2, ... trained beside the main one; null = none.</summary>
    public ControlSpec? Control { get; init; }
}

/// <summary>The control arm: for iteration t, C_t samples candidates for the prompts the main arm paired (same
/// sampling settings), two distinct candidates per prompt are paired with a seeded coin deciding which is
/// "chosen" (the judge is ignored), and C_t is trained with DPO exactly like M_t (same options, reference
/// C_t) into C_{t+1}. Every C_t is evaluated like M_t; the report's control_accuracy is C_t's accuracy. What
/// the main arm gains over the control is the judge's doing, not more training or DPO's own sharpening.</summary>
public sealed record ControlSpec
{
    /// <summary>"random_pairs" (the only kind so far).</summary>
    public string Kind { get; init; } = "random_pairs";
}

/// <summary>Where the models come from. Exactly one of Base (M0, SFT'd to M1 inside the run), Init (a new
/// small model with its own tokenizer, randomly initialised from the run seed, then SFT'd) and M1 (skips SFT). Paths are relative to the spec file; `srlm start` uploads them into the checkpoint
/// store and the stored spec names checkpoint ids instead (Resolved*).</summary>
public sealed record ModelsSpec
{
    /// <summary>Folder of the base checkpoint M0 (SFT on IFT+EFT makes M1).</summary>
    public string? Base { get; init; }

    /// <summary>Folder of an already fine-tuned M1: the run skips SFT.</summary>
    public string? M1 { get; init; }

    /// <summary>A new model trained from scratch inside the run (M0 = random weights).</summary>
    public ScratchModelSpec? Init { get; init; }

    /// <summary>Tokenizer folder or file when the checkpoint folder has none; null = the checkpoint's own.</summary>
    public string? Tokenizer { get; init; }

    /// <summary>A fixed model that writes the new prompts (the paper used a separate model): a checkpoint folder or an
    /// OpenAI-compatible endpoint (<see cref="ModelRef"/>); null = M_t.</summary>
    public ModelRef? PromptModel { get; init; }

    /// <summary>The dtype every inference of the run (prompts, candidates, judgements, evaluation) holds weights and
    /// multiplies in: "float32" (null: the default, whatever the checkpoints store), "bfloat16" or "float16". Training
    /// always keeps float32 master weights, and checkpoints are saved in the dtype of the checkpoint they came from.</summary>
    public string? Dtype { get; init; }

    /// <summary>A Jinja chat template file that replaces the checkpoint folder's own (chat_template.jinja or
    /// tokenizer_config.json's chat_template). `srlm start` writes it into the uploaded starting checkpoint (and
    /// the prompt model) as chat_template.jinja, so every later checkpoint of the run carries it.</summary>
    public string? ChatTemplate { get; init; }
}

/// <summary>A small Llama-family model made at submission: a tokenizer built from the run's seed text
/// (character level, or byte-level BPE of VocabSize tokens), a config, and weights drawn from the run seed.</summary>
public sealed record ScratchModelSpec
{
    /// <summary>"char" or "bpe".</summary>
    public string Tokenizer { get; init; } = "char";

    /// <summary>BPE vocabulary size (ignored for "char").</summary>
    public int VocabSize { get; init; } = 512;

    public int HiddenSize { get; init; } = 64;
    public int Layers { get; init; } = 2;
    public int Heads { get; init; } = 4;
    public int KvHeads { get; init; } = 4;

    /// <summary>0 = the config's default for the hidden size.</summary>
    public int IntermediateSize { get; init; }

    public int MaxPositionEmbeddings { get; init; } = 512;

    /// <summary>Prompt template name known to the model library ("plain", "chatml", ...).</summary>
    public string Template { get; init; } = "plain";
}

/// <summary>Seed data files (docs/seed-data.md): IFT lines {instruction, answer}; EFT lines
/// {instruction, answer, judgement, score}. Relative to the spec file; uploaded by `srlm start`.</summary>
public sealed record SeedDataSpec
{
    public string? Ift { get; init; }
    public string? Eft { get; init; }
}

/// <summary>Nucleus sampling settings of one generation stage. A stage's `sampling` object in the JSON takes the
/// stage's defaults (<see cref="StageDefaults"/>) for the fields it leaves out.</summary>
public sealed record SamplingSpec
{
    public double Temperature { get; init; } = 0.7;
    public double TopP { get; init; } = 0.9;
    public int MaxNewTokens { get; init; } = StageDefaults.CandidateTokens;
}

/// <summary>Token limits sized for a real instruct model (the paper's answers ran to 1,100-2,500 characters); the toy
/// samples set their own small limits. A spec whose prompts plus these limits cannot fit the model's context is
/// refused when the run is submitted, naming the field.</summary>
public static class StageDefaults
{
    public const int CandidateTokens = 1024;
    public const int JudgeTokens = 512;
    public const int PromptTokens = 256;
    public const int EvaluationTokens = 1024;
    public const double PromptTemperature = 0.6;
    public const double Temperature = 0.7;
    public const double TopP = 0.9;
}

public static class PromptSources
{
    /// <summary>Few-shot self-instruction from the seed instructions (the paper's method).</summary>
    public const string SelfInstruct = "self_instruct";

    /// <summary>Prompts drawn from a task family's prompt pool file (JSONL lines {"instruction": ...}).</summary>
    public const string Pool = "pool";

    public static readonly string[] All = [SelfInstruct, Pool];
}

/// <summary>How an iteration's new prompts are made.</summary>
public sealed record PromptsSpec
{
    /// <summary>"self_instruct" (default) or "pool".</summary>
    public string Source { get; init; } = PromptSources.SelfInstruct;

    /// <summary>For source "pool": JSONL file with one {"instruction": ...} per line; relative to the spec.</summary>
    public string? PoolFile { get; init; }

    /// <summary>Prompts each iteration aims for after filtering (the shards together generate this many, plus oversampling).</summary>
    public int PerIteration { get; init; } = 64;

    /// <summary>How many GeneratePrompts shards share the generation (competing generator replicas).</summary>
    public int Shards { get; init; } = 4;

    /// <summary>Generate this factor more raw prompts than PerIteration, since filtering removes some.</summary>
    public double Oversample { get; init; } = 1.5;

    public FewShotSpec FewShot { get; init; } = new();

    public SamplingSpec Sampling { get; init; } = new() { Temperature = StageDefaults.PromptTemperature, TopP = 0.9, MaxNewTokens = StageDefaults.PromptTokens };

    public PromptFilterSpec Filter { get; init; } = new();
}

/// <summary>The self-instruct few-shot prompt (the paper: 8 examples, 6 seed + 2 generated).</summary>
public sealed record FewShotSpec
{
    public int SeedExamples { get; init; } = 6;

    /// <summary>Examples taken from prompts generated earlier in the run (fewer are used while none exist yet).</summary>
    public int GeneratedExamples { get; init; } = 2;
}

/// <summary>Filters applied across all shards before the prompt set is final.</summary>
public sealed record PromptFilterSpec
{
    public int MinChars { get; init; } = 8;
    public int MaxChars { get; init; } = 512;

    /// <summary>A prompt whose ROUGE-L F1 against a kept prompt (or a seed instruction) is above this is a near-duplicate.</summary>
    public double MaxRougeL { get; init; } = 0.7;

    /// <summary>Drop prompts that repeat a seed instruction (exactly or near): they would leak seed data.</summary>
    public bool CompareWithSeed { get; init; } = true;

    /// <summary>Drop prompts containing any of these words (case-insensitive), e.g. "image", "picture".</summary>
    public IReadOnlyList<string> BannedWords { get; init; } = [];
}

/// <summary>Candidate answers per prompt.</summary>
public sealed record ResponsesSpec
{
    /// <summary>N candidates per prompt, sampled in one batched call sharing the prompt's prefill.</summary>
    public int N { get; init; } = 4;

    public SamplingSpec Sampling { get; init; } = new() { Temperature = 0.7, TopP = 0.9, MaxNewTokens = StageDefaults.CandidateTokens };
}

/// <summary>LLM-as-a-Judge settings.</summary>
public sealed record JudgeSpec
{
    /// <summary>K judgement samples per candidate; the score is the mean of the valid ones.</summary>
    public int Samples { get; init; } = 3;

    /// <summary>Inline template with {instruction} and {response} placeholders, or the name of a built-in one ("paper":
    /// the paper's Figure 2 rubric in our words, Srlm.Contracts.Judging.JudgePrompt); null = "paper".</summary>
    public string? Template { get; init; }

    /// <summary>Template file (relative to the spec); `srlm start` inlines it into Template.</summary>
    public string? TemplateFile { get; init; }

    public SamplingSpec Sampling { get; init; } = new() { Temperature = 0.7, TopP = 0.9, MaxNewTokens = StageDefaults.JudgeTokens };

    /// <summary>Highest valid score (the additive rubric gives 0..5).</summary>
    public int MaxScore { get; init; } = 5;

    /// <summary>Judge requests a replica may take at once and batch through the model.</summary>
    public int MaxBatch { get; init; } = 8;
}

/// <summary>How judged candidates become preference pairs.</summary>
public sealed record PairRulesSpec
{
    /// <summary>Prompts with fewer candidates carrying a valid score are dropped (`dropped_other`).</summary>
    public int MinValidScores { get; init; } = 2;

    /// <summary>Best minus worst mean score below this counts as a tie (`dropped_ties`); 0 = only exact ties
    /// (the paper's rule). With K sampled judgements a gap of a fraction of a point is mostly judge noise.</summary>
    public double MinMargin { get; init; }

    /// <summary>Longest pair (prompt + longer answer, in tokens); null = the training context length. Longer = `too_long`.</summary>
    public int? MaxTokens { get; init; }

    public LengthControlSpec LengthControl { get; init; } = new();

    public const string TruncatedDrop = "drop";
    public const string TruncatedLowest = "lowest";

    /// <summary>Candidates cut by the token limit (finish reason `length`): "drop" (default) takes them out of pairing;
    /// "lowest" lets them be the rejected side only. Either way a cut answer is never chosen.</summary>
    public string Truncated { get; init; } = TruncatedDrop;
}

/// <summary>Length control (Meta-Rewarding, 2024): among candidates within Margin of the best score the
/// shortest is chosen; among those within Margin of the worst the longest is rejected.</summary>
public sealed record LengthControlSpec
{
    public bool Enabled { get; init; }
    public double Margin { get; init; } = 0.5;
}

/// <summary>Training hyperparameters (mapped onto the training library's SFT and DPO options).</summary>
public sealed record TrainingSpec
{
    /// <summary>Longest training sequence in tokens; null = the model's max_position_embeddings.</summary>
    public int? ContextLength { get; init; }

    public SftSpec Sft { get; init; } = new();

    public DpoSpec Dpo { get; init; } = new();
}

/// <summary>Optimizer settings shared by SFT and DPO; mapped one to one onto the training library's
/// SftOptions / DpoOptions (Srlm.Training), whose defaults for small models these repeat.</summary>
public abstract record TrainerSpec
{
    public abstract double LearningRate { get; init; }

    /// <summary>Floor of the cosine decay.</summary>
    public abstract double MinLearningRate { get; init; }

    public int WarmupSteps { get; init; } = 10;
    public int Epochs { get; init; } = 1;

    /// <summary>Stop after this many optimizer steps (null = the epochs decide).</summary>
    public int? MaxSteps { get; init; }

    /// <summary>Examples (SFT) or pairs (DPO) per optimizer step (the paper: 16).</summary>
    public int BatchSize { get; init; } = 16;

    /// <summary>Examples per forward pass; must divide batch_size.</summary>
    public int MicroBatchSize { get; init; } = 4;

    public double WeightDecay { get; init; } = 0.01;
    public double MaxGradNorm { get; init; } = 1.0;
    public abstract double Dropout { get; init; }

    /// <summary>Write resumable training state every N optimizer steps.</summary>
    public int SaveStateEverySteps { get; init; } = 10;
}

/// <summary>SFT of M0 on IFT+EFT (the paper, 70B: 5.5e-6 cosine to 1.1e-6, batch 16, dropout 0.1, loss on answers).</summary>
public sealed record SftSpec : TrainerSpec
{
    public override double LearningRate { get; init; } = 1e-4;
    public override double MinLearningRate { get; init; } = 1e-5;
    public override double Dropout { get; init; } = 0.1;
}

/// <summary>DPO of M_t against the frozen reference M_t (the paper, 70B: beta 0.1, 1e-6 to 1e-7, batch 16, dropout 0.1).
/// Reference log-probs are precomputed once per dataset.</summary>
public sealed record DpoSpec : TrainerSpec
{
    public double Beta { get; init; } = 0.1;

    /// <summary>Weight of a per-token NLL term on the chosen answer added to the DPO loss (Pang et al. 2024);
    /// 0 = plain DPO (the paper).</summary>
    public double NllWeight { get; init; }

    /// <summary>Seed examples (the run's IFT + EFT, as SFT saw them) trained on beside each pair with a
    /// per-token NLL, this many per pair; 0 = none (the paper). Keeps the judging skill SFT taught from
    /// being forgotten while DPO trains only answers.</summary>
    public int ReplayPerPair { get; init; }

    /// <summary>Weight of each replayed example's per-token NLL.</summary>
    public double ReplayWeight { get; init; } = 1.0;
    public override double LearningRate { get; init; } = 5e-6;
    public override double MinLearningRate { get; init; } = 5e-7;
    public override double Dropout { get; init; } = 0.0;
}

/// <summary>Held-out evaluation of every checkpoint (hosted with the generator).</summary>
public sealed record EvaluationSpec
{
    /// <summary>Held-out JSONL {"instruction": ..., "answer"?: ...}; relative to the spec; uploaded by `srlm start`.</summary>
    public string? HeldOut { get; init; }

    /// <summary>The built-in evaluator for tasks no checker can grade: head-to-head against the parent checkpoint.</summary>
    public const string JudgeWinRate = "judge_win_rate";

    /// <summary>Name of the answer evaluator: a task family's checker the host registers (e.g. "addition"), or
    /// <see cref="JudgeWinRate"/>: each held-out instruction is answered greedily by the checkpoint and by its parent,
    /// a fixed judge scores both answers with the run's judge prompt (K samples, mean), and the checkpoint wins,
    /// loses or ties on the item.</summary>
    public string? Evaluator { get; init; }

    /// <summary>The fixed judge of <see cref="JudgeWinRate"/>: a checkpoint folder relative to the spec, uploaded by
    /// `srlm start` (stored as checkpoint:ID), or an OpenAI-compatible endpoint (<see cref="ModelRef"/>). Null = the
    /// run's M1, the same judge for every checkpoint of the run.</summary>
    public ModelRef? JudgeModel { get; init; }

    public const string BaselineParent = "parent";
    public const string BaselineM1 = "m1";

    /// <summary>Whom every checkpoint plays under <see cref="JudgeWinRate"/>: "parent" (M_{t-1}, C_{t-1}), "m1" (the run's
    /// M1, as the paper met its SFT baseline: M1 itself gets no score), or a checkpoint folder relative to the spec,
    /// uploaded by `srlm start` (stored as checkpoint:ID).</summary>
    public string Baseline { get; init; } = BaselineParent;

    public const string Pointwise = "pointwise";
    public const string Pairwise = "pairwise";

    /// <summary>How the fixed judge decides an item under <see cref="JudgeWinRate"/>: "pointwise" scores each answer with
    /// the run's judge prompt (K samples, mean) and the higher mean wins; "pairwise" shows both answers in one prompt
    /// (Srlm.Contracts.Judging.PairwiseJudging), once in each order, and counts a win only when both orders agree.</summary>
    public string JudgeMode { get; init; } = Pointwise;

    /// <summary>Held-out labelled answers for the judge's agreement (EFT-format JSONL with true scores); optional.</summary>
    public string? JudgePairs { get; init; }

    /// <summary>Evaluate at most this many held-out items (null = all).</summary>
    public int? MaxItems { get; init; }

    /// <summary>At most this many labelled answers for judge agreement (null = all).</summary>
    public int? MaxJudgeItems { get; init; }

    public int MaxNewTokens { get; init; } = StageDefaults.EvaluationTokens;
}

/// <summary>References a stored spec uses instead of paths: `srlm start` uploads every file the spec names
/// and rewrites the field to `blob:SHA256` (a file in the artifact store) or `checkpoint:ID` (a folder in
/// the checkpoint store), so no service ever reads a path on the submitter's machine.</summary>
public static class SpecRefs
{
    public const string BlobPrefix = "blob:";
    public const string CheckpointPrefix = "checkpoint:";

    public static string Blob(string sha256) => BlobPrefix + sha256;

    public static string Checkpoint(string checkpointId) => CheckpointPrefix + checkpointId;

    public static bool IsBlob(string? value) => value?.StartsWith(BlobPrefix, StringComparison.Ordinal) == true;

    public static bool IsCheckpoint(string? value) => value?.StartsWith(CheckpointPrefix, StringComparison.Ordinal) == true;

    /// <summary>The sha256 of a `blob:` reference; throws naming the field when it is a plain path.</summary>
    public static string BlobSha(string? value, string field) => IsBlob(value)
        ? value![BlobPrefix.Length..]
        : throw new RunSpecException($"spec.{field}: expected an uploaded file (blob:SHA256), got '{value}'; submit the spec with `srlm start`");

    public static string CheckpointId(string? value, string field) => IsCheckpoint(value)
        ? value![CheckpointPrefix.Length..]
        : throw new RunSpecException($"spec.{field}: expected an uploaded checkpoint (checkpoint:ID), got '{value}'; submit the spec with `srlm start`");
}
