using System.Security.Cryptography;

namespace Srlm.Contracts;

/// <summary>Deterministic ids and seeds derived from run, iteration and indexes, so handling a
/// message twice writes the same records and draws the same random numbers.</summary>
public static class Ids
{
    public static string Prompt(string runId, int iteration, int shard, int index) => $"{runId}/i{iteration}/p{shard}-{index}";
    public static string Candidate(string promptId, int index) => $"{promptId}/c{index}";
    public static string Judgement(string candidateId, int sample) => $"{candidateId}/j{sample}";
    public static string Pair(string promptId) => $"{promptId}/pair";
    public static string Dataset(string runId, int iteration) => $"{runId}/i{iteration}/pairs";
    public static string Checkpoint(string runId, int producedByIteration) => $"{runId}/m{producedByIteration + 1}";

    /// <summary>C_{t+1} of the control arm, trained from C_t on iteration t's prompts (C1 is M1 itself).</summary>
    public static string ControlCheckpoint(string runId, int producedByIteration) => $"{runId}/c{producedByIteration + 1}";
    public static string Job(string runId, int iteration, string kind) => $"{runId}/i{iteration}/{kind}";

    // The services' own records (iteration, shards, the final prompt set, drops, evaluations, starting
    // checkpoint, SFT dataset), so every service library and the CLI agree on them.
    public static string Iteration(string runId, int iteration) => $"{runId}/i{iteration}";
    public static string Shard(string runId, int iteration, int shard) => $"{runId}/i{iteration}/shard{shard}";
    public static string PromptSet(string runId, int iteration) => $"{runId}/i{iteration}/prompt-set";
    public static string Drop(string promptId) => $"{promptId}/drop";
    public static string Evaluation(string checkpointId, string evaluator) => $"{checkpointId}/eval/{evaluator}";

    /// <summary>The stored request and answer of a call to an external endpoint; <paramref name="callId"/> is the calling
    /// record's id and sample index, so a redelivered message reads the stored answer instead of asking again.</summary>
    public static string ExternalCall(string callId) => $"{callId}/external";

    /// <summary>The uploaded starting checkpoint: M0 (`{run}/m0`) or M1 (`{run}/m1`, the same id SFT would write).</summary>
    public static string StartCheckpoint(string runId, bool isM1) => isM1 ? Checkpoint(runId, 0) : $"{runId}/m0";

    /// <summary>The SFT dataset (the uploaded seed files) of a run.</summary>
    public static string SftDataset(string runId) => $"{runId}/i0/sft";

    /// <summary>An artifact id without its run prefix: the key its random draws are seeded from, so the same
    /// spec (same seed) draws the same numbers in any run (a resumed run, a replay into a new run id).</summary>
    public static string SeedKey(string runId, string id) => id.StartsWith(runId + "/", StringComparison.Ordinal) ? id[(runId.Length + 1)..] : id;

    /// <summary>A 64-bit seed from the run seed and any path of ids/indexes (stable across processes and versions).</summary>
    public static long Seed(long runSeed, params object[] parts)
    {
        var text = runSeed.ToString(System.Globalization.CultureInfo.InvariantCulture) + "|" +
                   string.Join("|", parts.Select(p => Convert.ToString(p, System.Globalization.CultureInfo.InvariantCulture)));
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(text));
        return BitConverter.ToInt64(hash, 0) & long.MaxValue;
    }
}
