namespace Srlm.Tests.Messaging;

/// <summary>A small finished iteration written straight into a real SQLite store: M1 (uploaded, trained on seed
/// blobs), one iteration of 3 prompts x 2 candidates x 3 judge samples, 2 pairs and 1 tie, and M2 trained on them.</summary>
public static class OpsFixtures
{
    public const string Spec = """{"name":"ops","models":{"m1":"m1"},"seed_data":{"ift":"ift.jsonl"},"responses":{"n":2},"judge":{"samples":3}}""";

    public static async Task<StoreSet> OpenAsync(string folder) =>
        await StoreFactory.FromEnvironmentAsync(new System.Collections.Hashtable { ["SRLM_STORE"] = "sqlite://" + Path.Combine(folder, "srlm.db") });

    public static string CheckpointFolder(string root, string content)
    {
        var dir = Directory.CreateDirectory(Path.Combine(root, "ckpt-" + Guid.NewGuid().ToString("N")[..6])).FullName;
        File.WriteAllText(Path.Combine(dir, "config.json"), "{\"model_type\":\"llama\"}");
        File.WriteAllText(Path.Combine(dir, "model.safetensors"), content);
        return dir;
    }

    public static async Task WriteFinishedIterationAsync(StoreSet stores, string runId, string folder)
    {
        var s = stores.Artifacts;
        await s.CreateRunAsync(runId, Spec, 1);
        var seed = await s.PutBlobAsync("{\"instruction\":\"1+1\",\"answer\":\"2\"}\n"u8.ToArray(), "ift.jsonl");
        await s.PutAsync(new DatasetRecord { Id = $"{runId}/i0/sft", RunId = runId, Iteration = 0, Purpose = "sft", BlobSha256s = [seed.Sha256] });
        await stores.PutCheckpointAsync(new CheckpointRecord
        {
            Id = Ids.Checkpoint(runId, 0), RunId = runId, Iteration = 1, Location = "", Files = [], Origin = "sft", DatasetId = $"{runId}/i0/sft",
        }, CheckpointFolder(folder, "weights of m1"));
        await s.PutAsync(new IterationRecord { Id = $"{runId}/i1", RunId = runId, Iteration = 1, StartCheckpointId = Ids.Checkpoint(runId, 0) });
        var promptIds = new List<string>();
        var pairIds = new List<string>();
        for (int p = 0; p < 3; p++)
        {
            var promptId = Ids.Prompt(runId, 1, 0, p);
            promptIds.Add(promptId);
            await s.PutAsync(new PromptRecord { Id = promptId, RunId = runId, Iteration = 1, Shard = 0, Index = p, Text = $"What is {p} + {p}?" });
            for (int c = 0; c < 2; c++)
            {
                var candidateId = Ids.Candidate(promptId, c);
                await s.PutAsync(new CandidateRecord { Id = candidateId, RunId = runId, Iteration = 1, PromptId = promptId, Index = c, Text = $"answer {p}.{c}", CheckpointId = Ids.Checkpoint(runId, 0) });
                for (int k = 0; k < 3; k++)
                {
                    double? score = p == 2 ? 3 : (k == 2 && c == 0 ? null : c == 0 ? 5 : 1); // prompt 2 ties; one unparseable sample
                    await s.PutAsync(new JudgementRecord
                    {
                        Id = Ids.Judgement(candidateId, k), RunId = runId, Iteration = 1, PromptId = promptId, CandidateId = candidateId, SampleIndex = k,
                        RawText = score is null ? "no score here" : $"Score: {score}", Score = score, Seed = Ids.Seed(1, candidateId, k), CheckpointId = Ids.Checkpoint(runId, 0),
                    });
                }
            }
            if (p < 2)
            {
                var pair = new PairRecord
                {
                    Id = Ids.Pair(promptId), RunId = runId, Iteration = 1, PromptId = promptId, ChosenCandidateId = Ids.Candidate(promptId, 0),
                    RejectedCandidateId = Ids.Candidate(promptId, 1), ChosenScore = 5, RejectedScore = 1,
                };
                await s.PutAsync(pair);
                pairIds.Add(pair.Id);
            }
            else await s.PutAsync(new PairDropRecord { Id = Ids.Pair(promptId) + "-drop", RunId = runId, Iteration = 1, PromptId = promptId, Reason = DropReason.DroppedTies });
        }
        await s.PutAsync(new PromptSetFinalRecord { Id = $"{runId}/i1/prompt-set", RunId = runId, Iteration = 1, PromptIds = promptIds });
        await s.PutAsync(new DatasetRecord { Id = Ids.Dataset(runId, 1), RunId = runId, Iteration = 1, Purpose = "dpo", PairIds = pairIds });
        await stores.PutCheckpointAsync(new CheckpointRecord
        {
            Id = Ids.Checkpoint(runId, 1), RunId = runId, Iteration = 2, Location = "", Files = [], Origin = "dpo",
            ParentCheckpointId = Ids.Checkpoint(runId, 0), DatasetId = Ids.Dataset(runId, 1),
        }, CheckpointFolder(folder, "weights of m2"));
    }
}
