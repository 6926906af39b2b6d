using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Srlm.Contracts;
using Srlm.Generator;
using Srlm.ServiceKit;
using Srlm.Storage;

namespace Srlm.Tests.Messaging;

/// <summary>evaluation.evaluator = judge_win_rate: the evaluation consumer plays a checkpoint against its parent on
/// the held-out instructions and lets the fixed judge score both answers. Scripted models make every outcome known.</summary>
public sealed class WinRateEvaluatorTests
{
    /// <summary>Held-out instruction -> (answer of ev/m2, answer of its parent ev/m1).</summary>
    private static readonly (string Q, string Child, string Parent)[] Items =
    [
        ("q0", "good", "bad"),   // win
        ("q1", "bad", "good"),   // loss
        ("q2", "same", "same"),  // identical: a tie without judging
        ("q3", "good", "mute"),  // the judge gives the parent's answer no valid score: unjudged
        ("q4", "fine", "okay"),  // both 3: a tie
        ("q5", "good", "okay"),  // win
    ];

    /// <summary>A checkpoint that answers a held-out instruction from its script, and otherwise acts as the judge:
    /// "Score: 5" for an answer saying good, 1 for bad, no score for mute, 3 otherwise.</summary>
    private sealed class ScriptedModel(string id, IReadOnlyDictionary<string, string> answers, ConcurrentBag<(string Model, GenerationRequest Request)> log) : ITextModel
    {
        public string CheckpointId => id;
        public int ContextLength => 256;
        public int CountPromptTokens(string prompt) => prompt.Length;
        public int CountCompletionTokens(string completion) => completion.Length;

        public Task<IReadOnlyList<GenerationResult>> GenerateAsync(IReadOnlyList<GenerationRequest> requests, CancellationToken ct)
        {
            var results = new List<GenerationResult>();
            foreach (var r in requests)
            {
                log.Add((id, r));
                var text = answers.TryGetValue(r.Prompt, out var a) ? a
                    : r.Prompt.Contains("Answer: good", StringComparison.Ordinal) ? "Fine work. Score: 5"
                    : r.Prompt.Contains("Answer: bad", StringComparison.Ordinal) ? "Wrong. Score: 1"
                    : r.Prompt.Contains("Answer: mute", StringComparison.Ordinal) ? "I cannot tell."
                    : "Partly. Score: 3";
                results.Add(new GenerationResult(text, 4, 1));
            }
            return Task.FromResult<IReadOnlyList<GenerationResult>>(results);
        }
    }

