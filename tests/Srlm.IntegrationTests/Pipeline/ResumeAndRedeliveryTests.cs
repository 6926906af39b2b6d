using Srlm.Contracts.Spec;
using Srlm.Generator;
using Srlm.Judge;
using Srlm.ServiceKit;

namespace Srlm.IntegrationTests.Pipeline;

[Collection(SmokeRunCollection.Name)]
public sealed class ResumeAndRedeliveryTests(SmokeRunFixture run, ITestOutputHelper output)
{
    private static object Counts(RunReport r) => r.Iterations.Select(e => new { e.Model, e.Prompts, e.Candidates, e.Judgments, e.Unparseable, e.Pairs, e.DroppedTies, e.DroppedOther, e.TooLong }).ToList();

    [Fact]
    public async Task A_run_interrupted_mid_iteration_and_resumed_ends_with_the_same_counts_as_an_uninterrupted_one()
    {
        var dir = Path.Combine(run.Root, "interrupted");
        var log = new StringWriter();
        // Interrupted on an event of the embedded pipeline, not by a poller racing the machine's speed: the tenth
        // JudgeCandidate of iteration 1 handled (30 judgements stored, 22 candidates still to judge) cancels the run.
        var interruption = new InterruptAfterJudged(iteration: 1, candidates: 10);
        using var deadline = new CancellationTokenSource(TimeSpan.FromMinutes(10));
        using var interrupt = CancellationTokenSource.CreateLinkedTokenSource(deadline.Token, interruption.Token);
        var first = await RunPipeline.ExecuteAsync(new RunPipelineOptions
        {
            SpecPath = SmokeRunFixture.SmokeSpec, Directory = dir, Quiet = true,
            Configure = s => s.AddConsumeObserver(_ => interruption),
        }, log, interrupt.Token);
        Assert.False(deadline.IsCancellationRequested, $"the run was not interrupted within 10 minutes ({interruption.Seen} of iteration 1's candidates judged)\n{log}");
        Assert.True(interruption.Token.IsCancellationRequested, $"the run ended before 10 of iteration 1's candidates were judged\n{log}");
        Assert.True(first.Interrupted);
        Assert.Equal(RunState.Running, first.State);
        await using (var stored = await SqliteArtifactStore.OpenAsync(Path.Combine(dir, PipelineHost.StoreFile)))
        {
            // Mid-iteration: judging under way or done (the judge batches the candidates it holds), iteration 1's
            // checkpoint M2 not yet trained.
            var status = await stored.GetIterationStatusAsync(first.RunId, 1);
            output.WriteLine($"interrupted with {status.Judgments} judgements, {status.Settled} of {status.Prompts} prompts settled, M2 {status.CheckpointId ?? "not stored"}");
            Assert.True(status.Judgments >= 30, $"only {status.Judgments} judgements of iteration 1 stored");
            Assert.Null(status.CheckpointId);
        }

        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(10));
        var resumed = await RunPipeline.ExecuteAsync(new RunPipelineOptions { Directory = dir, Resume = true, Quiet = true }, log, timeout.Token);
        output.WriteLine(log.ToString());
        Assert.Equal(RunState.Completed, resumed.State);
        Assert.Equal(first.RunId, resumed.RunId);
        Assert.Equal(JsonSerializer.Serialize(Counts(run.Result.Report!)), JsonSerializer.Serialize(Counts(resumed.Report!)));
        Assert.Equal(0, resumed.Report!.Duplicates);
    }

    [Fact]
    public async Task Every_message_type_delivered_again_changes_no_stored_result()
    {
        // A copy of the finished smoke run, so the other tests keep theirs.
        var dir = Path.Combine(run.Root, "redelivered");
        CopyDirectory(run.Result.Directory, dir);
        var runId = run.Result.RunId;

        using var host = PipelineHost.Build(dir);
        await host.StartAsync();
        try
        {
            var store = host.Services.GetRequiredService<IArtifactStore>();
            var bus = host.Services.GetRequiredService<IBus>();
            var before = await SnapshotAsync(store, runId);
            var spec = RunSpecJson.Parse((await store.GetRunAsync(runId))!.SpecJson);
            var checkpoints = (await store.ListAsync<CheckpointRecord>(ArtifactQuery.OfRun(runId))).OrderBy(c => c.Iteration).ToList();
            int types = 0;
            async Task Send<TConsumer, T>(T m) where TConsumer : class, IConsumer where T : class => await bus.SendAsync<T>(m, default);

            await bus.Publish(new RunStarted { RunId = runId, Iteration = 0, CheckpointId = checkpoints[0].Id }); types++;
            for (int t = 1; t <= spec.Iterations; t++)
            {
                var m = checkpoints[t - 1].Id;
                await bus.Publish(new IterationStarted { RunId = runId, Iteration = t, CheckpointId = m });
                for (int s = 0; s < spec.Prompts.Shards; s++)
                    await Send<GeneratePromptsConsumer, GeneratePrompts>(new GeneratePrompts { RunId = runId, Iteration = t, CheckpointId = m, Shard = s, ShardCount = spec.Prompts.Shards });
                var set = (await store.GetAsync<PromptSetFinalRecord>(Ids.PromptSet(runId, t)))!;
                foreach (var p in set.PromptIds)
                    await Send<GenerateResponsesConsumer, GenerateResponses>(new GenerateResponses { RunId = runId, Iteration = t, CheckpointId = m, PromptId = p });
                foreach (var c in await store.ListAsync<CandidateRecord>(ArtifactQuery.OfRun(runId, t)))
                {
                    await Send<JudgeCandidateConsumer, JudgeCandidate>(new JudgeCandidate { RunId = runId, Iteration = t, CheckpointId = m, PromptId = c.PromptId, CandidateId = c.Id });
                    var js = await store.ListAsync<JudgementRecord>(ArtifactQuery.OfParent(c.Id));
                    var valid = js.Where(j => j.Score is not null).Select(j => j.Score!.Value).ToList();
                    await bus.Publish(new CandidateJudged { RunId = runId, Iteration = t, CheckpointId = m, PromptId = c.PromptId, CandidateId = c.Id, Samples = js.Count, ValidSamples = valid.Count, Score = valid.Count == 0 ? null : valid.Average() });
                }
                var dataset = (await store.GetAsync<DatasetRecord>(Ids.Dataset(runId, t)))!;
                await bus.Publish(new PairsReady { RunId = runId, Iteration = t, CheckpointId = m, DatasetId = dataset.Id, Pairs = dataset.PairIds.Count });
            }
            types += 6;
            foreach (var c in checkpoints)
            {
                await bus.Publish(new CheckpointReady { RunId = runId, Iteration = c.Iteration - 1, CheckpointId = c.Id, ParentCheckpointId = c.ParentCheckpointId });
                await Send<EvaluateCheckpointConsumer, EvaluateCheckpoint>(new EvaluateCheckpoint { RunId = runId, Iteration = c.Iteration - 1, CheckpointId = c.Id });
            }
            types += 2;
            output.WriteLine($"{types} message types re-delivered");

            // Quiescent: the journal stops growing.
            long last = -1;
            var quiet = DateTime.UtcNow + TimeSpan.FromMinutes(5);
            for (int stable = 0; stable < 6;)
            {
                if (DateTime.UtcNow > quiet) throw new TimeoutException($"the journal of {runId} still grew after 5 minutes ({last} entries)");
                await Task.Delay(500);
                long n = await store.CountJournalAsync(new JournalQuery { RunId = runId });
                stable = n == last ? stable + 1 : 0;
                last = n;
            }
            var after = await SnapshotAsync(store, runId);
            Assert.Equal(before, after);
            Assert.Empty(await store.ListDuplicatesAsync(runId));
            Assert.Empty(await store.ListErrorsAsync(runId));
        }
        finally
        {
            await host.StopAsync();
        }
    }

    /// <summary>Every stored result of the run (creation times left out), plus job states and attempts.</summary>
    internal static async Task<string> SnapshotAsync(IArtifactStore store, string runId)
    {
        var q = ArtifactQuery.OfRun(runId);
        var parts = new List<object>
        {
            await store.ListAsync<IterationRecord>(q), await store.ListAsync<PromptShardRecord>(q), await store.ListAsync<PromptSetFinalRecord>(q),
            await store.ListAsync<PromptRecord>(q), await store.ListAsync<CandidateRecord>(q), await store.ListAsync<JudgementRecord>(q),
            await store.ListAsync<PairRecord>(q), await store.ListAsync<PairDropRecord>(q), await store.ListAsync<DatasetRecord>(q),
            await store.ListAsync<CheckpointRecord>(q), await store.ListAsync<EvaluationRecord>(q),
            (await store.ListJobsAsync(runId)).Select(j => new { j.Id, j.State, j.Attempts, j.Step, j.OutputCheckpointId }),
            (await store.GetRunAsync(runId))!.State,
        };
        var json = JsonSerializer.Serialize(parts);
        return System.Text.RegularExpressions.Regex.Replace(json, "\"CreatedAt\":\"[^\"]*\"", "");
    }

    /// <summary>Cancels its token once the given number of JudgeCandidate messages of an iteration have been handled
    /// (their judgements stored). Registered into the embedded pipeline by the test only.</summary>
    private sealed class InterruptAfterJudged(int iteration, int candidates) : IConsumeObserver
    {
        private readonly CancellationTokenSource _cancel = new();
        private int _seen;

        public CancellationToken Token => _cancel.Token;

        public int Seen => Volatile.Read(ref _seen);

        public Task PreConsume<T>(ConsumeContext<T> context) where T : class => Task.CompletedTask;

        public Task PostConsume<T>(ConsumeContext<T> context) where T : class
        {
            if (context.Message is JudgeCandidate m && m.Iteration == iteration && Interlocked.Increment(ref _seen) == candidates) _cancel.Cancel();
            return Task.CompletedTask;
        }

        public Task ConsumeFault<T>(ConsumeContext<T> context, Exception exception) where T : class => Task.CompletedTask;
    }

    private static void CopyDirectory(string from, string to)
    {
        foreach (var d in Directory.GetDirectories(from, "*", SearchOption.AllDirectories)) Directory.CreateDirectory(d.Replace(from, to));
        Directory.CreateDirectory(to);
        foreach (var f in Directory.GetFiles(from, "*", SearchOption.AllDirectories)) File.Copy(f, f.Replace(from, to));
    }
}
