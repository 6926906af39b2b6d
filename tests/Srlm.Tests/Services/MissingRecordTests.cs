using Srlm.Judge;
using Srlm.ServiceKit;

namespace Srlm.Tests.Services;

/// <summary>Every service consumer that reads a record its message names (RunConsumer.RequireAsync) parks the
/// message as malformed when that record is not stored: one error record, reason "TYPE MESSAGE-ID: WHAT ID is not
/// stored", exception type MalformedMessageException (so never retried), no model loaded and nothing else written.
/// Each message belongs to its own run, since a parked message fails its run.</summary>
public sealed class MissingRecordTests
{
    private const string Spec = """{"schema_version":1,"name":"missing","seed":3,"iterations":1,"models":{"m1":"m1"},"seed_data":{"ift":"ift.jsonl"},"responses":{"n":2},"judge":{"samples":1},"evaluation":{"held_out":"blob:HELD_OUT","evaluator":"judge_win_rate"}}""";

    [Fact]
    public async Task A_message_naming_a_record_that_is_not_stored_is_parked_as_malformed_with_what_and_which_id()
    {
        var models = new RefusingModels();
        await using var host = await TestBusHost.StartAsync("inmemory",
            x => x.AddGeneratorConsumers().AddJudgeConsumers().AddPairBuilderConsumers().AddTrainerConsumers(),
            s => s.AddSingleton<IModelProvider>(models).AddSingleton<TrainingJobSignal>().AddServiceKit());
        var store = host.Store;
        var heldOut = await store.PutBlobAsync("{\"instruction\":\"q\"}\n"u8.ToArray(), "held_out.jsonl");
        var spec = Spec.Replace("HELD_OUT", heldOut.Sha256, StringComparison.Ordinal);
        foreach (var run in new[] { "gr", "jc", "jp", "cj", "rs", "pr", "ec" }) await store.CreateRunAsync(run, spec, 1);

        // jp: the candidate is stored, its prompt is not. cj: both candidates are judged, their prompt is not stored.
        var jpPrompt = Ids.Prompt("jp", 1, 0, 0);
        await store.PutAsync(Candidate("jp", jpPrompt, 0));
        var cjPrompt = Ids.Prompt("cj", 1, 0, 0);
        for (int c = 0; c < 2; c++)
        {
            var candidate = Candidate("cj", cjPrompt, c);
            await store.PutAsync(candidate);
            await store.PutAsync(new JudgementRecord
            {
                Id = Ids.Judgement(candidate.Id, 0), RunId = "cj", Iteration = 1, PromptId = cjPrompt, CandidateId = candidate.Id,
                SampleIndex = 0, RawText = "Score: 3", Score = 3, Seed = c, CheckpointId = "cj/m1",
            });
        }

        var expected = new (string Run, string Type, string What, string Id)[]
        {
            ("gr", "GenerateResponses", "prompt", "gr/no-prompt"),
            ("jc", "JudgeCandidate", "candidate", "jc/no-candidate"),
            ("jp", "JudgeCandidate", "prompt", jpPrompt),
            ("cj", "CandidateJudged", "prompt", cjPrompt),
            ("rs", "RunStarted", "starting checkpoint", "rs/no-checkpoint"),
            ("pr", "PairsReady", "dataset", "pr/no-dataset"),
            ("ec", "EvaluateCheckpoint", "checkpoint", "ec/no-checkpoint"),
        };
        await host.Bus.Publish(new GenerateResponses { RunId = "gr", Iteration = 1, CheckpointId = "gr/m1", PromptId = "gr/no-prompt" });
        await host.Bus.Publish(new JudgeCandidate { RunId = "jc", Iteration = 1, CheckpointId = "jc/m1", PromptId = "jc/p", CandidateId = "jc/no-candidate" });
        await host.Bus.Publish(new JudgeCandidate { RunId = "jp", Iteration = 1, CheckpointId = "jp/m1", PromptId = jpPrompt, CandidateId = Ids.Candidate(jpPrompt, 0) });
        await host.Bus.Publish(new CandidateJudged
        {
            RunId = "cj", Iteration = 1, CheckpointId = "cj/m1", PromptId = cjPrompt, CandidateId = Ids.Candidate(cjPrompt, 1), Samples = 1, ValidSamples = 1, Score = 3,
        });
        await host.Bus.Publish(new RunStarted { RunId = "rs", Iteration = 0, CheckpointId = "rs/no-checkpoint" });
        await host.Bus.Publish(new PairsReady { RunId = "pr", Iteration = 1, CheckpointId = "pr/m1", DatasetId = "pr/no-dataset", Pairs = 1 });
        await host.Bus.Publish(new EvaluateCheckpoint { RunId = "ec", Iteration = 1, CheckpointId = "ec/no-checkpoint" });

        // The fault consumer stores the error, then fails the run: wait for both.
        await TestBusHost.WaitUntilAsync(async () => (await store.ListErrorsAsync()).Count >= expected.Length
            && (await store.ListRunsAsync()).All(r => r.State == RunState.Failed), TimeSpan.FromSeconds(60),
            $"{expected.Length} errors recorded and their runs failed");
        var errors = await store.ListErrorsAsync();
        Assert.Equal(expected.Length, errors.Count);
        foreach (var (run, type, what, id) in expected)
        {
            var error = Assert.Single(errors, e => e.RunId == run);
            Assert.EndsWith("." + type, error.MessageType, StringComparison.Ordinal);
            Assert.Contains($"{type} {error.MessageId}: {what} {id} is not stored", error.Reason, StringComparison.Ordinal);
            Assert.EndsWith(nameof(Srlm.Messaging.Bus.MalformedMessageException), error.ExceptionType, StringComparison.Ordinal);
            Assert.Equal(RunState.Failed, (await store.GetRunAsync(run))!.State);
        }
        Assert.Equal(0, models.Calls);
        Assert.Equal(0, await store.CountAsync<CandidateRecord>(ArtifactQuery.OfRun("gr", 1)));
        Assert.Equal(0, await store.CountAsync<JudgementRecord>(ArtifactQuery.OfRun("jp", 1)));
        Assert.Equal(0, await store.CountAsync<PairRecord>(ArtifactQuery.OfRun("cj", 1)));
        Assert.Empty(await store.ListJobsAsync());
    }

    private static CandidateRecord Candidate(string run, string promptId, int index) => new()
    {
        Id = Ids.Candidate(promptId, index), RunId = run, Iteration = 1, PromptId = promptId, Index = index, Text = $"answer {index}",
        CheckpointId = run + "/m1", TokenCount = 2, PromptTokens = 4, ContextLength = 256,
    };
}
