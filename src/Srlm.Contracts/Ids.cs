using System.Security.Cryptography;
using System.Text;

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

    /// <summary>A 64-bit seed from the run seed and any path of ids/indexes (stable across processes and versions).</summary>
    public static long Seed(long runSeed, params object[] parts)
    {
        var text = runSeed.ToString(System.Globalization.CultureInfo.InvariantCulture) + "|" +
                   string.Join("|", parts.Select(p => Convert.ToString(p, System.Globalization.CultureInfo.InvariantCulture)));
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(text));
        return BitConverter.ToInt64(hash, 0) & long.MaxValue;
    }
}
