namespace Srlm.ServiceKit;

/// <summary>One judge sample: the raw text the model wrote, its parse, the seed that produced it, and why its
/// generation ended (a judgement cut by `length` without a score is unparseable, like any other).</summary>
public sealed record JudgeSample(int SampleIndex, long Seed, string RawText, ParsedScore Parsed, string? FinishReason = null);

/// <summary>The scoring function: K judge samples of a (prompt, response) with M_t, each seeded from
/// (run seed, judgement id). `srlm audit` calls <see cref="SampleAsync"/> with a stored judgement's
/// checkpoint, prompt, candidate and sample index and must get the same text and score.</summary>
public static class Judging
{
    /// <summary>The seed of judge sample k of a candidate: from the run seed and the judgement id without its run prefix.</summary>
    public static long SeedOf(RunSpec spec, string runId, string candidateId, int sample) =>
        Ids.Seed(spec.Seed, "judge", Ids.SeedKey(runId, Ids.Judgement(candidateId, sample)));

    public static GenerationRequest Request(RunSpec spec, string runId, string instruction, string response, string candidateId, int sample) =>
        new(JudgePrompt.Format(spec.Judge.Template, instruction, response), SeedOf(spec, runId, candidateId, sample),
            spec.Judge.Sampling.Temperature, spec.Judge.Sampling.TopP, spec.Judge.Sampling.MaxNewTokens)
        { CallId = Ids.Judgement(candidateId, sample) };

    /// <summary>Generates and parses the given samples of one candidate in one batched call.</summary>
    public static async Task<IReadOnlyList<JudgeSample>> SampleAsync(ITextModel model, RunSpec spec, string runId, string instruction, string response,
        string candidateId, IReadOnlyList<int> samples, CancellationToken ct)
    {
        var requests = samples.Select(k => Request(spec, runId, instruction, response, candidateId, k)).ToList();
        var results = await model.GenerateAsync(requests, ct);
        return samples.Select((k, i) => new JudgeSample(k, requests[i].Seed, results[i].Text, ScoreParser.Parse(results[i].Text, spec.Judge.MaxScore), results[i].FinishReason)).ToList();
    }
}
