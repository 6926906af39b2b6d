namespace Srlm.ServiceKit.Recovery;

/// <summary>Re-issues the work a run had in flight, from stored facts only. The embedded run uses it after a
/// crash (`srlm run --resume DIR`: messages on its in-memory bus died with the process), and a deployment uses the
/// same code (`srlm resume RUN`: messages lost with a purged queue or a broker rebuilt without its volume), so both
/// recover the same way. Every message re-issued here is one the services handle idempotently, so re-issuing too
/// much is harmless; re-issuing too little would stall the run, so each stage's gap is filled.</summary>
public static class InFlightWork
{
    public static async Task<int> ReissueAsync(IArtifactStore store, IBus bus, string runId, CancellationToken ct)
    {
        var run = await store.GetRunAsync(runId, ct) ?? throw new RunNotResumableException($"run {runId} is not in {store.Location}");
        if (run.State is RunState.Failed or RunState.Cancelled) return 0;
        var spec = RunSpecJson.Parse(run.SpecJson);
        var all = await store.ListAsync<CheckpointRecord>(ArtifactQuery.OfRun(runId), ct);
        var checkpoints = all.Where(c => c.IsMain).ToDictionary(c => c.Iteration);
        int sent = 0;

        async Task Send<T>(T message) where T : class
        {
            await bus.SendAsync<T>(message, ct);
            sent++;
        }
        async Task Publish<T>(T message) where T : class
        {
            await bus.Publish(message, ct);
            sent++;
        }

        if (!checkpoints.ContainsKey(1))
        {
            // SFT not finished: the trainer re-records the job (same id) and its worker resumes it.
            var start = checkpoints.GetValueOrDefault(0) ?? throw new RunNotResumableException($"run {runId} has no starting checkpoint stored");
            await Publish(new RunStarted { RunId = runId, Iteration = 0, CheckpointId = start.Id });
            return sent;
        }

        if (spec.Evaluation is not null)
            foreach (var c in all.Where(c => c.Iteration >= 1).OrderBy(c => c.Iteration).ThenBy(c => c.IsMain ? 0 : 1))
                if (await store.CountAsync<EvaluationRecord>(ArtifactQuery.OfParent(c.Id), ct) == 0)
                    await Send(new EvaluateCheckpoint { RunId = runId, Iteration = c.Iteration - 1, CheckpointId = c.Id });

        int t = checkpoints.Keys.Max();
        var model = checkpoints[t];
        if (t > spec.Iterations || run.State == RunState.Completed)
        {
            if (run.State != RunState.Completed)
            {
                await store.SetRunStateAsync(runId, RunState.Completed, null, ct);
                await Publish(new RunCompleted { RunId = runId, Iteration = t - 1, CheckpointId = model.Id });
            }
            return sent;
        }

        if (await store.GetAsync<IterationRecord>(Ids.Iteration(runId, t), ct) is null)
        {
            await Publish(new IterationStarted { RunId = runId, Iteration = t, CheckpointId = model.Id });
            return sent;
        }

        var set = await store.GetAsync<PromptSetFinalRecord>(Ids.PromptSet(runId, t), ct);
        if (set is null)
        {
            // Shards already stored are not generated again; whichever shard completes the set finalises it.
            for (int s = 0; s < spec.Prompts.Shards; s++)
                await Send(new GeneratePrompts { RunId = runId, Iteration = t, CheckpointId = model.Id, Shard = s, ShardCount = spec.Prompts.Shards });
            return sent;
        }

        var unsettled = await store.ListUnsettledPromptsAsync(runId, t, ct);
        foreach (var promptId in unsettled)
        {
            var candidates = await store.ListAsync<CandidateRecord>(ArtifactQuery.OfParent(promptId), ct);
            if (candidates.Count < spec.Responses.N)
            {
                await Send(new GenerateResponses { RunId = runId, Iteration = t, CheckpointId = model.Id, PromptId = promptId });
                continue;
            }
            bool allJudged = true;
            foreach (var c in candidates)
                if (await store.CountAsync<JudgementRecord>(ArtifactQuery.OfParent(c.Id), ct) < spec.Judge.Samples)
                {
                    allJudged = false;
                    await Send(new JudgeCandidate { RunId = runId, Iteration = t, CheckpointId = model.Id, PromptId = promptId, CandidateId = c.Id });
                }
            if (allJudged) await Publish(await JudgedEventAsync(store, spec, runId, t, model.Id, candidates[0], ct));
        }
        if (unsettled.Count > 0) return sent;

        var dataset = await store.GetAsync<DatasetRecord>(Ids.Dataset(runId, t), ct);
        if (dataset is null)
        {
            // Every prompt is settled but the dataset record was not written: any CandidateJudged completes it.
            var first = (await store.ListAsync<CandidateRecord>(ArtifactQuery.OfRun(runId, t), ct)).First();
            await Publish(await JudgedEventAsync(store, spec, runId, t, model.Id, first, ct));
        }
        else
            await Publish(new PairsReady { RunId = runId, Iteration = t, CheckpointId = model.Id, DatasetId = dataset.Id, Pairs = dataset.PairIds.Count });
        return sent;
    }

    private static async Task<CandidateJudged> JudgedEventAsync(IArtifactStore store, RunSpec spec, string runId, int t, string checkpointId, CandidateRecord c, CancellationToken ct)
    {
        var samples = (await store.ListAsync<JudgementRecord>(ArtifactQuery.OfParent(c.Id), ct)).Where(j => j.SampleIndex < spec.Judge.Samples).ToList();

        return new CandidateJudged
        {
            RunId = runId, Iteration = t, CheckpointId = checkpointId, PromptId = c.PromptId, CandidateId = c.Id,
            Samples = samples.Count, ValidSamples = samples.Count(j => j.Score is not null), Score = ScoreParser.Mean(samples.Select(j => j.Score)),
        };
    }
}

/// <summary>The store lacks what resuming a run needs (the run, or its starting checkpoint); the message names it.</summary>
public sealed class RunNotResumableException(string message) : Exception(message);
