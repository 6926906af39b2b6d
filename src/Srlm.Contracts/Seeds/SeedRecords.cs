namespace Srlm.Contracts.Seeds;

/// <summary>What a seed file is read as: the spec field it fills, and `srlm seed check --kind`.</summary>
public enum SeedKind
{
    /// <summary>seed_data.ift: an instruction (or a conversation) and a good answer.</summary>
    Ift,
    /// <summary>seed_data.eft: an instruction, an answer, the judge's justification and its score.</summary>
    Eft,
    /// <summary>prompts.pool_file: instructions only.</summary>
    Prompts,
    /// <summary>evaluation.held_out: instructions only (reference answers are ignored; a checker grades).</summary>
    HeldOut,
    /// <summary>evaluation.judge_pairs: an instruction, an answer and its true score.</summary>
    JudgePairs,
}

/// <summary>One message of a conversation (the OpenAI / Hugging Face chat format): role system, user or assistant.</summary>
public sealed record ChatTurn(string Role, string Content)
{
    public const string System = "system", User = "user", Assistant = "assistant";
}

/// <summary>An IFT record: the conversation the answer replies to (ending in a user message) and the answer.
/// <see cref="Format"/> names the line's shape ("instruction/answer", "alpaca", "messages"); <see cref="Source"/> is
/// "file:line".</summary>
public sealed record IftRecord(IReadOnlyList<ChatTurn> Context, string Answer, string Format, string Source)
{
    /// <summary>The request the answer answers: the last user message (for self-instruct examples and leakage checks).</summary>
    public string Instruction => Context[^1].Content;

    /// <summary>The prompt text training puts into the checkpoint's prompt template (<see cref="SeedPrompt.Render"/>).</summary>
    public string Prompt => SeedPrompt.Render(Context);
}

/// <summary>An EFT record. <see cref="Completion"/> is the judgement as the model learns to write it (the EFT score
/// rule in <see cref="SeedReader"/>: the judgement, with "Score: k" appended only when it has no `Score:` label).</summary>
public sealed record EftRecord(string Instruction, string Answer, string Judgement, int Score, string Completion, string Source);

/// <summary>A prompt of a prompt pool or a held-out file: the user message a model is asked.</summary>
public sealed record PromptLine(string Instruction, string Format, string Source);

/// <summary>A held-out labelled answer for the judge's agreement metrics: the instruction, an answer and its true score.</summary>
public sealed record LabelledAnswer(string Instruction, string Answer, double Score, string Source);

/// <summary>The outcome of reading one file: the records of its valid lines, every problem as "file:line: problem"
/// (a file with a problem is refused whole by <see cref="OrThrow"/>), the number of valid lines of each format found.</summary>
public sealed record SeedFile<T>(string Name, IReadOnlyList<T> Records, IReadOnlyList<string> Problems, IReadOnlyDictionary<string, int> Formats)
{
    /// <summary>The records, or a <see cref="SeedDataException"/> listing every problem ("NAME: no records" for a file
    /// without any).</summary>
    public IReadOnlyList<T> OrThrow()
    {
        if (Problems.Count > 0) throw new SeedDataException(Problems);
        if (Records.Count == 0) throw new SeedDataException([$"{Name}: no records"]);
        return Records;
    }
}
