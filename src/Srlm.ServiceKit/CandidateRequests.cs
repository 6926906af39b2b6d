namespace Srlm.ServiceKit;

/// <summary>The seeded requests that sample a prompt's candidates: the generator's candidates and the trainer's
/// control arm draw them the same way, each arm from its own random stream.</summary>
public static class CandidateRequests
{
    /// <summary>Candidate <paramref name="index"/> of a prompt, sampled with the spec's response settings and a seed
    /// from (run seed, <paramref name="stream"/>, candidate id): "candidate" for the main arm, "control-candidate"
    /// for the control arm, so the two arms never share a random stream.</summary>
    public static GenerationRequest Of(RunSpec spec, string runId, string promptId, string promptText, int index, string stream = "candidate")
    {
        var s = spec.Responses.Sampling;
        return new(promptText, Ids.Seed(spec.Seed, stream, Ids.SeedKey(runId, Ids.Candidate(promptId, index))), s.Temperature, s.TopP, s.MaxNewTokens);
    }
}