    private sealed class ScriptedModels(ConcurrentBag<(string, GenerationRequest)> log) : IModelProvider
    {
        public Task<ITextModel> GetAsync(string checkpointId, CancellationToken ct) => Task.FromResult<ITextModel>(checkpointId switch
        {
            "ev/m2" => new ScriptedModel(checkpointId, Items.ToDictionary(i => i.Q, i => i.Child), log),
            "ev/m1" => new ScriptedModel(checkpointId, Items.ToDictionary(i => i.Q, i => i.Parent), log),
            "ev/eval-judge" => new ScriptedModel(checkpointId, new Dictionary<string, string>(), log),
            _ => throw new InvalidOperationException($"no model {checkpointId}"),
        });
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_checkpoint_plays_its_parent_and_the_fixed_judge_decides_each_held_out_item(bool separateJudge)
    {
        var log = new ConcurrentBag<(string Model, GenerationRequest Request)>();
        await using var host = await TestBusHost.StartAsync("inmemory", x => x.AddGeneratorConsumers(),
            s => s.AddSingleton<IModelProvider>(new ScriptedModels(log)).AddGenerator());
        var store = host.Store;
        var heldOut = await store.PutBlobAsync(Encoding.UTF8.GetBytes(string.Concat(Items.Select(i => $"{{\"instruction\":\"{i.Q}\"}}\n"))), "held_out.jsonl");
        var judgeModel = separateJudge ? ",\"judge_model\":\"checkpoint:ev/eval-judge\"" : "";
        await store.CreateRunAsync("ev", $$$"""
            {"schema_version":1,"name":"ev","seed":3,"iterations":1,"models":{"m1":"checkpoint:ev/m1"},"seed_data":{"ift":"ift.jsonl"},
             "judge":{"samples":2,"template":"Judge {instruction} Answer: {response}"},
             "evaluation":{"held_out":"blob:{{{heldOut.Sha256}}}","evaluator":"judge_win_rate"{{{judgeModel}}}}}
            """, 1);
        await store.PutAsync(new CheckpointRecord { Id = "ev/m1", RunId = "ev", Iteration = 1, Location = "", Files = [] });
        await store.PutAsync(new CheckpointRecord { Id = "ev/m2", RunId = "ev", Iteration = 2, Location = "", Files = [], Origin = "dpo", ParentCheckpointId = "ev/m1" });

        await host.Bus.Publish(new CheckpointReady { RunId = "ev", Iteration = 1, CheckpointId = "ev/m2", ParentCheckpointId = "ev/m1" });
        var id = Ids.Evaluation("ev/m2", "judge_win_rate");
        await TestBusHost.WaitUntilAsync(async () => await store.GetAsync<EvaluationRecord>(id) is not null, TimeSpan.FromSeconds(30), "the evaluation stored");

        var m = (await store.GetAsync<EvaluationRecord>(id))!.Metrics;
        // 2 wins, 1 loss, 2 ties (one of identical answers), 1 unjudged: (2 + 2/2) / 5.
        Assert.Equal((2.0, 1.0, 2.0, 1.0, 1.0, 6.0), (m["wins"], m["losses"], m["ties"], m["identical_answers"], m["win_rate_unjudged"], m["eval_items"]));
        Assert.Equal(0.6, m["win_rate"], 12);
        Assert.False(m.ContainsKey("accuracy"), "a win-rate evaluation invents no accuracy");
        // Scored items (q0, q1, q4, q5): own 5, 1, 3, 5 against the parent's 1, 5, 3, 3.
        Assert.Equal(3.5, m["mean_judge_score"], 12);
        Assert.Equal(3.0, m["parent_mean_judge_score"], 12);
        Assert.Equal(18.0 / 20, m["win_rate_judge_valid_fraction"], 12); // the 2 samples of "mute" parse to nothing

        // Both players answer greedily; only the fixed judge judges, 2 samples per answer, identical answers never.
        var judge = separateJudge ? "ev/eval-judge" : "ev/m1";
        var judged = log.Where(e => e.Request.Prompt.StartsWith("Judge ", StringComparison.Ordinal)).ToList();
        Assert.All(judged, e => Assert.Equal(judge, e.Model));
        Assert.Equal(5 * 2 * 2, judged.Count);
        Assert.DoesNotContain(judged, e => e.Request.Prompt.Contains("same", StringComparison.Ordinal));
        var answered = log.Where(e => !e.Request.Prompt.StartsWith("Judge ", StringComparison.Ordinal)).ToList();
        Assert.Equal([("ev/m1", 6), ("ev/m2", 6)], answered.GroupBy(e => e.Model).Select(g => (g.Key, g.Count())).Order());
        Assert.All(answered, e => Assert.Equal(0, e.Request.Temperature));

        using var details = JsonDocument.Parse((await store.GetAsync<EvaluationRecord>(id))!.Details!);
        var outcomes = details.RootElement.EnumerateArray().ToDictionary(e => e.GetProperty("instruction").GetString()!, e => e.GetProperty("outcome").GetString());
        Assert.Equal(new Dictionary<string, string?> { ["q0"] = "win", ["q1"] = "loss", ["q3"] = "unjudged", ["q4"] = "tie", ["q5"] = "win" }, outcomes);
    }

    [Fact]
    public async Task A_checkpoint_without_a_parent_gets_no_win_rate_rather_than_an_invented_one()
    {
        var log = new ConcurrentBag<(string Model, GenerationRequest Request)>();
        await using var host = await TestBusHost.StartAsync("inmemory", x => x.AddGeneratorConsumers(),
            s => s.AddSingleton<IModelProvider>(new ScriptedModels(log)).AddGenerator());
        var store = host.Store;
        var heldOut = await store.PutBlobAsync("{\"instruction\":\"q0\"}\n"u8.ToArray(), "held_out.jsonl");
        await store.CreateRunAsync("ev", $$$"""
            {"schema_version":1,"name":"ev","seed":3,"iterations":1,"models":{"m1":"checkpoint:ev/m1"},"seed_data":{"ift":"ift.jsonl"},
             "evaluation":{"held_out":"blob:{{{heldOut.Sha256}}}","evaluator":"judge_win_rate"}}
            """, 1);
        await store.PutAsync(new CheckpointRecord { Id = "ev/m1", RunId = "ev", Iteration = 1, Location = "", Files = [] });
        await host.Bus.Publish(new CheckpointReady { RunId = "ev", Iteration = 0, CheckpointId = "ev/m1" });
        var id = Ids.Evaluation("ev/m1", "judge_win_rate");
        await TestBusHost.WaitUntilAsync(async () => await store.GetAsync<EvaluationRecord>(id) is not null, TimeSpan.FromSeconds(30), "the evaluation stored");
        var m = (await store.GetAsync<EvaluationRecord>(id))!.Metrics;
        Assert.Equal(1.0, m["eval_items"]);
        Assert.False(m.ContainsKey("win_rate"));
        Assert.DoesNotContain(log, e => e.Model != "ev/m1");
    }
}
