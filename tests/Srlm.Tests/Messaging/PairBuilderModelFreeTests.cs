using Srlm.ServiceKit;

namespace Srlm.Tests.Messaging;

/// <summary>The pairbuilder settles prompts from stored facts alone: candidates written by the generator carry
/// the prompt's token count and the model's context length, so no model is loaded (a pairbuilder replica
/// needs no libtorch memory). Candidates from older stores, without those fields, still settle through the model.</summary>
public sealed class PairBuilderModelFreeTests
{
    private const string Spec = """
        {"schema_version":1,"name":"pb","seed":3,"iterations":1,
         "models":{"m1":"m1"},
         "seed_data":{"ift":"ift.jsonl"},
         "responses":{"n":2},
         "judge":{"samples":1}}
        """;

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Pairs_are_settled_without_loading_a_model_when_candidates_carry_token_counts(bool countsStored)
    {
        var models = new RefusingModels();
        await using var host = await TestBusHost.StartAsync("inmemory", x => x.AddPairBuilderConsumers(),
            s => s.AddSingleton<IModelProvider>(models).AddPairBuilder());
        var store = host.Store;
        await store.CreateRunAsync("pb", Spec, 1);
        var promptId = Ids.Prompt("pb", 1, 0, 0);
        await store.PutAsync(new PromptRecord { Id = promptId, RunId = "pb", Iteration = 1, Shard = 0, Index = 0, Text = "What is 2+3?" });
        for (int c = 0; c < 2; c++)
        {
            var candidateId = Ids.Candidate(promptId, c);
            await store.PutAsync(new CandidateRecord
            {
                Id = candidateId, RunId = "pb", Iteration = 1, PromptId = promptId, Index = c, Text = c == 0 ? "5" : "6",
                CheckpointId = "pb/m1", TokenCount = 1,
                PromptTokens = countsStored ? 9 : null, ContextLength = countsStored ? 256 : null,
            });
            await store.PutAsync(new JudgementRecord
            {
                Id = Ids.Judgement(candidateId, 0), RunId = "pb", Iteration = 1, PromptId = promptId, CandidateId = candidateId,
                SampleIndex = 0, RawText = c == 0 ? "Score: 5" : "Score: 1", Score = c == 0 ? 5 : 1, Seed = c, CheckpointId = "pb/m1",
            });
        }
        await host.Bus.Publish(new CandidateJudged
        {
            RunId = "pb", Iteration = 1, CheckpointId = "pb/m1", PromptId = promptId, CandidateId = Ids.Candidate(promptId, 1),
            Samples = 1, ValidSamples = 1, Score = 1,
        });

        if (countsStored)
        {
            await TestBusHost.WaitUntilAsync(async () => await store.CountAsync<PairRecord>(ArtifactQuery.OfParent(promptId)) == 1,
                TimeSpan.FromSeconds(30), "the pair stored");
            var pair = await store.GetAsync<PairRecord>(Ids.Pair(promptId));
            Assert.Equal(Ids.Candidate(promptId, 0), pair!.ChosenCandidateId);
            Assert.Equal(0, models.Calls);
        }
        else
        {
            // An older record has no counts: the consumer asks the model (here it refuses, so nothing settles).
            await TestBusHost.WaitUntilAsync(() => Task.FromResult(models.Calls > 0),
                TimeSpan.FromSeconds(30), "the model asked for");
            Assert.Equal(0, await store.CountAsync<PairRecord>(ArtifactQuery.OfParent(promptId)));
        }
    }
}
