namespace Srlm.Judge;

/// <summary>Deterministic ids of the services' own records (beside Srlm.Contracts.Ids), in one place so
/// every service library and the CLI agree on them.</summary>
public static class RecordIds
{
    public static string Iteration(string runId, int iteration) => $"{runId}/i{iteration}";
    public static string Shard(string runId, int iteration, int shard) => $"{runId}/i{iteration}/shard{shard}";
    public static string PromptSet(string runId, int iteration) => $"{runId}/i{iteration}/prompt-set";
    public static string Drop(string promptId) => $"{promptId}/drop";
    public static string Evaluation(string checkpointId, string evaluator) => $"{checkpointId}/eval/{evaluator}";

    /// <summary>The uploaded starting checkpoint: M0 (`{run}/m0`) or M1 (`{run}/m1`, the same id SFT would write).</summary>
    public static string StartCheckpoint(string runId, bool isM1) => isM1 ? Srlm.Contracts.Ids.Checkpoint(runId, 0) : $"{runId}/m0";

    /// <summary>An artifact id without its run prefix: the key its random draws are seeded from, so the same
    /// spec (same seed) draws the same numbers in any run (a resumed run, a replay into a new run id).</summary>
    public static string SeedKey(string runId, string id) => id.StartsWith(runId + "/", StringComparison.Ordinal) ? id[(runId.Length + 1)..] : id;

    /// <summary>The SFT dataset (the uploaded seed files) of a run.</summary>
    public static string SftDataset(string runId) => $"{runId}/i0/sft";
}
