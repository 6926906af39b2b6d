using GenerationRequest = Srlm.ServiceKit.GenerationRequest;
using Srlm.ServiceKit;

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
                    : r.Prompt.Contains("<reply_a>", StringComparison.Ordinal) ? PairwiseVerdict(Between(r.Prompt, "<reply_a>", "</reply_a>"), Between(r.Prompt, "<reply_b>", "</reply_b>"))
                    : r.Prompt.Contains("Answer: good", StringComparison.Ordinal) ? "Fine work. Score: 5"
                    : r.Prompt.Contains("Answer: bad", StringComparison.Ordinal) ? "Wrong. Score: 1"
                    : r.Prompt.Contains("Answer: mute", StringComparison.Ordinal) ? "I cannot tell."
                    : "Partly. Score: 3";
                results.Add(new GenerationResult(text, 4, 1));
            }
            return Task.FromResult<IReadOnlyList<GenerationResult>>(results);
        }
    }

    private static string Between(string text, string open, string close)
    {
        int a = text.IndexOf(open, StringComparison.Ordinal) + open.Length;
        return text[a..text.IndexOf(close, a, StringComparison.Ordinal)];
    }

    /// <summary>The scripted pairwise judge: good beats okay/fine beats bad (equal: tie); "first" makes it pick
    /// whichever reply comes first (a position bias); "mute" makes it write no verdict.</summary>
    private static string PairwiseVerdict(string a, string b)
    {
        if (a == "mute" || b == "mute") return "Both have merits.";
        if (a == "first" || b == "first") return "The first reads better.\n**Winner:** A";
        static int Rank(string x) => x switch { "good" => 2, "bad" => 0, _ => 1 };
        return Rank(a) > Rank(b) ? "A is better. Winner: A" : Rank(a) < Rank(b) ? "B is better (not A).\nWinner: b" : "Equal. Winner: tie";
    }

    private sealed class ScriptedModels(ConcurrentBag<(string, GenerationRequest)> log, (string Q, string Child, string Parent)[]? items = null,
        Dictionary<string, string>? m3 = null) : IModelProvider
    {
        private readonly (string Q, string Child, string Parent)[] _items = items ?? Items;

        public Task<ITextModel> GetAsync(string checkpointId, CancellationToken ct) => Task.FromResult<ITextModel>(checkpointId switch
        {
            "ev/m3" => new ScriptedModel(checkpointId, m3!, log),
            "ev/m2" => new ScriptedModel(checkpointId, _items.ToDictionary(i => i.Q, i => i.Child), log),
            "ev/m1" => new ScriptedModel(checkpointId, _items.ToDictionary(i => i.Q, i => i.Parent), log),
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

    /// <summary>Pairwise items: the scripted judge prefers good over okay/fine over bad, is position-biased on "first"
    /// and silent on "mute".</summary>
    private static readonly (string Q, string Child, string Parent)[] PairwiseItems =
    [
        ("q0", "good", "bad"),    // both orders pick the checkpoint: win
        ("q1", "bad", "good"),    // both orders pick the parent: loss
        ("q2", "same", "same"),   // identical: a tie without judging
        ("q3", "good", "mute"),   // no verdict: unjudged
        ("q4", "fine", "okay"),   // both orders say tie: tie
        ("q5", "first", "okay"),  // the judge picks whatever comes first: the orders disagree, a tie
        ("q6", "okay", "bad"),    // win
    ];

    [Fact]
    public async Task Pairwise_judging_counts_a_win_only_when_both_orders_agree_and_keeps_both_verdicts()
    {
        var log = new ConcurrentBag<(string Model, GenerationRequest Request)>();
        await using var host = await TestBusHost.StartAsync("inmemory", x => x.AddGeneratorConsumers(),
            s => s.AddSingleton<IModelProvider>(new ScriptedModels(log, PairwiseItems)).AddGenerator());
        var store = host.Store;
        var heldOut = await store.PutBlobAsync(Encoding.UTF8.GetBytes(string.Concat(PairwiseItems.Select(i => $"{{\"instruction\":\"{i.Q}\"}}\n"))), "held_out.jsonl");
        await store.CreateRunAsync("ev", $$$"""
            {"schema_version":1,"name":"ev","seed":3,"iterations":1,"models":{"m1":"checkpoint:ev/m1"},"seed_data":{"ift":"ift.jsonl"},
             "judge":{"samples":3},
             "evaluation":{"held_out":"blob:{{{heldOut.Sha256}}}","evaluator":"judge_win_rate","judge_mode":"pairwise","judge_model":"checkpoint:ev/eval-judge"}}
            """, 1);
        await store.PutAsync(new CheckpointRecord { Id = "ev/m1", RunId = "ev", Iteration = 1, Location = "", Files = [] });
        await store.PutAsync(new CheckpointRecord { Id = "ev/m2", RunId = "ev", Iteration = 2, Location = "", Files = [], Origin = "dpo", ParentCheckpointId = "ev/m1" });

        await host.Bus.Publish(new CheckpointReady { RunId = "ev", Iteration = 1, CheckpointId = "ev/m2", ParentCheckpointId = "ev/m1" });
        var id = Ids.Evaluation("ev/m2", "judge_win_rate");
        await TestBusHost.WaitUntilAsync(async () => await store.GetAsync<EvaluationRecord>(id) is not null, TimeSpan.FromSeconds(30), "the evaluation stored");
        var record = (await store.GetAsync<EvaluationRecord>(id))!;
        var m = record.Metrics;
        // wins q0, q6; loss q1; ties q2 (identical), q4, q5 (orders disagree); unjudged q3: (2 + 3/2) / 6.
        Assert.Equal((2.0, 1.0, 3.0, 1.0, 1.0), (m["wins"], m["losses"], m["ties"], m["identical_answers"], m["win_rate_unjudged"]));
        Assert.Equal(3.5 / 6, m["win_rate"], 12);
        Assert.Equal(10.0 / 12, m["win_rate_judge_valid_fraction"], 12); // q3's two verdicts are unreadable
        Assert.False(m.ContainsKey("mean_judge_score"), "pairwise judging gives no pointwise scores");

        // One prompt per order, whatever judge.samples says, each holding both answers; only the fixed judge judges.
        var judged = log.Where(e => e.Request.Prompt.Contains("<reply_a>", StringComparison.Ordinal)).ToList();
        Assert.Equal(6 * 2, judged.Count);
        Assert.All(judged, e => Assert.Equal("ev/eval-judge", e.Model));
        Assert.Contains(judged, e => e.Request.Prompt.Contains("<reply_a>good</reply_a>\n<reply_b>bad</reply_b>", StringComparison.Ordinal));
        Assert.Contains(judged, e => e.Request.Prompt.Contains("<reply_a>bad</reply_a>\n<reply_b>good</reply_b>", StringComparison.Ordinal));
        Assert.All(judged, e => Assert.EndsWith("\"Winner: A\", \"Winner: B\" or \"Winner: tie\".", e.Request.Prompt.TrimEnd()));

        using var details = JsonDocument.Parse(record.Details!);
        var items = details.RootElement.EnumerateArray().ToDictionary(e => e.GetProperty("instruction").GetString()!);
        Assert.Equal(["q0", "q1", "q3", "q4", "q5", "q6"], items.Keys.Order());
        Assert.Equal(new[] { "win", "loss", "unjudged", "tie", "tie", "win" }, new[] { "q0", "q1", "q3", "q4", "q5", "q6" }.Select(q => items[q].GetProperty("outcome").GetString()));
        // Both raw verdicts are kept: q5's say A both times, which is why it is a tie.
        Assert.Equal("The first reads better.\n**Winner:** A", items["q5"].GetProperty("verdict_checkpoint_first").GetString());
        Assert.Equal("The first reads better.\n**Winner:** A", items["q5"].GetProperty("verdict_baseline_first").GetString());
        Assert.Equal("B is better (not A).\nWinner: b", items["q0"].GetProperty("verdict_baseline_first").GetString());
        Assert.Equal("Both have merits.", items["q3"].GetProperty("verdict_checkpoint_first").GetString());
    }

    [Fact]
    public async Task A_baseline_of_m1_gives_M1_no_score_against_itself_and_M2_and_M3_one_each_against_M1()
    {
        var log = new ConcurrentBag<(string Model, GenerationRequest Request)>();
        var m3 = Items.ToDictionary(i => i.Q, _ => "good");
        await using var host = await TestBusHost.StartAsync("inmemory", x => x.AddGeneratorConsumers(),
            s => s.AddSingleton<IModelProvider>(new ScriptedModels(log, m3: m3)).AddGenerator());
        var store = host.Store;
        var heldOut = await store.PutBlobAsync(Encoding.UTF8.GetBytes(string.Concat(Items.Select(i => $"{{\"instruction\":\"{i.Q}\"}}\n"))), "held_out.jsonl");
        await store.CreateRunAsync("ev", $$$"""
            {"schema_version":1,"name":"ev","seed":3,"iterations":2,"models":{"m1":"checkpoint:ev/m1"},"seed_data":{"ift":"ift.jsonl"},
             "judge":{"samples":2,"template":"Judge {instruction} Answer: {response}"},
             "evaluation":{"held_out":"blob:{{{heldOut.Sha256}}}","evaluator":"judge_win_rate","baseline":"m1"}}
            """, 1);
        await store.PutAsync(new CheckpointRecord { Id = "ev/m1", RunId = "ev", Iteration = 1, Location = "", Files = [] });
        await store.PutAsync(new CheckpointRecord { Id = "ev/m2", RunId = "ev", Iteration = 2, Location = "", Files = [], Origin = "dpo", ParentCheckpointId = "ev/m1" });
        await store.PutAsync(new CheckpointRecord { Id = "ev/m3", RunId = "ev", Iteration = 3, Location = "", Files = [], Origin = "dpo", ParentCheckpointId = "ev/m2" });

        await host.Bus.Publish(new CheckpointReady { RunId = "ev", Iteration = 0, CheckpointId = "ev/m1" });
        await host.Bus.Publish(new CheckpointReady { RunId = "ev", Iteration = 1, CheckpointId = "ev/m2", ParentCheckpointId = "ev/m1" });
        await host.Bus.Publish(new CheckpointReady { RunId = "ev", Iteration = 2, CheckpointId = "ev/m3", ParentCheckpointId = "ev/m2" });
        foreach (var c in new[] { "ev/m1", "ev/m2", "ev/m3" })
            await TestBusHost.WaitUntilAsync(async () => await store.GetAsync<EvaluationRecord>(Ids.Evaluation(c, "judge_win_rate")) is not null,
                TimeSpan.FromSeconds(30), $"the evaluation of {c} stored");
        async Task<IReadOnlyDictionary<string, double>> Metrics(string c) => (await store.GetAsync<EvaluationRecord>(Ids.Evaluation(c, "judge_win_rate")))!.Metrics;

        Assert.False((await Metrics("ev/m1")).ContainsKey("win_rate"), "M1 is not played against itself");
        var m2 = await Metrics("ev/m2");
        Assert.Equal(0.6, m2["win_rate"], 12); // the first test's numbers: M2's parent is M1
        Assert.Equal(1.0, m2["baseline_is_parent"]);
        // M3 answers "good" everywhere; against M1 (bad, good, same, mute, okay, okay): wins q0, q2, q4, q5, q1 identical, q3 unjudged.
        // Against its parent M2 it would be (3 + 3/2) / 6 = 0.75.
        var m3m = await Metrics("ev/m3");
        Assert.Equal((4.0, 0.0, 1.0, 1.0), (m3m["wins"], m3m["losses"], m3m["ties"], m3m["win_rate_unjudged"]));
        Assert.Equal(4.5 / 5, m3m["win_rate"], 12);
        Assert.Equal(0.0, m3m["baseline_is_parent"]);
        var answered = log.Where(e => !e.Request.Prompt.StartsWith("Judge ", StringComparison.Ordinal)).GroupBy(e => e.Model).ToDictionary(g => g.Key, g => g.Count());
        Assert.Equal(new Dictionary<string, int> { ["ev/m1"] = 18, ["ev/m2"] = 6, ["ev/m3"] = 6 }, answered); // M2 never answers for M3's evaluation

        var report = await Srlm.Cli.Pipeline.RunReportBuilder.BuildAsync(store, "ev", (_, _) => 0, CancellationToken.None);
        Assert.Equal(("m1", "pointwise"), (report.Baseline, report.JudgeMode));
        Assert.Equal(["M1", "M2", "M3"], report.Iterations.Select(e => e.Model));
        Assert.Equal(new double?[] { null, 0.6, 0.9 }, report.Iterations.Select(e => e.WinRateVsBaseline is { } w ? Math.Round(w, 12) : (double?)null));
        // win_rate_vs_parent keeps its meaning: M2's baseline is its parent, M3's is not.
        Assert.Equal(new double?[] { null, 0.6, null }, report.Iterations.Select(e => e.WinRateVsParent is { } w ? Math.Round(w, 12) : (double?)null));
    }
}
