namespace Srlm.Contracts.Seeds;

/// <summary>One supervised example as text: the prompt (before the checkpoint's prompt template) and the completion the
/// model learns to write; <see cref="Source"/> is the record's "file:line". <see cref="Context"/> is the conversation an
/// IFT answer replies to (null for an EFT example): a checkpoint with a chat template renders it turn by turn instead of
/// <see cref="Prompt"/>, which is the same conversation flattened for our "{instruction}" layouts.</summary>
public sealed record SeedExample(string Prompt, string Completion, string Source, IReadOnlyList<ChatTurn>? Context = null);

/// <summary>The SFT set of a run, built the same way by `srlm train sft` and the trainer service (and a DPO job's
/// replay set): every IFT record (prompt = <see cref="SeedPrompt.Render"/> of its context, the context itself for a chat
/// template, completion = the answer),
/// then every EFT record (prompt = the judge template filled with its instruction and answer, completion = the
/// judgement by the EFT score rule), each in file order.</summary>
public static class SeedExamples
{
    /// <param name="judgeTemplate">The judge prompt with {instruction} and {response}; null = the default rubric.</param>
    public static IReadOnlyList<SeedExample> Sft(IReadOnlyList<IftRecord> ift, IReadOnlyList<EftRecord>? eft, string? judgeTemplate)
    {
        ArgumentNullException.ThrowIfNull(ift);
        var examples = ift.Select(r => new SeedExample(r.Prompt, r.Answer, r.Source, r.Context)).ToList();
        if (eft is not null)
            examples.AddRange(eft.Select(r => new SeedExample(JudgePrompt.Format(judgeTemplate, r.Instruction, r.Answer), r.Completion, r.Source)));
        return examples;
    }
}
