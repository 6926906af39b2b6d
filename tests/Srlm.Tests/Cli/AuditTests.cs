using Srlm.ServiceKit;
using Srlm.Judge;

namespace Srlm.Tests.Cli;

/// <summary>`srlm audit` against judgements written by the real judge consumer (in-memory bus, SQLite, a tiny
/// scratch checkpoint): re-running them gives 0 mismatches; a tampered stored score is found.</summary>
[Collection("console")]
public sealed class AuditTests
{
    private const string Spec = """
        {"schema_version":1,"name":"audit","seed":3,"iterations":1,
         "models":{"init":{"hidden_size":32,"layers":1,"heads":2,"kv_heads":2,"max_position_embeddings":256}},
         "seed_data":{"ift":"ift.jsonl"},
         "judge":{"samples":2,"template":"Judge {instruction} Answer: {response}","sampling":{"temperature":0.9,"top_p":0.95,"max_new_tokens":12}}}
        """;

    [Fact]
    public async Task Audit_finds_no_mismatch_on_stored_judgements_and_finds_a_tampered_score()
    {
        var calls = new Calls();
        await using var host = await TestBusHost.StartAsync("inmemory", x => x.AddJudgeConsumers(), s => s.AddJudge().AddSingleton(calls));
        var folder = host.Folder;
        File.WriteAllText(Path.Combine(folder, "ift.jsonl"), "{\"instruction\":\"What is 2+3?\",\"answer\":\"5\"}\n{\"instruction\":\"Score: 4\",\"answer\":\"ok\"}\n");
        var spec = RunSpecJson.Parse(Spec);
        var m1 = ScratchModel.Create(spec, p => Path.Combine(folder, p), Directory.CreateDirectory(Path.Combine(folder, "m1")).FullName);
        var stores = host.Host.Services.GetRequiredService<StoreSet>();
        await stores.Artifacts.CreateRunAsync("audit", Spec, 1);
        await stores.PutCheckpointAsync(new CheckpointRecord { Id = "audit/m1", RunId = "audit", Iteration = 1, Location = "", Files = [] }, m1);

        var candidates = new List<string>();
        for (int p = 0; p < 2; p++)
        {
            var promptId = Ids.Prompt("audit", 1, 0, p);
            await stores.Artifacts.PutAsync(new PromptRecord { Id = promptId, RunId = "audit", Iteration = 1, Shard = 0, Index = p, Text = $"What is {p}+3?" });
            for (int c = 0; c < 2; c++)
            {
                var candidateId = Ids.Candidate(promptId, c);
                candidates.Add(candidateId);
                await stores.Artifacts.PutAsync(new CandidateRecord { Id = candidateId, RunId = "audit", Iteration = 1, PromptId = promptId, Index = c, Text = $"{p + 3 + c}", CheckpointId = "audit/m1" });
                await host.Bus.Publish(new JudgeCandidate { RunId = "audit", Iteration = 1, CheckpointId = "audit/m1", PromptId = promptId, CandidateId = candidateId });
            }
        }
        await TestBusHost.WaitUntilAsync(async () => await stores.Artifacts.CountAsync<JudgementRecord>(ArtifactQuery.OfRun("audit")) == 8,
            TimeSpan.FromSeconds(120), "8 judgements stored by the judge consumer");

        var specs = host.Host.Services.GetRequiredService<RunSpecCache>();
        var models = host.Host.Services.GetRequiredService<IModelProvider>();
        var log = new StringWriter();
        var clean = await JudgementAudit.RunAsync(stores.Artifacts, specs, models, "audit", 8, null, 0, log, default);
        Assert.Equal(new JudgementAudit.Result(8, 0), clean);

        // Tamper: one stored score changes (its text stays), as an operator repair gone wrong would.
        var victim = (await stores.Artifacts.ListAsync<JudgementRecord>(ArtifactQuery.OfRun("audit")))[3];
        await stores.Artifacts.OverwriteAsync(victim with { Score = victim.Score is null ? 4.5 : victim.Score + 1 });
        var tampered = await JudgementAudit.RunAsync(stores.Artifacts, specs, models, "audit", 8, null, 0, log, default);
        Assert.Equal(new JudgementAudit.Result(8, 1), tampered);
        Assert.Contains($"mismatch {victim.Id}", log.ToString());

        // The verb itself: same store, its own process-level wiring; exit 1 and the summary line.
        await host.Host.StopAsync();
        var (code, stdout, _) = await CliConsole.RunAsync("audit", "audit", "--sample", "8", "--store", "sqlite://" + Path.Combine(folder, "srlm.db"));
        Assert.Equal(1, code);
        Assert.Contains("8 checked, 1 mismatches", stdout);
    }
}
